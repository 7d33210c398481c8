// Package sim is a simulated inference engine: an OpenAI-compatible server
// that answers any model id with deterministic text at a configured speed.
// It stands in for a real engine (llama-server, vLLM, ...) in dev mode,
// examples, tests and benchmarks, in three shapes:
//
//   - Engine, an http.Handler, for in-process use (httptest servers,
//     benchmarks);
//   - Harness, an in-process neuron.Harness that "loads" models after a
//     simulated load time and serves them all from one loopback listener;
//   - the helexa-sim command (cmd/helexa-sim), a real child process for the
//     process harness of package neuron/engine.
//
// # Routes
//
// GET /health, GET /v1/models, POST /v1/chat/completions, POST
// /v1/completions, POST /v1/embeddings and POST /v1/responses. Errors are
// OpenAI envelopes, {"error":{"message","type","code","param"}}.
//
// # Text and tokens
//
// The answer is drawn from a fixed word list, one word per token, words
// separated by single spaces. The words are picked by a hash of the prompt
// (the role and text of every message, or the completion prompt), so an
// identical prompt gives an identical answer. With n > 1, choice 0 is the
// answer n = 1 would give and the other choices differ from it.
//
// The prompt's token count is an estimate, EstimateTokens (ceil(chars/4)),
// plus MessageOverhead tokens per chat message; completion prompts and
// embedding inputs have no per-message overhead, and token-array prompts
// count one token per element. A prompt over the context length is refused
// with 400 context_length_exceeded; otherwise the answer is at most
// max_completion_tokens (chat), max_tokens (chat, completions) or
// max_output_tokens (responses) tokens, default DefaultMaxTokens, and never
// runs past the context length. As in llama-server, n_predict (any
// generation route) takes precedence over all of them: a negative value is
// unbounded (so the answer runs to the end of the context) and 0 generates
// nothing. max_new_tokens (SGLang's and TGI's native name) applies when no
// other limit is set.
//
// A completion prompt that is an array of strings or an array of token
// arrays is one prompt per element, each answered n times (choice index
// prompt*n + k), as OpenAI and vLLM do. llama-server's n_cmpl (chat and
// completions) takes precedence over n. best_of (completions only, between
// n and 128, not streamed unless equal to n) generates best_of candidates
// per prompt and returns the first n of each; like vLLM, usage counts the
// returned choices only.
//
// # Reading JSON
//
// The engine reads a body as leniently as real engines do, so that a
// gateway that reads it another way can be caught: keys match without
// regard to case, with Unicode simple folding ("\u017ftream" is "stream",
// "max_to\u212Aens" is "max_tokens"; the dotless ı is not i), escapes in
// keys are decoded, and the last of duplicate keys wins (encoding/json's
// rules, which Python's json and llama-server's nlohmann::json share for
// duplicates).
//
// # Stats
//
// Engine.Stats counts what the engine itself did: the tokens it generated
// (best_of candidates and the tokens of abandoned answers included,
// whatever the answers reported), the prompt tokens it was sent and those
// its GPU model found cached, the requests, the requests in flight and the
// last request URI with its query. The helexa-sim command serves them
// at GET /sim/stats, beside the OpenAI routes. finish_reason is "stop" when a stop sequence
// ended the answer (the stop text is not returned, and a stream holds back
// text that may be the start of a stop sequence) and "length" otherwise. The
// simulated model never stops on its own, so a Responses API answer always
// ends with status "completed".
//
// Usage is in every non-streaming body. A chat or completions stream carries
// it in one extra final chunk (choices: []) only when the request sets
// stream_options.include_usage; a Responses stream carries it in its
// response.completed event. Under a GPU model (below) it also carries the
// prompt tokens found in the prefix cache, 0 included, as
// prompt_tokens_details.cached_tokens (input_tokens_details.cached_tokens
// in the Responses API), as OpenAI reports them and as vLLM (with
// --enable-prompt-tokens-details) and llama-server do; without one there is
// no such field.
//
// # Tool calls
//
// A chat request is answered with a tool call instead of text when it
// offers tools, its tool_choice is not "none", its last message is a user
// message (a conversation that ends with a tool result is answered with
// text, so a tool round trip ends), and either tool_choice asks for a call
// ("required", or {"type":"function","function":{"name":...}}) or the last
// user message contains a tool's name. The tool called is the named one,
// else the first tool, in the order of tools, whose name the message
// contains, else (for "required") the first tool. Each choice makes one
// call, drawn from the prompt like the text: its id is "call_" and 16 hex
// digits, its arguments an object with one value per property of the
// tool's parameters schema in name order (one of its enum values, else by
// type: a word for a string or an unknown type, 0 to 99 for an integer or
// number, a boolean, [] for an array, {} for an object). The message's
// content is null, finish_reason "tool_calls", and the completion tokens
// the estimate of the name and the arguments. A stream sends the call's
// id, type and name with the first fragment of the arguments, then one
// fragment per further property, paced like tokens; the call is never cut
// by max_tokens. A tool_choice that names no offered tool, or tools that
// are not functions with names, are refused with 400. The faults below
// apply to text answers only.
//
// # Pacing and faults
//
// Config sets the time to first token, the tokens per second after it (or
// a GPU model instead of both), the context length, and faults:
// CrashAfterTokens (abort the connection after N tokens, or exit the
// helexa-sim process), Hang (send the first token, then nothing until the
// client goes away) and FailLoad (Harness and helexa-sim only). A request
// whose client goes away stops at once.
//
// # The GPU model
//
// Config.GPU (helexa-sim's --gpu, --gpu-* and --time-scale flags) makes an
// Engine, or each model a Harness loads, one engine replica on one GPU, so
// that where a gateway sends a request changes how fast it is answered.
// The replica has:
//
//   - A prefix cache. The prompt's text (a chat message is its role, a zero
//     byte, its content and a zero byte; a token array is 4 bytes a token)
//     is cut into blocks of BlockTokens tokens of 4 bytes, the sim's
//     tokenizer's rate. Block i's key is a hash of the text of blocks 0 to
//     i, so two prompts share a block only when they share all the text up
//     to its end: requests with one long system prompt share its blocks,
//     whatever their user turns, and a conversation's next turn shares the
//     blocks of the turn before. Only whole blocks within the prompt's
//     first tokens-1 tokens count, since the last prompt token is always
//     computed (as in vLLM), so a prompt is never wholly cached. A request
//     admitted looks up the longest run of leading blocks cached; when its
//     prefill ends, all its blocks are in the cache. The cache holds
//     CacheTokens tokens: the blocks, plus the tokens of the running
//     sequences outside blocks (the uncached prompt while it prefills, the
//     last partial block, the tokens generated). Past it, the least
//     recently used block that no running sequence holds is evicted, a
//     prefix's last block before its first, so that a cached prefix
//     shrinks from its end and stays usable.
//   - Prefill: PrefillPerToken per uncached prompt token, CachedPerToken
//     per cached one.
//   - Continuous batching. One scheduler per replica runs engine steps back
//     to back, as vLLM's engine loop does. A step prefills up to
//     PrefillChunk prompt tokens of the requests admitted, in arrival
//     order, and runs one decode step of every sequence past its prefill,
//     which takes DecodeBase + b × DecodePerSeq for a batch of b sequences
//     (a request with n choices is n sequences). The step lasts the sum, so
//     a prefill holds up the decode of the whole batch: the contention
//     that makes a cache miss cost the others too. A request is admitted
//     while the batch has room for its choices (MaxBatch) and the step has
//     prefill tokens left; past MaxBatch, requests wait in a first-in
//     first-out queue. A sequence gets its first token at the end of the
//     step that ends its prefill, and one more at the end of each later
//     step. A request that ends early (a stop sequence, its client gone)
//     frees its slot at once.
//   - A time scale. TimeScale multiplies every time the model computes
//     (0.01 runs it 100 times faster), so that a benchmark of a fleet under
//     load runs in minutes. The scheduler keeps to the scaled times on
//     average: a step late by a timer's resolution is made up by the next
//     ones, up to 50 ms behind; beyond that (a machine too busy) the time
//     is lost rather than made up in a burst.
//
// TTFT and TokensPerSecond must be 0 with a GPU model. Embeddings are not
// modelled (they are answered at once), and neither are a real engine's
// preemption (a cache whose every block is held runs over its capacity)
// nor the caching of generated tokens (a conversation's next turn finds
// the earlier prompts in the cache, not the earlier answers' tokens).
//
// The scheduler is one goroutine per replica, started by a request when
// the replica is idle and ended when it has nothing left to do; it wakes
// the requests' goroutines through a channel each, with no timer per
// request or per token, so that one process serves many replicas of
// hundreds of streams each.
//
// The defaults (DefaultGPU) model a Llama-3.1-8B-Instruct in BF16 served by
// vLLM on one A100 80 GB:
//
//   - BlockTokens 16 and MaxBatch 256 are vLLM's defaults (block_size and
//     max_num_seqs), and PrefillChunk 8192 its default token budget per
//     step (max_num_batched_tokens) for its API server on GPUs of 70 GB
//     and more.
//   - CacheTokens 400,000: a token's KV is 32 layers × 8 KV heads × 128
//     dimensions × 2 (K and V) × 2 bytes = 128 KiB; vLLM takes 90% of the
//     80 GB, of which the 16 GB of weights and a few GB of activations
//     leave about 52 GB of KV blocks.
//   - PrefillPerToken 125 µs (8,000 tokens/s): a token costs about 2 × 8
//     billion = 16 GFLOP, and an A100's 312 TFLOPS of BF16 at about 40%
//     utilisation does some 8,000 of them a second.
//   - DecodeBase 10 ms: a decode step reads the 16 GB of weights, 8 ms at
//     the A100's 2 TB/s, plus the step's overheads. DecodePerSeq 150 µs:
//     each sequence adds its KV reads (a 2,000-token context is 256 MB,
//     0.13 ms) and its share of compute, so a step of 64 sequences takes
//     about 20 ms and a full batch of 256 about 48 ms, some 5,300 tokens/s
//     in all.
//
// For a smaller GPU, scale the knobs: llm-d's benchmark of prefix-aware
// routing ran Qwen2.5-7B on A10Gs (24 GB, 125 TFLOPS, 600 GB/s): some 40%
// of the A100's prefill rate (PrefillPerToken about 300 µs), three times
// its decode base (about 30 ms: 15 GB of weights at 600 GB/s), and a KV
// cache of some 90,000 tokens (a Qwen2.5-7B token is 56 KiB of KV).
package sim

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
// whatever the answers reported), the requests, the requests in flight and
// the last request URI with its query. The helexa-sim command serves them
// at GET /sim/stats, beside the OpenAI routes. finish_reason is "stop" when a stop sequence
// ended the answer (the stop text is not returned, and a stream holds back
// text that may be the start of a stop sequence) and "length" otherwise. The
// simulated model never stops on its own, so a Responses API answer always
// ends with status "completed".
//
// Usage is in every non-streaming body. A chat or completions stream carries
// it in one extra final chunk (choices: []) only when the request sets
// stream_options.include_usage; a Responses stream carries it in its
// response.completed event.
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
// Config sets the time to first token, the tokens per second after it, the
// context length, and faults: CrashAfterTokens (abort the connection after N
// tokens, or exit the helexa-sim process), Hang (send the first token, then
// nothing until the client goes away) and FailLoad (Harness and helexa-sim
// only). A request whose client goes away stops at once.
package sim

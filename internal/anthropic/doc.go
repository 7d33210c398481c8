// Package anthropic translates Anthropic Messages API traffic to and from
// OpenAI chat completions, so that the gateway can serve /v1/messages from
// engines that only speak /v1/chat/completions.
//
// The package is pure translation plus a few helpers that write responses;
// it does no routing and no I/O of its own beyond the writer it is given:
//
//   - ParseRequest reads and checks a Messages request body; ToChat turns it
//     into a chat completions body; CountTokens gives the gateway's prompt
//     estimate (also the answer of /v1/messages/count_tokens, see
//     ParseCountTokensRequest and WriteCountTokens).
//   - FromChat turns a non-streaming chat completion into a Message.
//   - StreamTranslator turns a chat completion SSE stream, one data payload
//     at a time, into Anthropic's event sequence.
//   - WriteError, ErrorTypeForStatus and FromOpenAIError give errors
//     Anthropic's shape, {"type":"error","error":{"type","message"}}.
//
// # Decisions
//
// Request:
//
//   - Unknown top-level fields (thinking, service_tier, container,
//     mcp_servers, ...) are ignored, as an OpenAI-compatible server ignores
//     fields it does not know. Unknown fields inside blocks (cache_control,
//     citations) are ignored too.
//   - Content block types other than text, image, tool_use and tool_result
//     are refused with a *RequestError naming the block, among them
//     thinking, redacted_thinking, document, search_result and server tool
//     blocks: no open engine can honour them, and silently dropping them
//     would change the conversation. Server tools (a tool with a "type"
//     other than "custom") are refused the same way. Image sources of type
//     "file" are refused.
//   - A user message may hold text, image and tool_result blocks; an
//     assistant message text and tool_use blocks. Anything else is refused.
//   - temperature and top_p must lie in [0, 1] and top_k must not be
//     negative, as on Anthropic's API; max_tokens must be at least 1.
//
// Translation to chat completions:
//
//   - The system prompt (a string, or text blocks joined with "\n\n")
//     becomes one leading system message; an empty one is left out.
//   - A user message with exactly one text block becomes a string content;
//     otherwise its text and image blocks become content parts. Images become
//     image_url parts (base64 sources as data: URLs).
//   - tool_result blocks become role "tool" messages, in order, placed before
//     the user message that carries the rest of that turn (which is left out
//     when nothing remains). Their content is the result text (text blocks
//     joined with "\n"); an is_error result is prefixed with "Error: ".
//     Images inside a tool result move to that following user message,
//     because engines do not accept images in tool messages.
//   - Assistant text blocks are concatenated into one string content;
//     tool_use blocks become tool_calls whose arguments are the input
//     object as compact JSON. An assistant turn with tool calls and no text
//     has content null.
//   - tool_choice auto, any, tool and none become "auto", "required",
//     {"type":"function","function":{"name"}} and "none";
//     disable_parallel_tool_use becomes parallel_tool_calls false. Both are
//     left out when the request has no tools.
//   - max_tokens, stop (stop_sequences), temperature, top_p, top_k and user
//     (metadata.user_id) are passed on; a streaming request asks for
//     stream_options.include_usage so the usage arrives at the end.
//
// Translation back:
//
//   - finish_reason "length" becomes max_tokens, "tool_calls" (or
//     "function_call", or "stop" when the message holds tool calls) becomes
//     tool_use, "content_filter" becomes refusal, and anything else
//     end_turn. "stop" becomes stop_sequence only when the engine says which
//     stop string matched (vLLM's non-standard choice field "stop_reason",
//     a string) and that string is one of the request's stop_sequences; the
//     sequence is then reported in stop_sequence. Engines that do not report
//     the match (llama.cpp) yield end_turn, since they strip the stop string
//     from the output and nothing else can tell.
//   - Anthropic's input_tokens excludes cache reads while OpenAI's
//     prompt_tokens includes them, so input_tokens is prompt_tokens minus
//     prompt_tokens_details.cached_tokens, and cache_read_input_tokens is the
//     cached count.
//   - On the non-streaming path tool call arguments that are not a JSON
//     object (malformed JSON from the model, or an empty string) become the
//     input {}: Anthropic's input is always an object, and inventing keys to
//     carry the raw text could reach a tool as a real argument. The
//     streaming path passes argument fragments through unchanged as
//     partial_json, because it cannot know the whole before it is sent.
//   - Reasoning output (reasoning_content) is not translated: a client that
//     did not enable thinking does not expect thinking blocks.
//
// Streaming: see StreamTranslator for the event sequence, tool call
// interleaving, usage and the error paths.
package anthropic

// Package adversarial is the budget suite of helexa-go: tests that send
// hostile HTTP requests through a cortex Gateway to a real neuron process
// (cmd/neuron) serving a simulated engine process (helexa-sim), all on
// loopback, and check that a capped API key is never served more than it
// was charged, whatever the bytes and whatever the client does.
//
// The truth is measured, not taken from the answers: the engine counts the
// tokens it really generates (helexa-sim's GET /sim/stats, which the
// neuron does not forward), the Local provider reports the key's spend and
// reservations, and a meter collects the gateway's records. After each
// case, with the key quiet:
//
//   - served ≤ reserved: the engine generated no more completion tokens
//     than the gateway reserved for the case's requests;
//   - settled ≥ served: the gateway charged at least what the engine
//     generated;
//   - spent ≤ hard cap, and the ledger's spend is the meter's settled sum;
//   - nothing stays reserved.
//
// The simulated engine reads JSON as leniently as real engines do (last
// duplicate wins, case-insensitive keys with Unicode folding, escapes
// decoded, llama-server's n_predict and n_cmpl, best_of, prompt arrays),
// so a gateway that reads a body differently from the engine is caught
// here. The cases:
//
//   - escape, case and duplicate variants of every field the gateway reads
//     (model, stream, stream_options, include_usage, n, n_cmpl, best_of,
//     prompt, max_tokens, max_completion_tokens, max_output_tokens,
//     n_predict, max_new_tokens): refused with 400 ambiguous_request;
//   - bodies that are not ambiguous but carry an engine's own output bound
//     (n_predict huge or unbounded beside a small max_tokens,
//     max_new_tokens alone) and completion prompt arrays with n and
//     best_of: served within the reservation or refused;
//   - a client that reads a few bytes of a large answer and closes, and a
//     client that stops reading a stream (a raw TCP client with small
//     socket buffers): the stream is cut after the stream idle timeout, the
//     key's in-flight slot is freed, and what the engine generated is
//     charged;
//   - 40 concurrent requests on one small capped key;
//   - the client's query string never reaches the engine, and the engine's
//     own response headers (Server, Access-Control-Allow-Origin) never
//     reach the client.
//
// The same guarantees are checked against the real engine: llama.cpp's
// llama-server and its tiny model in the repository's sibling folder
// shared/realengine (TestRealEngine), whose own counters
// (llamacpp:tokens_predicted_total) say what it generated. It honours
// n_predict over max_tokens and n_cmpl over n, and its usage counts one
// choice of several; it closes a connection after every streamed answer.
// The tests skip when the binary is missing, and fail then with
// HELEXA_REQUIRE_REALENGINE=1 (as .ci/run sets it).
//
// The package has no code of its own: the tests build the two binaries
// once, run on Linux only (they find the engine's port in /proc) and skip
// under go test -short.
package adversarial

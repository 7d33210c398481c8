// Package neuron is the per-host agent of a helexa fleet: it discovers the
// host's GPUs, runs models through a Harness (engine child processes, or the
// simulated engine), admits and forwards inference requests to them, and
// answers a small management API. Agent is an http.Handler; Client is the
// typed client of its API used by cortex.
//
// The wire types of the management API are defined here once and used by
// both the Agent and the Client.
//
// # Management API
//
//	GET  /discovery              Discovery: the host and its GPUs
//	GET  /health                 Health: device samples, per-model admission, activation
//	GET  /version                Version
//	GET  /models                 {"models": [ModelInfo...]}
//	POST /models/load            LoadSpec -> ModelInfo, once the model is ready
//	POST /models/check           LoadSpec -> {"model_id","status":"ok"}: could the load start?
//	POST /models/unload          UnloadRequest -> {"model_id","status":"unloaded"}
//	GET  /models/{id}/endpoint   Endpoint: the neuron's own URL
//	GET  /models/{id}/logs       {"model_id","lines":[...]}: the engine's last output
//	POST /replicas/claim         ReplicaClaim -> ClaimResult: may a replica be loaded?
//	POST /replicas/release       ReplicaRelease -> {"model","neuron","status":"released"}
//
// Errors are OpenAI error envelopes whose codes are the Code* constants;
// Client turns them back into the sentinel errors (errors.Is).
//
// # Loads
//
// POST /models/load starts the model and answers when it is ready. A load
// of a model the neuron already runs starts nothing: a loaded model is
// answered at once; a load of a model that is loading joins that load, waits
// for it and answers its result; a model that is failed or recovering
// (its engine crashed or hung and is being restarted) is answered at once
// with that status. The neuron is thus the arbiter of loads across cortex
// replicas: it is the one place where every replica's load of a model on
// this host meets, so a herd of cold requests spread over many replicas
// that chose the same neuron starts one engine, with no state shared
// between the replicas (no Redis, no consensus). Two replicas that choose
// different neurons for the same model may still start one load on each;
// that is a second replica of the model, not a conflict, and cortex's
// scaling and eviction settle it later.
//
// A load that cannot start is refused before anything starts, with 422
// model_cannot_start (ErrCannotStart): the engine template's command does
// not resolve to an executable, or the model's source is a local path
// (absolute, or ./ or ../ relative) that does not exist. POST /models/check
// runs the same checks, and those a load makes before starting (unknown
// engine, CUDA unavailable, a model larger than the host's devices), with
// no side effect: cortex asks it before evicting anything to make room
// for a load, so that a load that cannot start evicts nothing. It does not
// check free VRAM, which the evictions are for.
//
// POST /models/unload refuses a model with requests in flight or queued
// (409 model_busy) unless "force" is set; a forced unload stops the engine
// under the requests in flight, which end with an error, and requests
// arriving meanwhile get 503 model_not_ready.
//
// # Replica claims
//
// A neuron is also the arbiter of the replicas of some models, to make a
// model's max_replicas hard when several cortex replicas scale it at once.
// Before loading a replica, a gateway asks the one neuron that rendezvous
// hashing picks for the model (the same on every gateway) to grant a
// claim: POST /replicas/claim with the model, the neuron to load on, max
// (the model's max_replicas), the holders (the neurons where the gateway
// sees a replica, loaded or loading) and ttl_ms (how long the claim
// counts, at most 24h). The neuron drops the model's expired claims, then
// counts the union of the holders and the neurons with a live claim: a
// neuron already counted is granted and its claim renewed; another is
// granted, and claimed, while fewer than max count; else the answer is
// {"granted": false} and nothing changes. The answer lists the counted
// neurons, sorted. POST /replicas/release drops a claim early, and
// releasing a claim that is not there is not an error. Bad input is 400
// invalid_request_body naming the field; a claim past the table's bound
// (65,536 claims, expired ones swept first) is 503 claim_table_full. The
// claims are in memory only: a neuron that restarts forgets them, and
// until they are made again each gateway's bound is what it sees.
//
// # Engine failures
//
// ModelInfo reports each model's engine failures: Status "failed" then
// "recovering" while a crashed or hung engine is restarted, Failures and
// Restarts counters, LastFailure ("crash" or "unresponsive"),
// LastFailureAt, LastFailureReason (no engine output), LastError (the
// reason and the engine's last lines) and LivenessFailures (failed
// liveness probes in a row so far). A poller that compares two answers of
// GET /models sees every crash, hang and restart. The process harness
// (package neuron/engine) probes each loaded engine's ready path every
// liveness interval and kills and restarts one that stops answering; see
// EngineConfig.
//
// # Connections to engines
//
// The neuron forwards each inference request to its engine over a pool of
// keep-alive connections, and an engine may close a pooled connection as
// the neuron sends on it: llama-server closes the connection after every
// streamed answer although it announces "Keep-Alive: timeout=5,
// max=100", and closes idle ones after 5 s. Three measures keep such a
// close from failing a request:
//
//   - Idle connections live 2 s, less than any engine keeps them (5 s for
//     llama-server and for the uvicorn servers of vLLM and SGLang), so an
//     idle connection is closed by the neuron, not by the engine.
//   - The forwarded request is marked idempotent (an X-Idempotency-Key
//     header with no value, which is not sent) and its body can be made
//     again (GetBody). Go's transport then sends it again, on another
//     connection, when it failed on a reused connection (never on a new
//     one) and either nothing of it was written, or no byte of the answer
//     had come back when reading failed (the engine closed or reset the
//     connection): net/http's shouldRetryRequest and isReplayable. It does
//     not when part of the request went out and writing the rest failed
//     (a broken pipe, the engine's close seen too late).
//   - That last case, and any other failure on a reused connection before
//     the first byte of an answer, is sent once more by the neuron itself,
//     on a new connection that is not pooled.
//
// No request is answered twice or charged twice for it. A request is sent
// again only when no byte of an answer came back on the failed attempt,
// so the client gets the one answer of the attempt that succeeded; cortex
// charges a request from the usage of the answer it relays, so from that
// one answer. What may happen, rarely, is that an engine did the work
// twice: when it had read the whole request before its connection closed.
// That costs the engine time, not the client tokens. A request whose
// client has gone is not sent again.
//
// # What clients see
//
// The answers of the inference routes name no address, port, file path,
// transport error or engine output: an engine that cannot be reached is
// "engine unreachable", the detail goes to the neuron's log. An engine's
// own answers, errors included, are relayed unchanged. The management API
// is for cortex and operators: its errors (a failed load carries the
// engine's last output lines) and ModelInfo.LastError may name paths and
// ports, and must not be shown to the clients of the inference API as
// they are.
package neuron

// Package faulttest is the fault suite of helexa-go: integration tests
// that run real neuron processes (cmd/neuron) with simulated engines
// (helexa-sim) as their children, and a cortex Gateway in the test
// process over them, all on loopback, then break things and check that
// the fleet survives and that nothing is lost.
//
// The scenarios, each a test of its own:
//
//   - An engine that dies mid-stream: the client's stream ends with an
//     error event (not a hang), the reservation is settled within a
//     second, the model goes through "recovering" back to "loaded", and
//     the next request succeeds.
//   - A neuron killed with SIGKILL: its engines die with it, a request
//     that cannot connect is sent once more to a replica, the gateway
//     marks the neuron unhealthy at the third failed poll, and with no
//     replica left it answers 503 with Retry-After.
//   - A neuron that stalls mid-stream: the stream idle timeout ends the
//     stream with an error event and settles it; a slow but steady
//     stream longer than the idle timeout is not cut.
//   - A client that goes away: the request to the neuron is cancelled,
//     the neuron's admission slot is freed and the reservation settled.
//   - Graceful shutdown of the gateway and of a neuron (SIGTERM): streams
//     in flight finish, new requests get 503, nothing stays reserved.
//   - A replica whose engine was killed: it answers model_not_ready while
//     its neuron restarts the engine; every request is retried on the
//     other replica, the failing one is ejected after the failures in a
//     row the outlier detection allows, and no client sees an error. With
//     no other replica, the request waits for the restart.
//   - A hung engine (helexa-sim stopped with SIGSTOP): the neuron's
//     liveness probes find it, it is killed and restarted, and its request
//     gets a clear 503.
//   - A herd of loads of one model from several gateways starts one
//     engine (the neuron arbitrates), and a load that cannot start is
//     refused before anything starts.
//   - Replicas that follow demand (min_replicas, max_replicas), on engines
//     that serve one answer at a time: a burst of open-loop arrivals at
//     2.5 times one replica's capacity grows the replicas up to
//     max_replicas and never past it, the queue per replica falls back
//     and the fleet completes more than one replica can; after the burst
//     they shrink to min_replicas once idle. A steady closed-loop load
//     over the target on one replica and under it on two scales out once
//     and does not flap. A scale-out evicts only an idle model of lower
//     residency priority, never a pinned model on its pin nor one of its
//     own priority, and with no such room it does not scale out. Three
//     gateways that each place new replicas on a different neuron first,
//     under load through all three, never make the neurons list more
//     than max_replicas: every replica is claimed from the model's
//     arbiter neuron first.
//   - With HELEXA_LLAMA_SERVER and HELEXA_LLAMA_MODEL set (as .ci/run does
//     when ../shared/realengine is there), the same against a real
//     llama.cpp llama-server: a cold load, chat, streams with usage,
//     embeddings, eviction, an engine killed mid-stream, a stopped one,
//     and spend equal to the engine's usage.
//
// Every error answer of the scenarios, and the status a client key sees,
// are checked for addresses, ports, paths and transport errors
// (internal/redact).
//
// After each scenario no key holds a reservation and no child process is
// left; after the suite no goroutine is left (goleak). The package has no
// code of its own: the tests build the two binaries once (TestMain) and
// skip under go test -short.
package faulttest

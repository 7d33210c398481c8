// Package cortex is the gateway of a helexa fleet: it authenticates API
// keys, holds each key to its budget, routes each OpenAI-compatible request
// to a neuron that has the model (or loads it there, evicting least recently
// used models to make room), streams the answer back and meters usage.
//
// # The Gateway
//
// Gateway is an http.Handler serving the OpenAI-compatible routes POST
// /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/responses,
// GET /v1/models (the catalogue joined with the fleet) and the public GET
// /health; MetricsHandler serves the Prometheus metrics on a listener of
// their own. Build one with NewGateway over the configured neurons and the
// catalogue, call Run to keep the fleet fresh, and Shutdown at the end.
// Config reads cortex.toml for the reference binary, cmd/cortex.
//
// # Request path
//
// Every inference request takes these steps, in this order; each failure
// answers with an OpenAI error envelope (see Errors) and ends the request:
//
//  1. Admission past the shutdown gate: after Shutdown has begun, 503
//     shutting_down with Retry-After.
//  2. Auth: the key of "Authorization: Bearer" or "x-api-key" is resolved
//     by the entitlements Provider (WithProvider). A missing or unknown key
//     is a 401 invalid_api_key with WithRequireAuth, else the caller is
//     anonymous; an unavailable provider is a 503 with Retry-After. Then
//     the key's own limits (max_in_flight, rpm): over one, 429
//     rate_limit_exceeded with Retry-After (see Budgets and limits).
//  3. The body must be JSON: a Content-Type other than application/json
//     or application/*+json is a 415 unsupported_media_type (none is taken
//     as JSON). It is read under the size limit (WithMaxBodyBytes, 413
//     request_too_large) and the read timeout (WithBodyReadTimeout, 408
//     request_timeout, and the connection closes) and scanned in one pass
//     for the few fields the gateway needs (model, stream, every output
//     bound, n, best_of, n_cmpl, stream_options, the prompts). Nothing
//     else of the body is decoded, but a body that decoders could read
//     differently (a key twice in one object, at any depth and after
//     unescaping; a key that is a field the gateway reads only after
//     unescaping or case folding, such as "Max_Tokens" or "\u006dodel") is
//     a 400 ambiguous_request: see The budget invariant. A chat completion
//     without messages is a 400 invalid_request_body.
//  4. The model name is resolved through the catalogue's aliases (or the
//     fleet, for a resident model the catalogue does not know: 404
//     model_not_found when neither knows it). The prompt estimate (text / 4
//     plus 4 tokens per message) is checked against the model's input
//     limit, else its context: over it, 400 context_length_exceeded, and
//     the request is never sent. The estimate leaves out the output: the
//     engine has the last word on prompt plus output. A maximum output
//     over the model's limit.output is a 400 invalid_request_body: the
//     limit is a hard bound, and a request is refused rather than
//     silently clamped to it.
//  5. Admit: the worst case is reserved against the caller's budget, before
//     routing, so that a request over budget never causes a cold load: the
//     prompt estimate plus its sequences (the prompts of a prompt array,
//     times the most of n, best_of and llama-server's n_cmpl) times the
//     maximum output (the request's max_completion_tokens, max_tokens,
//     max_output_tokens, n_predict or max_new_tokens, else 16 for a
//     /v1/completions request, OpenAI's default, else the model's output
//     limit, else 4096; none for embeddings), in tokens or priced in
//     micro-dollars at the model's cost. With WithStrictCaps the prompt's
//     upper bound (its body's bytes) is reserved instead of its estimate,
//     so that a prompt longer in tokens than estimated cannot spend past a
//     hard cap. Anonymous callers reserve nothing. See Budgets and limits
//     for the refusals and clamp_max_tokens.
//  6. Route: a load of the model already in progress is waited for;
//     otherwise the Router decides, and the gateway carries the decision
//     out: Serve proxies at once; Join and Load run one load per model at a
//     time (see Cold loads), then proxy to the neuron the model is ready on.
//  7. Proxy: the body goes to the neuron with the model id in place of an
//     alias, every output bound it has set to the maximum output reserved
//     (and the route's own bound added: max_tokens, or max_output_tokens
//     on /v1/responses; an anonymous request that set none is left
//     without one) and, for a chat or completions stream that does
//     not ask for it, stream_options.include_usage set; the client's query
//     string is not sent. The request carries the output allowance
//     (neuron.HeaderMaxOutputTokens), which the neuron enforces on streams.
//     The answer streams back (see Streaming). A neuron's own error answer
//     reaches the client with its status and body; of the headers of any
//     answer only Content-Type, Content-Length, Retry-After and
//     Openai-Processing-Ms pass, so that an engine's own (Server, its CORS
//     headers, its request id) stay in the fleet.
//  8. Finish, exactly once on every exit path (panics included), before
//     the handler returns: the reservation is settled with the usage
//     observed, or released when nothing was served; the key's in-flight
//     slot is freed; the metrics, the meter record and the access line
//     (WithAccessLog) are recorded. The
//     usage is the engine's (the top-level usage of the body or of the
//     last chunk that has one), raised to what the gateway and the neuron
//     counted; when it never came, the whole reservation. See The budget
//     invariant. A panic before anything was served releases; after, it
//     settles what was observed.
//
// Retries. An attempt that failed before anything reached the client in a
// way that cost nothing is sent again: a connection to the neuron that
// failed (the endpoint lookup or the request itself), and a neuron's own
// refusal before its engine saw the request: 503 model_not_ready (its
// engine is restarting), 503 queue_full, 404 model_not_found. The retry
// goes to another replica that is loaded or loading; after
// model_not_found (the model was unloaded behind the snapshot's back: by
// another gateway's eviction, an operator, a fast neuron restart) the
// gateway refreshes that neuron first and may load the model again, as for
// a first attempt. At most 3 neurons in all, within the client's request;
// the reservation covers every attempt and is settled once. When no
// replica is left, the last neuron's answer reaches the client. This holds
// for streams too: a stream that has not begun has nothing to duplicate. A
// stream whose neuron sends nothing for the idle timeout, not even
// headers, is not retried (504 upstream_timeout).
//
// # The budget invariant
//
// For every request, whatever its bytes and whatever the client and the
// ledger do:
//
//  1. Output bound: the engine generates no more output than was
//     reserved for.
//  2. Model: the model that serves the request is the model that was
//     authorized and priced.
//  3. Settle: the ledger settles at least what was served.
//  4. Cap: spent never exceeds a capped key's hard cap.
//
// How each is kept:
//
//   - One reading. The gateway, the neuron and the engine must agree on
//     what a body says. The gateway reads it with internal/reqscan and
//     refuses (400 ambiguous_request, in Anthropic's shape on
//     /v1/messages) what two reasonable decoders could read differently:
//     duplicate keys after unescaping (Python's and nlohmann's json and Go's
//     encoding/json keep the last), and keys that name a field it reads
//     only after unescaping or case folding (Go's encoding/json matches
//     "MODEL" and "ſtream"). The neuron refuses the same bodies with the
//     same code. What passes has one reading for every decoder.
//   - Every bound rewritten. Each output bound an engine obeys
//     (max_tokens, max_completion_tokens, max_output_tokens, llama-server's
//     n_predict, which wins over max_tokens there, max_new_tokens), null
//     ones included, is set to the maximum output reserved, and every count
//     of outputs (n, best_of, n_cmpl, prompt arrays) is reserved.
//   - Enforcement at the edge. The neuron counts what a stream sends out
//     (at least a token per choice that carries output in an event) and,
//     past the allowance the gateway sent, stops relaying and cancels the
//     engine's request; its count reaches the gateway in a trailer.
//   - Settling what was served. The settled usage is the engine's, raised
//     to what the gateway and the neuron counted and to the bound of every
//     choice that ran to it (llama-server's usage counts one choice of
//     several), and to the whole output reserved when best_of candidates
//     are generated but not returned. Without the engine's usage (a stream
//     the client left or stopped reading, or that broke or was cut; a
//     non-streaming answer with none or over 4 MiB), the whole reservation
//     is settled: what the engine generated beyond what reached the
//     gateway is unknown, and only the reservation bounds it. The prompt
//     tokens the engine's usage reports read from its prompt cache (see
//     Prompt cache) are priced at the model's cache_read; they are
//     clamped to the prompt tokens it reported, so that no report can
//     discount more than the whole prompt at the cache price. A client that
//     leaves a stream early therefore pays what it reserved: it should set
//     max_tokens to what it needs. A client that leaves before any byte of
//     the answer is released (the engine's request is cancelled with it). A
//     non-streaming answer is read to its end from the neuron after its
//     client left, for its usage. A streaming client that accepts no bytes
//     for the stream idle timeout is cut by a write deadline, which frees
//     its slots. Settles that fail are retried and kept in an outbox (see
//     below).
//   - The cap: reserve before, settle after, every amount within the
//     reservation except a prompt longer than estimated (WithStrictCaps
//     closes that too).
//
// The tests that hold the gateway to it: internal/adversarial sends
// hostile bodies and clients through cortex to real neuron and simulated
// engine processes (an engine as lenient as the real ones: last duplicate
// wins, case-insensitive keys, n_predict and n_cmpl obeyed) and to a real
// llama-server, and compares what the engine generated with what was
// reserved and charged; internal/reqscan's FuzzDifferential reads built
// bodies with the gateway's reader and two lenient engine readers.
//
// # Budgets and limits
//
// A key's budget belongs to its account (see package entitlements); the
// gateway reserves before routing and settles after, so that spent plus
// reserved never exceeds a hard cap (short of an engine reporting more
// prompt tokens than the estimate). A refused reservation is never
// admitted with a smaller amount:
//
//   - a balance that does not cover the worst case: 429 insufficient_quota,
//     without Retry-After (a top-up helps, waiting does not);
//   - a rolling window whose remainder does not cover it: 429
//     rate_limit_exceeded with Retry-After, the time to the window's end;
//   - a rolling window whose whole cap is smaller than the worst case: 400
//     request_exceeds_budget_cap (ErrExceedsBudgetCap), since no
//     Retry-After could help; lower max_tokens.
//
// A key with clamp_max_tokens is instead sent with max_tokens lowered to
// what its budget has left (every max field the request has is set; a
// request with none gets max_tokens, or max_output_tokens on
// /v1/responses), and the answer carries X-Helexa-Clamped-Max-Tokens. It
// is refused, as above, only when the budget does not cover the prompt and
// one output token.
//
// A key whose unit is "usd" is charged the resolved model's catalogue
// price in integer micro-dollars, rounded up; a model without a cost is a
// 400 model_not_priced (ErrModelNotPriced) before anything is reserved.
// The reservation prices the whole prompt at the input price (the worst
// case: whether the engine will find the prompt in its cache is unknown
// before it runs); the settle prices the prompt tokens the engine reports
// cached at cost.cache_read (the input price when the model has none) and
// the rest at the input price. A "tokens" key is charged every prompt
// token, cached or not.
//
// Settle is given the usage in the key's unit (tokens: prompt plus
// completion), as The budget invariant describes.
//
// A reservation that is a lease (an entitlements.Renewer, as
// entitlements/redisledger's are) is renewed every third of the lease TTL
// while its request runs (see WithLeaseTTL), so that a long stream keeps
// its amount held.
//
// Settles that land. The first Settle (or Release) is made before the
// handler returns, as above, within 5 s. One that fails with anything but
// an answer that the reservation is gone (entitlements.ErrReservationSettled,
// ErrUnknownReservation, ErrInvalidAmount: logged, the record says
// "failed") is retried in the background by the Gateway's settler, one
// goroutine per pending settle, with capped exponential backoff and
// jitter (WithSettleBackoff: 100 ms doubling to 30 s), until it lands or
// its retry window ends (WithSettleRetryWindow, 24 h from the end of the
// request). The request is not held up: its meter record says "pending".
// While a settle is pending its lease is still renewed, so that the ledger
// keeps the amount held instead of returning it to the budget, where
// other requests could spend it before the charge lands. The retries do
// not stop at the lease's expiry: redisledger still records a Settle
// after its lease expired (for ExpiredLeaseRetention, 24 h, which the
// default window matches), so giving up there would lose a charge the
// ledger could take; a provider for which an expired reservation is gone
// says so with ErrUnknownReservation or ErrReservationSettled, which ends
// the retries. A retry answered ErrReservationSettled means an earlier
// attempt landed (Settle applies once), so it counts as landed. Shutdown
// waits, within its ctx, for the pending settles, then stops retrying.
//
// The outbox (WithSettleOutbox, [gateway] settle_outbox) makes pending
// settles survive a clean shutdown and a crash. It is an append-only file
// of JSON lines: a "settle" line with the reservation's token
// (entitlements.Resumer), the principal, the amount and what names the
// request, written before the first attempt; a "pending" line, fsynced,
// when that attempt fails; a "done" line when the settle lands or is given
// up. At start the gateway reads back the settles without a done line
// (skipping a line cut short), rewrites the file with only those, and
// re-issues them in the background through the provider's
// ResumeReservation; re-issuing one that had landed is harmless, since
// the ledger applies a reservation once. The settle line is written
// before the first attempt, not on its failure, because a crash between
// the end of a request and its settle would otherwise lose the charge
// with nothing on disk: the lease would expire and return the amount. It
// is written without fsync (a write(2), microseconds, under the outbox's
// own lock): a crash of the process keeps it, a crash of the machine may
// lose the settles of its last instants that were not yet pending; every
// pending settle is fsynced. The file is rewritten with its open entries
// past 4 MiB and at shutdown. One gateway per file. Without an outbox, a
// settle still pending at shutdown is logged and recorded as failed.
//
// The outbox also holds every reservation in flight: right after a
// reservation, the settle of its whole amount is written under the id
// that the request's own settle line takes over at its end. A gateway
// started on the outbox of one that was interrupted (a crash, a kill)
// while serving requests settles them at their reservations (outcome
// "interrupted"), since what they served is unknown, instead of letting
// their leases expire and hand back what was served.
//
// The outbox needs a Provider that can rebuild a reservation from a token
// (entitlements.Resumer): entitlements/redisledger's Ledger can. With
// entitlements.Local the outbox stays empty, since its reservations live
// in the process (and a Settle there does not fail for want of a
// network); a Local that journals its reservations could implement
// Resumer too. entitlements.Chain forwards it to the provider that issued
// the reservation. After a power
// loss (not a process crash) a settle that had landed but whose done line
// was lost is re-issued, answered ErrReservationSettled, and recorded a
// second time in the meter (never in the ledger).
//
// Per-key limits: max_in_flight counts a key's requests in flight, rpm is
// a token bucket of rpm requests refilled at rpm per minute; each refusal
// is a 429 rate_limit_exceeded with Retry-After (1 s for max_in_flight,
// the time until the bucket holds a request for rpm). They are checked
// right after auth, so a refused request reads no body and reserves
// nothing; every request that passes them counts, whatever becomes of it.
// The gateway asks an entitlements.Limiter, and a refusal is its
// *entitlements.LimitError. When the Provider is a Limiter
// (entitlements/redisledger) it counts them over every replica that shares
// it, and the gateway renews a request's slot (an entitlements.Renewer)
// with its reservation's lease; otherwise the gateway's own
// entitlements.KeyLimiter counts them in its process, and N replicas allow
// N times them.
//
// Every answer to an authenticated caller with a capped budget, errors
// included, carries the rate limit headers of its account's budget:
// X-Ratelimit-Limit-Tokens (the cap), X-Ratelimit-Remaining-Tokens (what
// is left, after this request's reservation), X-Ratelimit-Reset-Tokens
// (for a rolling window, the time to its end as a Go duration such as
// "59m30s"; absent for a balance, which never resets) and
// X-Helexa-Budget-Unit ("tokens" or "usd"). The amounts are in the key's
// unit: micro-dollars for a "usd" key, despite the header's name. Uncapped
// and anonymous callers get none. The headers cost one Snapshot of the
// Provider per request.
//
// GET /v1/me answers the calling key's MeReport: principal, unit, limits
// and budget (401 without a valid key when auth is required).
//
// # Prompt cache
//
// Engines keep the KV of the prompts they processed and reuse it for a
// prompt that shares its prefix (llama-server's cache_prompt, vLLM's
// automatic prefix caching, SGLang's radix cache), and report the tokens
// they reused in their usage, which the neuron relays untouched:
// prompt_tokens_details.cached_tokens on chat and text completions,
// input_tokens_details.cached_tokens on /v1/responses. The gateway reads
// them with the rest of the usage (the usage object's own members; of
// duplicates the last, as a client's decoder does), clamps them to the
// prompt tokens, and carries them to the settle, the meter record
// (cached_tokens), the metrics, the status page and, on /v1/messages,
// Anthropic's cache_read_input_tokens (input_tokens is the rest of the
// prompt). A request settled without the engine's usage has none. A "usd"
// key pays them at the model's cost.cache_read (see Budgets and limits).
//
// # Prefix affinity
//
// The prompt cache pays only when a request lands on the replica that
// holds its prefix. The default Router sends each request to the least
// busy replica, which scatters the requests that share a long system
// prompt, or the turns of one conversation, over every replica; each then
// prefills them again. With prefix affinity on (route.WithPrefixAffinity,
// or in cortex.toml:
//
//	[routing]
//	prefix_affinity = true
//	affinity_depth = 8     # blocks of 256 bytes of prompt text (2 KiB)
//	affinity_bound = 1.25  # a replica's most work, × the mean
//
// ), requests whose prompts share their first affinity_depth blocks go to
// the replica that rendezvous hashing of that prefix over the neuron names
// picks, unless its work would pass affinity_bound times the mean of the
// model's replicas, when the prefix spills to the next replica in its
// order (consistent hashing with bounded loads). Several cortex replicas
// pick the same replica for the same prefix without talking to each other.
// A prefix seen for the first time goes there only while that replica is
// among the least busy, else to the least busy (prompts that share
// nothing are routed as least-loaded routing routes them), and a prefix
// seen again goes back to the replica it went to last, whose cache holds
// it, while that one is within the bound (route.PrefixAffinity).
// Shorter prompts, with nothing worth keeping, are routed as without it.
//
// Choose affinity_depth near the length of the prefix your requests share:
// about a shared system prompt's length groups requests by it (a tenant, an
// application); longer separates the conversations that share one, so each
// conversation keeps its own replica. A lower affinity_bound spreads a hot
// prefix sooner, at the cost of cache hits. The fleet benchmark
// (go run ./bench/fleet, in make bench) measures the policy against
// least-loaded and round-robin routing on a simulated fleet of 8 replicas.
//
// # Metering
//
// WithMeter receives one metering.Record per finished inference request
// that got past auth, anonymous callers included, after its settle: the
// account and key id (never the key), model, neuron, route, tokens
// (prompt, completion, and the prompt tokens read from the engine's
// prompt cache), reserved and settled amounts, duration, time to first byte of the
// answer, status, outcome and settle state (what the ledger recorded:
// settled, released, pending or failed; Settled is 0 unless settled). A
// request whose settle was pending is followed by one settle record
// (metering.KindSettle, the same SettleID, no tokens) when the settle
// lands or is given up, possibly from the next gateway that replays the
// outbox; so the sum of Settled over all records is what the ledger
// charged. Requests refused at auth or while shutting
// down are not metered. A Meter must not block; one that panics is
// recovered and logged. cmd/cortex wires a metering.FileSink and the
// opt-in metering.AccountSpend from the [metering] table (MeteringConfig).
//
// # Neurons: tokens, headers and endpoints
//
// Only an allowlist of the client's headers reaches a neuron: Accept,
// Content-Type, User-Agent, traceparent, tracestate and OpenAI-Beta, and
// the request id: the client's X-Request-Id when it is printable ASCII
// (cut to 128 bytes), else one the gateway made, which every answer
// carries and the access log names (WithAccessLog). The client's Authorization and x-api-key never do, nor its
// cookies, Accept-Encoding (answers must arrive uncompressed for the usage
// scan) or any X-Helexa-Account-Id or X-Helexa-Key-Id it sent: the gateway
// sends the neuron's own token (NeuronConfig.Token) and stamps its own
// principal headers, which the neuron's per-principal admission uses.
//
// The inference URL of a model comes from the neuron's GET
// /models/{id}/endpoint and is cached per (neuron, model) until the
// model's status or loaded_at changes in the fleet snapshot, or a
// connection to it fails. The neuron reports its own URL as it sees
// itself: a loopback or unspecified host (127.0.0.0/8, ::1, localhost,
// 0.0.0.0, ::) is swapped for the host of the configured endpoint, keeping
// the reported port and path. A reported host equal to the configured one
// is used as it is, and any other host is refused (502): a neuron must not
// be able to send prompts to an arbitrary host.
//
// # Streaming
//
// An SSE answer is relayed event by event, each written and flushed as it
// arrives: nothing is buffered beyond one event. On the way the gateway
// reads the usage and counts content events, and drops the usage-only
// chunk (choices: []) it asked for when the client did not. The stream
// idle timeout (WithStreamIdleTimeout, default 5 minutes) cuts a stream
// that sends nothing for that long; it is not a limit on the whole answer.
// A stream cut short by the idle timeout or a broken neuron ends with an
// error event (data: {"error":{...}} with code upstream_timeout or
// upstream_connection_error), then the client's connection is aborted, so
// that the client sees it is incomplete; a client that goes away cancels
// the request to the neuron.
//
// # Cold loads
//
// Loads are single-flight per model and neuron: the first request for a
// cold model starts one load, in a goroutine of its own under the load
// timeout (WithLoadTimeout, default 10 minutes) and the gateway's life, not
// the request's, so a client that leaves does not abort it. The Router
// sees the loads in flight (route.Request.Loads), and the default one sends
// every other request for the model to wait for that load (ActionJoin)
// unless a replica is ready. A load with
// victims first asks the neuron whether it could start at all (LoadChecker:
// POST /models/check); a load that cannot (its engine's command or its
// model file missing, an unknown engine) is refused before any victim is
// evicted. A load then unloads the Decision's victims in order (a victim
// gone already is fine; one refused as busy aborts the load with 503 and
// Retry-After), asks the neuron to load the catalogue profile (engine,
// source, VRAM, limits, capabilities), then refreshes that neuron in the
// snapshot (when the Poller is a route.Refresher) before the waiting requests
// are sent. The neuron
// has the last word on VRAM: its 409 insufficient_vram, like a busy
// victim, a neuron shutting down, unreachable or timing out, is a 503 with
// Retry-After; a load that fails on the neuron (model_load_failed, an
// unknown engine) is a 502 model_load_failed that retrying does not fix.
//
// A request does not wait for a load without bound: a streaming chat or
// completion request receives SSE comment keep-alives (": loading <model>
// <n>s") once the wait passes a few seconds, and a load that then fails
// ends its stream with an error event, since the status is already sent;
// a non-streaming request (and an Anthropic stream) waits up to the cold
// start wait (WithColdStartWait, default 60 s), then gets 503 with
// Retry-After while the load goes on. /v1/models lists loading locations
// with their elapsed seconds.
//
// A model that is resident only as recovering (its neuron restarting its
// engine after a crash or a failed liveness probe) is waited for in the
// same way: the wait, shared by every request for the model, refreshes the
// neurons it recovers on every second, and sends the requests there once
// one lists it loaded.
//
// A load that failed on a neuron is not started there again until its
// backoff ends (WithLoadBackoff: 5 s after the first failure, doubling with
// each failure in a row, at most 5 minutes; a load that succeeds clears
// it): requests for the model go to other neurons meanwhile, or get 503
// service_unavailable with Retry-After (route.ErrLoadBackoff), so that a model
// whose engine cannot start is not started again by every request.
//
// # Replicas that follow demand
//
// A catalogue model with replica bounds (min_replicas, max_replicas;
// catalogue.Model.Scaled) has its replica count decided by a route.Scaler
// (WithScaler; default route.NewScaler, tuned by cortex.toml's [scaling])
// on every poll interval: its min_replicas are placed when the gateway
// starts; one more replica is loaded, on the best feasible neuron (free
// VRAM first, then evicting only idle models of lower residency priority,
// never a pinned model on its pin), when the work per replica (in flight
// plus queued) stays at or above the target (4) for the window (10 s); and
// a replica that served nothing for the model's idle window (idle_unload,
// else 5 minutes) is unloaded, never below min_replicas, never one with
// requests in flight, while the others stay under half the target. A
// cool-down (30 s) between changes and that gap between the two
// thresholds keep a load at the threshold from flapping. Decisions are
// scale_out and scale_in events with their reasons (Events, the status
// page), counted in helexa_scale_decisions_total; /status and cortex
// status show each scaled model's replicas and last decision.
//
// Several cortex replicas each run their Scaler, and never pass
// max_replicas together: every load of a new replica of a scaled model,
// a scale-out or a request's cold load, is first claimed from the
// model's arbiter, the available neuron that rendezvous hashing picks for
// the model (route.Arbiter), which counts the replicas the gateway sees
// with the claims it granted and grants none past max_replicas (neuron's
// POST /replicas/claim; ReplicaArbiter). A scale-out it refuses does
// nothing; a request's load it refuses joins a replica it counts. While
// no arbiter can be asked, scale-outs wait, a request's load goes on
// without a claim, and the surplus a gateway sees is scaled in first
// ("over max_replicas"). scale.go and claim.go hold the details, and
// helexa_replica_claims_total counts the arbiter's answers.
//
// # Anthropic Messages
//
// POST /v1/messages takes an Anthropic Messages request, translates it
// into a chat completion (package internal/anthropic) and sends it down the
// same path as /v1/chat/completions: the same authentication, budget (the
// prompt estimate is the translator's CountTokens, the output max_tokens),
// routing, metering and metrics. The answer is translated back, streamed
// event by event in Anthropic's sequence with ping events while the engine
// is silent (WithPingInterval). Errors come from the same single mapping
// as the OpenAI routes and are rendered in Anthropic's error shape with the
// same status and Retry-After. POST /v1/messages/count_tokens answers the
// estimate without reserving anything.
//
// # Status page
//
// GET /status is a server-rendered page (embedded html/template, no
// JavaScript, refreshing itself) of every neuron, GPU, resident model and
// recent load, eviction and failure, and each model's prompt cache hits
// (StatusModel.PromptCache); GET /status.json has the same data
// for `cortex status`. It needs a key whenever /v1/models does, unless
// WithPublicStatus; budgets per key appear only for the admin keys of
// WithAdminKeys.
//
// # Metrics
//
// helexa_requests_total, helexa_request_errors_total (by kind: rejected,
// unavailable, upstream_status, upstream_broken, idle_timeout, canceled,
// internal), helexa_request_duration_seconds,
// helexa_time_to_first_token_seconds and helexa_tokens_per_second
// (histograms from 5 ms to 5 min, and from 1 to 2048 tokens per second),
// helexa_prompt_tokens_total, helexa_completion_tokens_total,
// helexa_cached_prompt_tokens_total (the prompt tokens the engines read
// from their prompt cache), helexa_prompt_cache_hit_ratio{model} (cached
// over prompt tokens since the gateway started, over the requests whose
// usage the engine reported, embeddings excluded; over a window,
// sum by (model) (rate(helexa_cached_prompt_tokens_total[5m])) /
// sum by (model) (rate(helexa_prompt_tokens_total[5m])) is close, though
// its denominator also counts estimated usage and embeddings),
// helexa_cold_starts_total, helexa_model_loads_total{result},
// helexa_evictions_total, helexa_settles_total{state} (what the ledger
// recorded when each request ended), helexa_settle_retries_total,
// helexa_settles_pending, helexa_settles_late_total{state} (pending
// settles that ended), and from the fleet snapshot at scrape time
// helexa_neuron_healthy, helexa_neuron_free_vram_bytes,
// helexa_model_in_flight and helexa_model_queue_depth. Labels are the
// model id (resolved, never the name a client sent), the neuron name and
// small fixed sets; each Gateway has its own registry unless WithRegistry
// gives one.
//
// # Decisions and effects
//
// The decisions live in package cortex/route, the layer an embedder
// replaces: the fleet snapshot (route.Fleet), the Router that picks a
// neuron and an Action for each request, the Evictor that picks the
// models to unload, the Poller that keeps the neuron states fresh, and the
// gateway's live usage counters (route.Usage). They are pure: no HTTP, no
// entitlements, no I/O but the Poller's. The Gateway carries each decision
// out through the neuron Client (load, unload, proxy), as grpc-go's
// ClientConn carries out what its balancer picks; see that package's
// documentation for the routing policy of the default Router.
//
// A Poller publishes neuron states only (route.Snapshot). The Gateway
// builds the Fleet it routes over from each new snapshot with its own
// catalogue and its own Usage (Gateway.Fleet), so a custom Poller
// (WithPoller) cannot leave the Router without live counts or ejections.
// The default Poller, a route.FleetPoller, reaches the neurons through
// clients that send over the gateway's Transport; WithPollerOptions
// configures it, WithRouterOptions the default Router.
//
// # Outlier ejection
//
// A replica (a model on a neuron) whose answers keep failing is taken out
// of rotation for a growing period, as Envoy's outlier detection does
// (WithOutlierDetection, [outlier_detection] in cortex.toml). Failures are
// only what is the neuron's or its engine's own: a connection that failed,
// a neuron's 503 model_not_ready, any other 5xx it answers, a stream that
// broke off or went silent past the idle timeout. A client's 4xx, a
// client that left, queue_full (overload, which routing by least work
// already steers away from) and model_not_found (a stale snapshot) count
// neither way; a 2xx answer is a success, and starts the count over.
//
// After 5 failures in a row (ConsecutiveFailures) the replica is ejected
// for 10 s (BaseEjectionTime) times its number of ejections, at most 5
// min (MaxEjectionTime); that number goes down by one for each base period
// the replica then spends in rotation. It comes back at the first of: its
// period's end (seen by the default Router at the next snapshot), a poll
// that shows its engine loaded anew (another loaded_at, or more restarts,
// than when it was ejected: the neuron restarted it), or a request it
// serves. The gateway does not probe it itself: the neuron probes its
// engines.
//
// The default Router skips ejected replicas while another replica is
// ready. When every ready replica is ejected it serves from the least busy
// of them rather than refuse (Envoy's panic mode): an ejection never turns
// into a 404 or a 503 of the gateway's own, nor into a cold load and its
// evictions; the client gets the neuron's answer, and a success brings the
// replica back. A custom Router sees ejection on the snapshot:
// route.ModelState.Ejected(f.At()), or ModelState.Ejection for when it
// ends, read with atomic loads like the usage counters. The Ejections live
// in the gateway's route.Usage, which every Fleet the gateway builds links
// to, whatever the Poller.
//
// Ejections and readmissions are events (eject, readmit) on the status
// page, /status.json and `cortex status`, which show each ejected replica
// with the end of its ejection, and in the metrics:
// helexa_replica_ejected{model,neuron} (1 while out of rotation) and
// helexa_replica_ejections_total{model,neuron}.
//
// # Fleet state and its events
//
// The gateway compares the Fleet of each new snapshot with the one before, and records what changed as events: a neuron down (its polls
// failed FailureThreshold times in a row) or back up, an engine that
// failed (crashed, or was killed for failing its liveness probes: the
// neuron's failure count rose, or a loaded model is now failed, recovering
// or restarted) and an engine restarted (loaded again). They are counted
// in helexa_neuron_down_total{neuron},
// helexa_engine_failures_total{model,neuron,kind} (kind crash,
// unresponsive, or unknown for a neuron that does not say) and
// helexa_engine_restarts_total{model,neuron}.
//
// A neuron that is down is shown down, with the models it last reported
// marked stale and nothing live about it (no uptime, no free VRAM, no GPU
// samples), on the page, in /status.json and in `cortex status`.
//
// What the fleet view shows never names an address, a port or a path, nor
// carries a transport error or an engine's output: a poll's error, an
// engine's last error and log lines are in the events' Detail and the
// admin view only, and an event's Error that looks like it carries them is
// cut to its error code for other viewers.
//
// # Errors
//
// The routing errors are route's sentinels (route.ErrNoHealthyNeuron,
// ErrModelRecovering, ErrModelNotFound, ErrNoFeasibleNeuron,
// ErrFeasibleNeuronDown); the retryable ones arrive wrapped in a
// *route.RetryError that carries the Retry-After to send (default 2 s),
// and a Router's own refusal is a *route.Refusal, answered with its
// status, code and message. Callers use errors.Is and errors.As.
//
// The Gateway maps errors to answers in one function. Its envelopes:
// 401 invalid_api_key; 429 rate_limit_exceeded with Retry-After (a rolling
// budget window is spent) or insufficient_quota (a balance is spent); 400
// invalid_request_body, missing_model_field, context_length_exceeded and
// model_not_deployable (route.ErrNoFeasibleNeuron: no neuron of the fleet can
// ever hold the model; not worth retrying); 404 model_not_found, and
// not_found for an unknown route; 405 method_not_allowed; 408
// request_timeout; 413 request_too_large; 415 unsupported_media_type; 400
// request_exceeds_budget_cap and model_not_priced; 429
// rate_limit_exceeded for a key's max_in_flight or rpm
// (*entitlements.LimitError);
// 503 service_unavailable with Retry-After (every
// *route.RetryError, a retryable *LoadError, an unavailable budget authority) and
// shutting_down; 502 upstream_connection_error (ErrUpstream) and
// model_load_failed; 504 upstream_timeout.
//
// Nothing from the inside of the fleet reaches a client: no message of
// the gateway's names a host, an address, a port, a file path or a
// transport error, and a neuron's error answer is relayed with its status
// and body only when its message has none of them (internal/redact) and
// it is not the engine's own server error; otherwise the client gets the
// gateway's envelope with the answer's code and a message that says only
// what failed. A failed load shows the neuron's code, and its message only
// when it is clean (an engine's log lines never). The logs have the
// details.
package cortex

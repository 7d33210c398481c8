// Package redisledger is an entitlements.Provider over Redis: the shared
// budget ledger of many cortex replicas behind a load balancer, so that every
// replica holds each account to one cap (no N-times limits, no lost updates,
// no window-reset races).
//
// A Ledger has exactly the semantics of entitlements.Local (the same
// arithmetic, the same epoch-aligned rolling windows, the same errors, the
// same guarantee that spent + reserved never exceeds a hard cap short of a
// recorded overspend) and passes entitlements/entitlementstest. What differs
// is below.
//
// # Atomicity
//
// Reserve, Settle, Release, Renew and Snapshot are each one Lua script, run
// atomically by the Redis server. Each first reclaims the account's expired
// leases and rolls its rolling window inside the script, so replicas cannot
// race a reset and expiry needs no background process.
//
// # Leases
//
// A reservation is a lease with a TTL (DefaultLeaseTTL, 10 minutes;
// WithLeaseTTL, or lease_ttl in the configuration). When its gateway dies
// before settling, the lease expires and its amount returns to the budget on
// the next call for that account. A gateway serving a longer request renews
// the lease: the reservation is an entitlements.Renewer, and the Ledger an
// entitlements.Leaser. The lease id is a random 128-bit value; the handle
// also has a LeaseID() string method for logs.
//
//   - Settle deletes the lease and applies the spend in one script: a
//     retried Settle finds no lease and returns
//     entitlements.ErrReservationSettled without counting twice.
//   - Settle after the lease expired still records the spend (the work was
//     served), as an overspend if need be, and returns nil; Stats counts it.
//     The ledger remembers an expired lease for ExpiredLeaseRetention (24h)
//     for that; a later Settle returns ErrReservationSettled.
//   - Release after the lease expired consumes the reservation and returns
//     ErrLeaseExpired (its amount was already returned).
//   - Renew after expiry returns ErrLeaseExpired: the amount is not held
//     again.
//
// A reservation handle belongs to the Ledger value that issued it; any other
// handle is entitlements.ErrUnknownReservation.
//
// # Clock
//
// By default the scripts read the Redis server's clock (TIME), so windows
// and lease expiry need no clock agreement between replicas. WithClock makes
// the ledger pass its own clock instead (tests); replicas then need
// synchronised clocks (NTP).
//
// # Failures
//
// A Redis error (unreachable, timeout, script error) is an
// *entitlements.UnavailableError with RetryAfter 1s, which the gateway
// answers with 503; a call whose ctx ends returns ctx.Err(). Reserve fails
// closed. WithFailOpen (fail_open = true) is UNSAFE: while Redis is
// unreachable Reserve grants unrecorded reservations whose Settle and
// Release do nothing, and Resolve answers from keys resolved before; Stats
// counts both.
//
// A call cut off by an error or a cancelled ctx may still have run on the
// server. A cancelled Reserve releases the lease it may have taken (and the
// TTL bounds it if that fails); a Settle may have been applied, and retrying
// it is safe.
//
// # Durability
//
// Budgets are only as durable as Redis's persistence: a Redis that
// persists nothing forgets every spend when it restarts, and every prepaid
// balance comes back. Run Redis with AOF ("appendonly yes", appendfsync
// everysec loses about a second of spend in a crash) or RDB snapshots (a
// "save" rule; a crash loses the writes since the last snapshot), and with
// a replica for failover. CheckPersistence asks Redis (CONFIG GET) which it
// has; cortex calls it at start and refuses a volatile Redis, or one whose
// CONFIG is forbidden (so its persistence cannot be verified), unless
// allow_volatile_redis = true in [entitlements.redis].
//
// # Per-key limits
//
// The Ledger is an entitlements.Limiter: Acquire checks a key's
// max_in_flight and rpm in one script over every replica's requests (the
// same token bucket as the gateway's own), and takes a slot that its
// Release gives back. A slot is a lease like a reservation: it expires
// after the lease TTL unless renewed (the gateway renews it with the
// reservation), so a replica that dies gives its slots back too.
//
// # Throughput
//
// Each call is one script on the server, and on loopback most of its cost
// is the system calls around it at both ends, not the script. So the ledger
// pipelines: when DefaultPipelines (WithPipelines) calls are already on
// the wire, further calls queue and go together as the next pipeline, one
// write and one read for all of them. A lone call goes at once, exactly as
// without batching. Reserve and Settle make four Redis calls each inside
// their scripts; expired leases are looked for only when the budget's
// stored bound (nx) says one may be due.
//
// BenchmarkReserveSettleParallel16 measures 16 goroutines of one process
// against a local redis-server, pipelined and not, side by side.
//
// # Data layout
//
// Every key starts with the key prefix (DefaultKeyPrefix "helexa:").
// Numbers are decimal strings; times are Unix milliseconds.
//
//	acct:{ID}            hash: unit, wk ("b" balance, "r" rolling), ws (window
//	                     seconds), cap (absent: uncapped), spent, reserved, win
//	                     (current window index), expired (leases reclaimed),
//	                     nx (no live lease expires before), tx (no expired
//	                     lease is due to be forgotten before), created
//	acct:{ID}:leases     sorted set: live lease "id:amount" -> expiry
//	acct:{ID}:expired    sorted set: expired lease "id:amount" -> when it
//	                     is forgotten
//	acct:{ID}:inflight:KEY  sorted set: the key's requests in flight, slot
//	                     id -> expiry (max_in_flight)
//	acct:{ID}:rpm:KEY    string: the key's GCRA time in microseconds (rpm)
//	{dir}:key:DIGEST     hash, one per key, by the hex SHA-256 digest of the
//	                     secret (never the secret): account, key_id, unit,
//	                     clamp, inflight, rpm, models (the allow-list,
//	                     absent for every model), created, revoked
//	{dir}:acct:ID        set: the digests of an account's keys
//	{dir}:accounts       set: account ids
//
// ID and KEY are the account id and key id with '%', '{' and '}'
// percent-encoded. The braces are Redis Cluster hash tags: an account's
// budget and limit keys share one slot and the key directory another, so
// every script touches a single slot and the ledger works on Redis Cluster
// as well as on one server. Redis 5.0 or later is required.
//
// # Keys and accounts
//
// Keys are added with AddKey (a digest), CreateKey (a generated secret,
// returned once) or Seed (the [[entitlements.keys]] of the configuration,
// at start: Seed only adds, Redis stays the source of truth), listed with
// Keys, Key and Account, and revoked with RevokeKey or RevokeKeyID. A budget
// belongs to an account; TopUp raises a balance's cap (spent stays the
// lifetime spend) and SetCap sets or removes a cap.
package redisledger

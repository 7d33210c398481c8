// Package entitlements is the budget ledger of a helexa gateway: it turns an
// API key into a Principal and holds each account to its spending cap with a
// reserve-before, settle-after protocol.
//
// # Protocol
//
// For every request the gateway:
//
//  1. calls Resolve with the caller's API key and gets a Principal (who is
//     calling, the unit its budget is counted in, and the per-key Limits the
//     gateway enforces itself);
//  2. calls Reserve with the worst case the request can cost (prompt estimate
//     plus the maximum output, priced in the principal's Unit) before it
//     routes, so a request over budget never causes a model load;
//  3. calls Settle on the Reservation with what the request really cost
//     once it ends, on every exit path, or Release when nothing was served.
//
// A Reservation is consumed exactly once, on itself: a second Settle or
// Release returns ErrReservationSettled and changes nothing. A call whose context is already
// done returns ctx.Err() and changes nothing; in particular a cancelled
// Reserve holds no quota and a cancelled Settle leaves the reservation open.
//
// Reserve refuses (with a *BudgetError) when spent + reserved + amount would
// exceed the hard cap; it never admits part of a request. Settle records the
// actual spend even when it is larger than the amount reserved: an overspend
// shows in the snapshot and makes later reservations fail until the window
// frees, it is never hidden. The gateway keeps overspends rare by reserving
// the worst case.
//
// # Windows
//
// A cap is counted over a CapWindow:
//
//   - Balance: spend accumulates for ever; the cap is a prepaid balance.
//     Refusals are InsufficientQuota (HTTP 429 insufficient_quota).
//   - Rolling(n): spend is counted in fixed windows of n seconds aligned to
//     the Unix epoch (a window starts at every multiple of n seconds since
//     1970-01-01T00:00:00Z, so every replica and every restart agrees where a
//     window starts). Spend of a past window is forgotten when the next one
//     begins; providers reset lazily, on the first call that sees the new
//     window. Refusals are RateLimited with RetryAfter set to the time until
//     the current window ends, clamped to [1s, n s] (HTTP 429
//     rate_limit_exceeded with Retry-After).
//
// Reserved amounts belong to the account, not to a window: a reservation that
// is still in flight when a window rolls over keeps counting against the cap
// of the new window until it is settled or released, and its actual spend is
// counted in the window that is current when Settle runs. That rule keeps
// spent + reserved within the cap at every instant, across rollovers.
//
// # Accounts and keys
//
// A budget belongs to an account, not to a key: every key of one account
// shares the account's cap, window and unit (configuration must repeat them
// identically on each key). Limits (max in flight, requests per minute,
// max_tokens clamping) belong to a key; they travel in the Principal so one
// Resolve gives the gateway everything it needs, and are counted by a
// Limiter (see Capabilities).
//
// # The shape of a Provider
//
// Provider holds what every ledger must have and nothing else: Resolve,
// Reserve and Snapshot. Snapshot stays in it because every ledger meters
// spend, even one without caps (its snapshot has no HardCap), and a
// gateway needs it for /v1/me and the rate limit headers. Settle and
// Release are methods of the Reservation that Reserve returned, as a
// Limiter's Slot releases itself: a handle carries what consumes it, so it
// cannot be sent to a provider that did not issue it, and a wrapper (Chain)
// forwards by wrapping the handle.
//
// # Capabilities
//
// What only some ledgers have is an optional interface, declared once in
// this package (capability.go), that a gateway finds by type assertion and
// does without otherwise:
//
//   - Limiter (on the Provider): it counts the per-key limits itself and
//     hands out a Slot per request. KeyLimiter is the in-process one, the
//     only implementation of the limits in this module outside Redis; a
//     gateway uses its own for a Provider that is no Limiter, and a
//     Provider may embed one. A refusal is a *LimitError.
//   - Leaser (on the Provider) and Renewer (on a Reservation or a Slot):
//     reservations are leases that expire after LeaseTTL unless renewed,
//     so what a dead gateway held comes back by itself.
//   - BudgetReporter (on a Reservation): the budget as Reserve left it,
//     sparing a Snapshot call.
//   - Resumer (on the Provider): reservations have a durable token, so
//     that a restarted gateway can settle what an earlier one reserved.
//
// # Providers
//
// Local keeps keys and budgets in memory, for a single gateway or for tests;
// OpenLocal makes it durable, over a ledger file (see OpenLocal for what a
// crash can lose). It has the whole budget model and no other capability.
// Chain asks a primary provider and falls back to a secondary one for keys
// the primary does not know; it forwards every capability of the provider
// that owns a principal or issued a reservation. entitlements/redisledger
// shares budgets, leases and limits between many gateway replicas, and has
// every capability.
//
// Every Provider must pass the core of the conformance suite in
// entitlements/entitlementstest, and the group of each capability it
// claims (balances, rolling windows, uncapped keys, key details, leases,
// limits): a narrow provider passes exactly what it claims. See the
// narrowProvider example for one that only counts requests per minute.
// entitlements/house serves any Provider to many gateways over HTTP (the
// clearing house), and is a Provider itself on the gateway's side.
//
// # Dependencies
//
// The design document has this package import no other package of the
// project. It imports two, both leaves: package clock, the one Clock every
// package that waits takes (WithClock), so that tests move one fake time
// through gateway and ledger alike; and internal/config, the one strict
// TOML decoder with line numbers, so that cortex.toml's [entitlements]
// table errs as the rest of the file does. Neither imports anything of the
// project, so the layering the design wants (entitlements below cortex,
// never the reverse) holds.
package entitlements

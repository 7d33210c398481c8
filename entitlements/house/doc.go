// Package house is the clearing house of entitlements: a small versioned
// HTTP/JSON protocol (PROTOCOL.md) through which gateways spend budgets
// kept in one place, a Handler that serves it over any
// entitlements.Provider, and a Client that is an entitlements.Provider
// speaking it.
//
// # The house
//
// NewHandler serves a Provider that can also look keys up by digest
// (KeyLookup: entitlements.Local in tests, entitlements/redisledger in
// production) to the gateways its options list, each with its own bearer
// token (the house keeps its SHA-256 only) and, optionally, the accounts
// it may spend (403 otherwise). API keys never cross the wire: a gateway
// sends entitlements.KeyDigest of the key. Every call that changes state
// carries an idempotency id chosen by the gateway; a resent call returns
// the first answer and changes nothing a second time (the house keeps
// answers for WithIdempotency's TTL). No credential or digest is logged.
//
// The house adds no store of its own. Over redisledger a reservation id
// carries the ledger's resume token, so a restarted house settles what an
// earlier one reserved. Over a ledger without tokens (Local) the house
// holds the reservations in memory and leases them itself (WithLeaseTTL),
// so that what a dead gateway reserved comes back; a restart of such a
// house loses them with Local's memory anyway.
//
// "cortex house --config house.toml" runs a house (see Config).
//
// # The client
//
// A Client declares what it honestly has: Leaser, Renewer and
// BudgetReporter on its reservations, and Resumer (its tokens are the
// house's reservation ids), so that cortex's settle outbox settles
// after a gateway restart. It is no Limiter: per-key limits are counted
// by each gateway. Reserve fails closed: an unreachable house is an
// *entitlements.UnavailableError, which cortex answers with 503 and
// Retry-After. Each call attempt has a timeout (WithTimeout); a call the
// house could not be reached for is sent again, twice, with the same
// idempotency id. Resolve answers are cached (WithResolveCache): a key
// revoked at the house keeps working on a gateway for up to the resolve
// TTL (30 s by default), and a new key works within the unknown-key TTL
// (5 s).
//
// # Credit grants
//
// With WithGrants, the hot path stays local. For an account busy on this
// gateway (GrantConfig.BusyReserves reserves in a flush interval) the
// client asks the house for a grant: credit the house holds for it as
// one reservation of its provider, so the house counts outstanding grants
// as reserved and spent plus outstanding grants never exceeds the cap,
// across any number of gateways. Reserves and settles the grant covers
// are decided locally, with no round trip (a reserve larger than what the
// grant has left goes to the house). Every FlushInterval the client
// reports the spend inside the grant (one call per account: the settles
// reach the house in batches) and asks for the credit it wants next: its
// requests in flight plus Headroom intervals of its recent demand (the
// amounts reserved per interval, smoothed), so that a grant's size
// follows the account's recent spend on this gateway.
//
// The house settles the reported spend and reserves the new credit under
// a per-account lock that its reserves share, so that no reserve slips
// into the gap. It bounds a grant to WithGrantPolicy's share of what the
// account has left (half by default): an account near its cap gets
// grants too small to matter and its gateways reserve directly, so its
// last units are not stranded on one gateway. An idle account's grant is
// given back at the next report, every grant at Close (clean shutdown),
// and a crashed gateway's grant when its TTL (30 s) passes without a
// report.
//
// Staleness: the house's Spent lags the spend inside grants by up to one
// flush interval (100 ms by default), and its Reserved counts the unused
// credit of grants. A reservation inside a grant is an
// entitlements.BudgetReporter with the budget of the house's last answer
// about the grant (as old as a flush interval), so that a gateway sets
// its rate limit headers without a Snapshot round trip.
//
// Crashes: direct reservations lose nothing (cortex's outbox resumes
// them). Without a journal, a gateway that crashes loses the spend inside
// grants it had not reported: at most one flush interval of it
// (FlushInterval times the rate of spend), which the house never hears
// of. With GrantConfig.Journal, each settle inside a grant is fsynced to
// a file before it is acknowledged (concurrent settles share an fsync),
// each report is on disk before it is sent, and a client started on the
// file after a crash reports what is left (an unanswered report again,
// with its idempotency id): the house hears of every settle a gateway
// acknowledged. The price is an fsync per batch of settles.
//
// What was taken from quota leases for rate limits: from Google's Doorman,
// that capacity is handed out as leases with a length, that clients check
// back at a refresh interval and state what they want, and that the
// server apportions what is left among them (here: a share of the
// remaining budget); from Envoy's rate-limit quota service, that usage is
// reported in batches at a reporting interval and an assignment expires
// when its TTL passes unreported. Applied to money, a lease must not just
// lapse: the spend made under it is settled at each report, and only the
// unused credit returns at expiry. Unlike Doorman, no "safe capacity" is
// assumed while the house is down: a gateway without a grant fails
// closed.
package house

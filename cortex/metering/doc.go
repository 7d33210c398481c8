// Package metering records what every request served by a helexa gateway
// used and cost: one Record per finished request, handed to a Meter.
//
// # Meters
//
// The gateway calls Meter.Record exactly once per finished request, on the
// request path, after it has settled the request's reservation. A Meter must
// therefore never block and must be safe for concurrent use.
//
// A record's SettleState says what the ledger had recorded then. When the
// ledger could not be reached the settle is "pending" (Settled 0), the
// gateway retries it, and one more record follows when it ends: a settle
// record (Kind "settle", the same SettleID, no token counts) with the
// final state and what the ledger recorded. It comes from a goroutine of
// the gateway's settler, or from the next gateway to start over its
// settle outbox, never before the request's own record. So token sums
// over all records count each token once, and Settled sums to what the
// ledger charged. This package
// provides:
//
//   - FileSink, the reference sink: JSON lines appended to a file with
//     size-based rotation, written by one goroutine behind a bounded buffer.
//     When the buffer is full a record is dropped and counted, never waited
//     for; the counts are exported to Prometheus by FileSink.Collector.
//   - AccountSpend: opt-in per-account token and spend counters in
//     Prometheus. Every account is a label value, so its series grow with
//     the number of accounts; enable it only when that number is bounded.
//   - Discard, Multi (fan out to several meters) and Func (a function as a
//     Meter).
//
// # Records and secrets
//
// A Record names the caller by account id and key id only. It has no field
// that holds an API key or a request body, so a meter can never leak a
// secret; the key id is the operator-chosen name of a key, never the key.
//
// # File format
//
// FileSink writes one JSON object per line (see Record for the fields), in
// the order Record was called by any one goroutine. Times are UTC in
// RFC 3339 with nanoseconds, durations are milliseconds with microsecond
// precision, and reserved/settled are integers in the record's unit (tokens,
// or micro-dollars for "usd"). A reader should skip lines it cannot parse:
// after a write error (disk full, say) the sink terminates a partly written
// line before it writes the next record, but the partial line stays.
//
// When writing the next record would take the file past its size bound,
// FileSink renames path to path.1 (shifting path.1 to path.2 and so on, the
// oldest backup deleted) and starts a new file at path. A line longer than
// the bound is written alone into a new file.
package metering

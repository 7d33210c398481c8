package entitlements

// WithCompactBytes sets the least growth of the ledger file before a
// compaction, for the tests of compaction.
var WithCompactBytes = withCompactBytes

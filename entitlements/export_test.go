package entitlements

// WithCompactBytes sets the least growth of the ledger file before a
// compaction, for the tests of compaction.
var WithCompactBytes = withCompactBytes

// LedgerPath returns the path of a durable Local's file ("" without one),
// for the benchmark that watches it grow.
func LedgerPath(l *Local) string {
	if l.j == nil {
		return ""
	}
	return l.j.path
}

package entitlements

// Resumer is an optional Provider capability: its reservations have a
// durable identity, so that a process other than the one that reserved
// (a gateway restarted after a crash or a clean shutdown) can still settle
// or release them. A gateway with a settle outbox writes the token of a
// reservation down before it settles, and after a restart resumes the
// settles that had not landed. entitlements/redisledger's Ledger has it.
//
// A resumed handle is the same reservation as far as the provider is
// concerned: Settle and Release of either handle consume it exactly once,
// and the other then answers ErrReservationSettled. So re-issuing a settle
// that may already have landed is safe.
//
// Concurrency: both methods are safe for concurrent use; they do no I/O
// and do not block.
type Resumer interface {
	// ReservationToken returns the durable identity of r: a short string
	// of printable ASCII without spaces, meaningful only to this provider.
	// ok is false when r cannot be resumed: a handle this provider did
	// not issue, or one it never recorded (such as a reservation granted
	// while failing open).
	ReservationToken(r Reservation) (token string, ok bool)
	// ResumeReservation returns a handle on the reservation that token
	// names, held for p (the principal it was reserved for), that Settle,
	// Release and a lease renewal accept as the handle Reserve returned.
	// It does not check that the reservation is still open: a consumed
	// one is ErrReservationSettled at Settle or Release. It returns
	// ErrUnknownReservation for a token it cannot read.
	ResumeReservation(p Principal, token string) (Reservation, error)
}

package metering

// Meter receives one Record per finished request.
//
// Concurrency: the gateway calls Record exactly once per finished request,
// on the request path, from many goroutines at once (and once more, with a
// KindSettle record, for a request whose settle was pending, from a
// goroutine of its own). An implementation must
// be safe for concurrent use and must not block: no I/O, no waiting on a
// lock held across I/O, no unbounded work. A meter that does I/O hands the
// record to a goroutine of its own (see FileSink) and drops, counting, what
// it cannot take. Record must not panic, and must not modify anything the
// record refers to (it holds only values).
type Meter interface {
	Record(Record)
}

// Discard is a Meter that does nothing. Its zero value is ready to use.
type Discard struct{}

var _ Meter = Discard{}

// Record implements Meter.
func (Discard) Record(Record) {}

// Func adapts a function to a Meter. The function must honour Meter's
// contract: safe for concurrent use and never blocking.
type Func func(Record)

var _ Meter = Func(nil)

// Record calls f(r); a nil f does nothing.
func (f Func) Record(r Record) {
	if f != nil {
		f(r)
	}
}

// multi fans one record out to several meters, in order.
type multi []Meter

// Record implements Meter.
func (m multi) Record(r Record) {
	for _, x := range m {
		x.Record(r)
	}
}

// Multi returns a Meter that passes every record to each of meters in
// order. Nil meters are skipped and nested Multi meters are flattened; with
// no meter left it returns Discard{}, with one it returns that meter.
func Multi(meters ...Meter) Meter {
	var out multi
	for _, m := range meters {
		switch m := m.(type) {
		case nil:
		case multi:
			out = append(out, m...)
		default:
			out = append(out, m)
		}
	}
	switch len(out) {
	case 0:
		return Discard{}
	case 1:
		return out[0]
	}
	return out
}

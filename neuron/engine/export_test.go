package engine

import "io"

// Hooks for the black-box tests in package engine_test.

// Vars are the placeholder values of one engine process.
type Vars = vars

// NewVars builds Vars.
func NewVars(model, id, host, gpus string, port, context int) Vars {
	return vars{model: model, id: id, host: host, gpus: gpus, port: port, context: context}
}

// Expand is expand.
func Expand(s string, v Vars) string { return expand(s, v) }

// Ring is ring, the bounded line buffer.
type Ring = ring

// NewRing is newRing.
func NewRing(n int) *Ring { return newRing(n) }

// Add, Last and ReadFrom expose the ring's methods.
func (r *ring) Add(line string)            { r.add(line) }
func (r *ring) Last(n int) []string        { return r.last(n) }
func (r *ring) Since(mark, n int) []string { return r.since(mark, n) }
func (r *ring) Mark() int                  { return r.mark() }

// Consume is readFrom.
func (r *ring) Consume(rd io.Reader) { r.readFrom(rd) }

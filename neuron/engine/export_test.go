package engine

import (
	"io"

	"github.com/helexa-ai/helexa-go/neuron"
)

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

// CommandOf builds the template of c and returns the argv of one engine
// process with v and args, and what checkArgs says of args.
func CommandOf(c neuron.EngineConfig, v Vars, args neuron.EngineArgs) ([]string, error) {
	t, err := newTemplate(c)
	if err != nil {
		return nil, err
	}
	argv, _ := t.command(v, nil, args)
	return argv, t.checkArgs(args)
}

// RedactArgv and RedactEnv are redactArgv and redactEnv.
func RedactArgv(argv []string) []string { return redactArgv(argv) }
func RedactEnv(env []string) []string   { return redactEnv(env) }

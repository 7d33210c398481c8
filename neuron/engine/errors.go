package engine

import (
	"fmt"
	"strings"

	"github.com/helexa-ai/helexa-go/neuron"
)

// ErrInvalidSpec reports a LoadSpec the harness refuses before starting
// anything: an empty model id, or an id or source that starts with "-" and
// would reach the engine as a flag. It wraps neuron.ErrInvalidRequest, so
// the Agent answers 400.
var ErrInvalidSpec = fmt.Errorf("engine: invalid load spec: %w", neuron.ErrInvalidRequest)

// errorLines is how many output lines a LoadError and ModelInfo.LastError
// carry.
const errorLines = 20

// LoadError reports an engine that did not become ready on its first load.
// errors.Is(err, neuron.ErrLoadFailed) is true.
type LoadError struct {
	// ModelID and Engine name what was loaded.
	ModelID string
	Engine  string
	// Reason says how the load ended: "exit status 3", "not ready after
	// 10m0s", "unloaded while loading", or the error starting the process.
	Reason string
	// ExitCode is the engine's exit code, or -1 when it did not exit by
	// itself (killed by a signal, never started).
	ExitCode int
	// Output holds the last lines the engine printed, oldest first.
	Output []string
	// Err is the underlying error, if any (from os/exec).
	Err error
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("engine: load of %q (engine %s) failed: %s%s", e.ModelID, e.Engine, e.Reason, outputSuffix(e.Output))
}

// Is reports whether target is neuron.ErrLoadFailed.
func (e *LoadError) Is(target error) bool { return target == neuron.ErrLoadFailed }

// Unwrap returns the underlying error.
func (e *LoadError) Unwrap() error { return e.Err }

// outputSuffix formats output lines for an error message.
func outputSuffix(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return "; last output:\n" + strings.Join(lines, "\n")
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/helexa-ai/helexa-go/neuron"
)

var _ neuron.Checker = (*Harness)(nil)

// Check reports whether a Load of spec could start its engine, without
// starting anything or looking at the models the harness runs: the spec is
// valid (ErrInvalidSpec), its engine is a template (neuron.ErrUnknownEngine),
// the template's command resolves to an executable (exec.LookPath of its
// first argument, placeholders expanded), and a model the template passes
// as {model} that names a local path (absolute, or starting with ./ or ../)
// exists. The last two fail with an error wrapping neuron.ErrCannotStart,
// whose message names the command or the path. Load makes the same checks
// before it starts an engine.
func (h *Harness) Check(ctx context.Context, spec neuron.LoadSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkSpec(spec); err != nil {
		return err
	}
	t, err := h.template(spec)
	if err != nil {
		return err
	}
	return h.preflight(spec, t)
}

// template returns the engine template of spec, after checking that
// spec's engine arguments leave the flags the template owns alone.
func (h *Harness) template(spec neuron.LoadSpec) (*template, error) {
	ts := h.tmpls.Load()
	name := spec.Engine
	if name == "" {
		name = ts.defaultEngine
	}
	t, ok := ts.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", neuron.ErrUnknownEngine, name)
	}
	if err := t.checkArgs(spec.EngineArgs); err != nil {
		return nil, err
	}
	return t, nil
}

// preflight checks that t's command resolves and that spec's model, when
// it is a local path the command uses, exists.
func (h *Harness) preflight(spec neuron.LoadSpec, t *template) error {
	model := spec.Source
	if model == "" {
		model = spec.ModelID
	}
	argv, _ := t.command(vars{
		model:   model,
		id:      spec.ModelID,
		host:    h.host,
		gpus:    joinDevices(spec.Devices),
		port:    1,
		context: spec.Context,
	}, spec.Devices, spec.EngineArgs)
	if _, err := exec.LookPath(argv[0]); err != nil {
		reason := "is not an executable file"
		switch {
		case errors.Is(err, exec.ErrNotFound):
			reason = "is not found in PATH"
		case errors.Is(err, exec.ErrDot):
			reason = "resolves to the current directory, which exec refuses"
		case errors.Is(err, os.ErrNotExist):
			reason = "does not exist"
		}
		return fmt.Errorf("%w: engine %s: command %q %s", neuron.ErrCannotStart, t.name, argv[0], reason)
	}
	if t.uses("model") && localPath(model) {
		if _, err := os.Stat(model); err != nil {
			reason := "cannot be read"
			if errors.Is(err, os.ErrNotExist) {
				reason = "does not exist"
			}
			return fmt.Errorf("%w: engine %s: model %q %s", neuron.ErrCannotStart, t.name, model, reason)
		}
	}
	return nil
}

// uses reports whether the template passes the placeholder name to the
// engine, in its command ({name} or {name?}) or its environment.
func (t *template) uses(name string) bool {
	in := func(s string) bool {
		if n, ok := optionalArg(s); ok {
			return n == name
		}
		for i := 0; ; {
			at, n := nextPlaceholder(s, i)
			if at < 0 {
				return false
			}
			if n == name {
				return true
			}
			i = at + len(n) + 2
		}
	}
	return slices.ContainsFunc(t.argv, in) || slices.ContainsFunc(t.env, func(e envVar) bool { return in(e.value) })
}

// localPath reports whether a model source names a file on this host
// rather than something the engine fetches (a Hugging Face repository
// "org/name", a bare model name): an absolute path, or one relative to the
// neuron's working directory written as ./ or ../.
func localPath(s string) bool {
	return filepath.IsAbs(s) || s == "." || s == ".." ||
		strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") ||
		filepath.Separator != '/' && (strings.HasPrefix(s, `.\`) || strings.HasPrefix(s, `..\`))
}

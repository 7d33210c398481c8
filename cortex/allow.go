package cortex

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/helexa-ai/helexa-go/catalogue"
	"github.com/helexa-ai/helexa-go/cortex/route"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// This file holds the two checks of a request's model that come after the
// model is resolved and before anything is reserved: the key's allow-list
// (entitlements.Limits.Models) and the model's capabilities.

var (
	// ErrModelNotAllowed: the key's allow-list does not include the model
	// (403 model_not_allowed); see *ModelNotAllowedError.
	ErrModelNotAllowed = errors.New("cortex: the API key may not use this model")
	// ErrCapabilityUnsupported: the model's capabilities do not include
	// what the route needs, such as chat on an embeddings model (400
	// model_capability_unsupported); see *CapabilityError.
	ErrCapabilityUnsupported = errors.New("cortex: the model does not support this API")
)

// ModelNotAllowedError is a request for a model that the key's allow-list
// does not include. errors.Is(err, ErrModelNotAllowed) holds.
type ModelNotAllowedError struct {
	// Model is the name the client sent.
	Model string
}

// Error implements error.
func (e *ModelNotAllowedError) Error() string {
	return fmt.Sprintf("cortex: the API key may not use model %q", e.Model)
}

// Is reports whether target is ErrModelNotAllowed.
func (e *ModelNotAllowedError) Is(target error) bool { return target == ErrModelNotAllowed }

// CapabilityError is a request on a route whose capability the model does
// not list. errors.Is(err, ErrCapabilityUnsupported) holds.
type CapabilityError struct {
	// Model is the model id.
	Model string
	// Path is the route, such as "/v1/embeddings".
	Path string
	// Needs are the capabilities of which the route needs one.
	Needs []string
	// Has are the model's capabilities.
	Has []string
}

// Error implements error.
func (e *CapabilityError) Error() string {
	return fmt.Sprintf("cortex: model %s does not support %s: it needs capability %s, and the model lists %s",
		e.Model, e.Path, strings.Join(e.Needs, " or "), strings.Join(e.Has, ", "))
}

// Is reports whether target is ErrCapabilityUnsupported.
func (e *CapabilityError) Is(target error) bool { return target == ErrCapabilityUnsupported }

// allowed reports whether a key with allow-list allow may use model m,
// asked for by the name sent. A name resolves exactly (ids and aliases are
// case-sensitive, and the body was read once, escapes undone, by
// reqscan), so sent is either m's id or one of the catalogue's aliases of
// it: a pattern that allows the alias allows the model through that alias,
// and only through it.
func allowed(allow entitlements.ModelAllowList, sent string, m catalogue.Model) bool {
	return allow.Allows(m.ID) || allow.Allows(sent)
}

// modelFor resolves the model a request names and checks that the key may
// use it. A key with an allow-list learns nothing of the models outside
// it: a name its patterns do not match is refused as not allowed whether
// or not the model exists, so that refusals cannot probe the catalogue.
func modelFor(f *route.Fleet, p entitlements.Principal, sent string) (catalogue.Model, error) {
	m, ok := f.Resolve(sent)
	allow := p.Limits.Models
	switch {
	case ok && allowed(allow, sent, m):
		return m, nil
	case !ok && allow.Allows(sent):
		return catalogue.Model{}, fmt.Errorf("%w: %q", route.ErrModelNotFound, sent)
	}
	return catalogue.Model{}, &ModelNotAllowedError{Model: sent}
}

// capabilities returns the capabilities of which a route needs one. Chat
// and Anthropic Messages (which the neuron serves as chat) need "chat";
// the Responses API, a chat API, takes "responses" or "chat".
func (k routeKind) capabilities() []string {
	switch k {
	case routeCompletions:
		return []string{"completions"}
	case routeEmbeddings:
		return []string{"embeddings"}
	case routeResponses:
		return []string{"responses", "chat"}
	}
	return []string{"chat"}
}

// checkCapability returns a *CapabilityError when m lists capabilities and
// none of those the route needs. A model without capabilities is not
// restricted.
func checkCapability(m catalogue.Model, kind routeKind, path string) error {
	needs := kind.capabilities()
	if slices.ContainsFunc(needs, m.Supports) {
		return nil
	}
	return &CapabilityError{Model: m.ID, Path: path, Needs: needs, Has: m.Capabilities}
}

package acceptance_test

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/entitlements"
)

// narrowKey may use the model only through its alias.
func narrowKey() entitlements.KeyConfig {
	k := key("narrow")
	k.Models = &[]string{modelAlias}
	return k
}

func TestOpenAIModels(t *testing.T) {
	t.Parallel()
	s := newStack(t, key("models"), narrowKey())
	client := s.openAI("sk-models")
	m, err := client.Models.Get(t.Context(), modelID)
	if err != nil {
		t.Fatalf("Models.Get(%s): %v", modelID, err)
	}
	if m.ID != modelID || m.Object != "model" || m.OwnedBy == "" || m.Created == 0 {
		t.Errorf("Models.Get(%s) = %+v", modelID, m)
	}
	_, err = client.Models.Get(t.Context(), "nope")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != cortex.CodeModelNotFound {
		t.Errorf("Models.Get(nope) = %v, want 404 model_not_found", err)
	}

	ids := func(client openai.Client) []string {
		var out []string
		iter := client.Models.ListAutoPaging(t.Context())
		for iter.Next() {
			out = append(out, iter.Current().ID)
		}
		if err := iter.Err(); err != nil {
			t.Fatalf("Models.List: %v", err)
		}
		return out
	}
	if got, want := ids(client), []string{modelID, modelAlias}; !slices.Equal(got, want) {
		t.Errorf("Models.List = %q, want %q", got, want)
	}

	// The narrow key sees, and may use, the alias alone.
	narrow := s.openAI("sk-narrow")
	if got, want := ids(narrow), []string{modelAlias}; !slices.Equal(got, want) {
		t.Errorf("Models.List with the narrow key = %q, want %q", got, want)
	}
	if _, err := narrow.Models.Get(t.Context(), modelID); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("Models.Get(%s) with the narrow key = %v, want 404", modelID, err)
	}
	chat := func(model string) error {
		_, err := narrow.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model:     model,
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello there")},
			MaxTokens: openai.Int(4),
		})
		return err
	}
	if err := chat(modelAlias); err != nil {
		t.Errorf("chat through the allowed alias: %v", err)
	}
	err = chat(modelID)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden || apiErr.Code != cortex.CodeModelNotAllowed {
		t.Errorf("chat with %s = %v, want 403 model_not_allowed", modelID, err)
	}
}

func TestAnthropicModels(t *testing.T) {
	t.Parallel()
	s := newStack(t, key("amodels"), narrowKey())
	client := s.anthropicClient("sk-amodels")
	m, err := client.Models.Get(t.Context(), modelID, anthropic.ModelGetParams{})
	if err != nil {
		t.Fatalf("Models.Get(%s): %v", modelID, err)
	}
	if m.ID != modelID || m.Type != "model" || m.DisplayName == "" || m.CreatedAt.IsZero() {
		t.Errorf("Models.Get(%s) = %+v", modelID, m)
	}
	_, err = client.Models.Get(t.Context(), "nope", anthropic.ModelGetParams{})
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Type() != "not_found_error" {
		t.Errorf("Models.Get(nope) = %v, want 404 not_found_error", err)
	}
	ids := func(client anthropic.Client) []string {
		var out []string
		iter := client.Models.ListAutoPaging(t.Context(), anthropic.ModelListParams{})
		for iter.Next() {
			out = append(out, iter.Current().ID)
		}
		if err := iter.Err(); err != nil {
			t.Fatalf("Models.List: %v", err)
		}
		return out
	}
	if got, want := ids(client), []string{modelID, modelAlias}; !slices.Equal(got, want) {
		t.Errorf("Models.List = %q, want %q", got, want)
	}
	narrow := s.anthropicClient("sk-narrow")
	if got, want := ids(narrow), []string{modelAlias}; !slices.Equal(got, want) {
		t.Errorf("Models.List with the narrow key = %q, want %q", got, want)
	}
	_, err = narrow.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model:     modelID,
		MaxTokens: 5,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello there"))},
	})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden || apiErr.Type() != "permission_error" {
		t.Errorf("Messages.New(%s) with the narrow key = %v, want 403 permission_error", modelID, err)
	}
}

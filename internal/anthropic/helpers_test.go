package anthropic_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/internal/anthropic"
)

// decode unmarshals a JSON document for comparison with cmp.Diff.
func decode(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("invalid JSON %q: %v", s, err)
	}
	return v
}

// event is one Anthropic SSE event, its data decoded.
type event struct {
	Name string
	Data any
}

func ev(t testing.TB, name, data string) event {
	t.Helper()
	return event{Name: name, Data: decode(t, data)}
}

// parseEvents splits translator output into events. Every event must be
// exactly "event: <name>\ndata: <one-line JSON>\n\n" with a JSON object
// whose "type" is the event name.
func parseEvents(out string) ([]event, error) {
	var evs []event
	for out != "" {
		raw, rest, ok := strings.Cut(out, "\n\n")
		if !ok {
			return nil, fmt.Errorf("unterminated event %q", out)
		}
		out = rest
		head, data, ok := strings.Cut(raw, "\n")
		name, ok2 := strings.CutPrefix(head, "event: ")
		data, ok3 := strings.CutPrefix(data, "data: ")
		if !ok || !ok2 || !ok3 || strings.Contains(data, "\n") {
			return nil, fmt.Errorf("malformed event %q", raw)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			return nil, fmt.Errorf("event %q: data is not a JSON object: %v", name, err)
		}
		if v["type"] != name {
			return nil, fmt.Errorf("event %q has data type %v", name, v["type"])
		}
		evs = append(evs, event{Name: name, Data: any(v)})
	}
	return evs, nil
}

// checkProtocol verifies Anthropic's event grammar: message_start first
// (unless the stream is a lone error), blocks numbered from 0 that never
// overlap, deltas of the open block's kind, message_delta with no block
// open, and message_stop or error last.
func checkProtocol(evs []event, ended bool) error {
	if len(evs) == 0 {
		return nil
	}
	if evs[0].Name == "error" {
		if len(evs) != 1 {
			return fmt.Errorf("events after a leading error")
		}
		return nil
	}
	if evs[0].Name != "message_start" {
		return fmt.Errorf("first event %q, want message_start", evs[0].Name)
	}
	open, next, openKind, sawDelta := -1, 0, "", false
	for i, e := range evs[1:] {
		last := i == len(evs)-2
		d := e.Data.(map[string]any)
		idx := -1
		if f, ok := d["index"].(float64); ok {
			idx = int(f)
		}
		switch e.Name {
		case "message_start":
			return fmt.Errorf("second message_start")
		case "ping":
		case "content_block_start":
			if open >= 0 || idx != next {
				return fmt.Errorf("content_block_start %d with %d open, want index %d", idx, open, next)
			}
			open, next = idx, next+1
			openKind, _ = d["content_block"].(map[string]any)["type"].(string)
		case "content_block_delta":
			if idx != open || open < 0 {
				return fmt.Errorf("delta for %d with %d open", idx, open)
			}
			dt := d["delta"].(map[string]any)["type"]
			if (openKind == "text" && dt != "text_delta") || (openKind == "tool_use" && dt != "input_json_delta") {
				return fmt.Errorf("%v delta in a %s block", dt, openKind)
			}
		case "content_block_stop":
			if idx != open || open < 0 {
				return fmt.Errorf("stop for %d with %d open", idx, open)
			}
			open = -1
		case "message_delta":
			if open >= 0 || sawDelta {
				return fmt.Errorf("message_delta with block %d open or repeated", open)
			}
			sawDelta = true
		case "message_stop":
			if !sawDelta || !last {
				return fmt.Errorf("message_stop without message_delta or not last")
			}
		case "error":
			if !last {
				return fmt.Errorf("events after an error")
			}
		default:
			return fmt.Errorf("unknown event %q", e.Name)
		}
	}
	if final := evs[len(evs)-1].Name; ended && final != "message_stop" && final != "error" {
		return fmt.Errorf("stream ended with %q", final)
	}
	return nil
}

// mustParse parses an Anthropic request body or fails the test.
func mustParse(t testing.TB, body string) *anthropic.Request {
	t.Helper()
	r, err := anthropic.ParseRequest([]byte(body))
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	return r
}

// jsonString encodes s as a JSON string.
func jsonString(t testing.TB, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package reqscan

import (
	"slices"
	"strconv"
)

// Edit replaces body[Start:End] with Text. Start == End inserts.
type Edit struct {
	Start, End int
	Text       []byte

	// member marks the insertion of an object member at Start; more says
	// the object already has members (a separating comma is needed).
	// Apply joins several member insertions at one offset with commas.
	member, more bool
}

// Apply returns body with the edits applied, in one new buffer. Edits must
// not overlap. With no edits body itself is returned.
func Apply(body []byte, edits ...Edit) []byte {
	if len(edits) == 0 {
		return body
	}
	slices.SortStableFunc(edits, func(a, b Edit) int { return a.Start - b.Start })
	n := len(body)
	for _, e := range edits {
		n += len(e.Text) + 1 - (e.End - e.Start)
	}
	out := make([]byte, 0, n)
	pos := 0
	for i, e := range edits {
		out = append(out, body[pos:e.Start]...)
		out = append(out, e.Text...)
		if e.member {
			next := i+1 < len(edits) && edits[i+1].member && edits[i+1].Start == e.Start
			if next || e.more {
				out = append(out, ',')
			}
		}
		pos = e.End
	}
	return append(out, body[pos:]...)
}

// SetModel returns the edit that sets the "model" field to model.
func (r *Request) SetModel(model string) Edit {
	v := strconv.AppendQuote(nil, model)
	if r.ModelSpan.Present() {
		return Edit{Start: r.ModelSpan.Start, End: r.ModelSpan.End, Text: v}
	}
	return r.insertField("model", v)
}

// RequestUsage returns the edit that makes a streaming request ask for
// usage in a final chunk (stream_options.include_usage = true), and false
// when the request already asks for it.
func (r *Request) RequestUsage() (Edit, bool) {
	switch {
	case r.IncludeUsage:
		return Edit{}, false
	case r.IncludeUsageSpan.Present():
		return Edit{Start: r.IncludeUsageSpan.Start, End: r.IncludeUsageSpan.End, Text: []byte("true")}, true
	case r.streamOptionsNull:
		return Edit{Start: r.StreamOptions.Start, End: r.StreamOptions.End, Text: []byte(`{"include_usage":true}`)}, true
	case r.StreamOptions.Present():
		// Insert right after the '{' of the existing object.
		at := r.StreamOptions.Start + 1
		return Edit{Start: at, End: at, Text: []byte(`"include_usage":true`),
			member: true, more: r.streamOptionFields > 0}, true
	default:
		return r.insertField("stream_options", []byte(`{"include_usage":true}`)), true
	}
}

// SetMaxTokens returns the edits that cap the output at n per sequence:
// every output bound present (max_tokens, max_completion_tokens,
// max_output_tokens, n_predict, max_new_tokens) is set to n, and field is
// added when it is not present, so that an engine that reads only the
// route's own bound obeys it too. field names the route's bound (for
// example "max_tokens" for chat completions or "max_output_tokens" for the
// Responses API).
func (r *Request) SetMaxTokens(n int64, field string) []Edit {
	v := strconv.AppendInt(nil, n, 10)
	var edits []Edit
	has := false
	for i, sp := range r.MaxTokensSpans {
		if sp.Present() {
			edits = append(edits, Edit{Start: sp.Start, End: sp.End, Text: v})
			has = has || maxFieldNames[i] == field
		}
	}
	if !has {
		edits = append(edits, r.insertField(field, v))
	}
	return edits
}

// insertField adds a top-level field right after the opening brace.
func (r *Request) insertField(name string, value []byte) Edit {
	at := r.Object.Start + 1
	text := strconv.AppendQuote(nil, name)
	text = append(text, ':')
	text = append(text, value...)
	return Edit{Start: at, End: at, Text: text, member: true, more: r.Fields > 0}
}

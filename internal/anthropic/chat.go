package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// chatRequest is the chat completions body ToChat writes. Field order is
// the order of the JSON output.
type chatRequest struct {
	Model             string         `json:"model"`
	Messages          []chatMessage  `json:"messages"`
	MaxTokens         int64          `json:"max_tokens,omitempty"`
	Stop              []string       `json:"stop,omitempty"`
	Temperature       *float64       `json:"temperature,omitempty"`
	TopP              *float64       `json:"top_p,omitempty"`
	TopK              *int64         `json:"top_k,omitempty"`
	User              string         `json:"user,omitempty"`
	Tools             []chatTool     `json:"tools,omitempty"`
	ToolChoice        any            `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool          `json:"parallel_tool_calls,omitempty"`
	Stream            bool           `json:"stream,omitempty"`
	StreamOptions     *streamOptions `json:"stream_options,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role string `json:"role"`
	// Content is a string, a []any of parts, or nil (null).
	Content    any            `json:"content"`
	ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type textPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type imagePart struct {
	Type     string   `json:"type"`
	ImageURL imageURL `json:"image_url"`
}

type imageURL struct {
	URL string `json:"url"`
}

type chatToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type chatTool struct {
	Type     string      `json:"type"`
	Function chatToolDef `json:"function"`
}

type chatToolDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

type namedToolChoice struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

// ToChat returns the OpenAI chat completions body (JSON) for r: the
// translation the package documentation describes. The model is r.Model
// unchanged; the gateway resolves aliases on the result as on any chat
// request. A Request that ParseRequest would refuse is refused here too,
// with a *RequestError.
func ToChat(r *Request) ([]byte, error) {
	if r == nil {
		return nil, errors.New("anthropic: ToChat of a nil Request")
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	cr := chatRequest{
		Model:       r.Model,
		Messages:    make([]chatMessage, 0, len(r.Messages)+1),
		MaxTokens:   r.MaxTokens,
		Stop:        r.StopSequences,
		Temperature: r.Temperature,
		TopP:        r.TopP,
		TopK:        r.TopK,
		User:        r.UserID,
	}
	if sys := strings.Join(r.System, "\n\n"); sys != "" {
		cr.Messages = append(cr.Messages, chatMessage{Role: "system", Content: sys})
	}
	for _, m := range r.Messages {
		if m.Role == RoleAssistant {
			cr.Messages = append(cr.Messages, assistantMessage(m.Content))
		} else {
			cr.Messages = appendUserTurn(cr.Messages, m.Content)
		}
	}
	if len(r.Tools) > 0 {
		cr.Tools = make([]chatTool, len(r.Tools))
		for i, t := range r.Tools {
			cr.Tools[i] = chatTool{Type: "function", Function: chatToolDef{
				Name: t.Name, Description: t.Description, Parameters: t.InputSchema,
			}}
		}
		if tc := r.ToolChoice; tc != nil {
			switch tc.Type {
			case ToolChoiceAuto:
				cr.ToolChoice = "auto"
			case ToolChoiceAny:
				cr.ToolChoice = "required"
			case ToolChoiceNone:
				cr.ToolChoice = "none"
			case ToolChoiceTool:
				var n namedToolChoice
				n.Type = "function"
				n.Function.Name = tc.Name
				cr.ToolChoice = n
			}
			if tc.DisableParallelToolUse {
				f := false
				cr.ParallelToolCalls = &f
			}
		}
	}
	if r.Stream {
		cr.Stream = true
		cr.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	return marshal(cr)
}

// appendUserTurn appends the messages of one user turn: its tool results as
// tool messages, then the rest as one user message.
func appendUserTurn(msgs []chatMessage, blocks []Block) []chatMessage {
	var parts []any
	var texts int
	toolResults := 0
	for _, b := range blocks {
		switch b.Type {
		case BlockText:
			parts = append(parts, textPart{Type: "text", Text: b.Text})
			texts++
		case BlockImage:
			parts = append(parts, imagePartOf(b.Image))
		case BlockToolResult:
			toolResults++
			var sb strings.Builder
			if b.IsError {
				sb.WriteString("Error: ")
			}
			first := true
			for _, c := range b.Content {
				switch c.Type {
				case BlockText:
					if !first {
						sb.WriteByte('\n')
					}
					sb.WriteString(c.Text)
					first = false
				case BlockImage:
					parts = append(parts, imagePartOf(c.Image))
				}
			}
			content := sb.String()
			if b.IsError && first {
				content = "Error"
			}
			msgs = append(msgs, chatMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: content})
		}
	}
	switch {
	case len(parts) == 0 && toolResults > 0:
		return msgs
	case len(parts) == 0:
		return append(msgs, chatMessage{Role: "user", Content: ""})
	case len(parts) == 1 && texts == 1:
		return append(msgs, chatMessage{Role: "user", Content: parts[0].(textPart).Text})
	default:
		return append(msgs, chatMessage{Role: "user", Content: parts})
	}
}

func imagePartOf(src *ImageSource) imagePart {
	url := src.URL
	if src.Type == SourceBase64 {
		url = "data:" + src.MediaType + ";base64," + src.Data
	}
	return imagePart{Type: "image_url", ImageURL: imageURL{URL: url}}
}

func assistantMessage(blocks []Block) chatMessage {
	var sb strings.Builder
	m := chatMessage{Role: "assistant"}
	for _, b := range blocks {
		switch b.Type {
		case BlockText:
			sb.WriteString(b.Text)
		case BlockToolUse:
			args := "{}"
			if len(b.Input) > 0 {
				var buf bytes.Buffer
				if json.Compact(&buf, b.Input) == nil {
					args = buf.String()
				}
			}
			m.ToolCalls = append(m.ToolCalls, chatToolCall{
				ID: b.ID, Type: "function", Function: chatFunction{Name: b.Name, Arguments: args},
			})
		}
	}
	switch {
	case sb.Len() > 0:
		m.Content = sb.String()
	case len(m.ToolCalls) > 0:
		m.Content = nil
	default:
		m.Content = ""
	}
	return m
}

// marshal encodes v without HTML escaping and without the trailing newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

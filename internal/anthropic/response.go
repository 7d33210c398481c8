package anthropic

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Anthropic stop reasons.
const (
	StopEndTurn   = "end_turn"
	StopMaxTokens = "max_tokens"
	StopSequence  = "stop_sequence"
	StopToolUse   = "tool_use"
	StopRefusal   = "refusal"
)

const (
	messageIDPrefix  = "msg_"
	toolUseIDPrefix  = "toolu_"
	randomIDHexBytes = 12
)

type chatCompletion struct {
	ID      string `json:"id"`
	Choices []struct {
		Message struct {
			Content   json.RawMessage `json:"content"`
			ToolCalls []struct {
				ID       string `json:"id"`
				Function struct {
					Name      string          `json:"name"`
					Arguments json.RawMessage `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		FinishReason *string         `json:"finish_reason"`
		StopReason   json.RawMessage `json:"stop_reason"`
	} `json:"choices"`
	Usage *chatUsage `json:"usage"`
}

type chatUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// cached returns the cached prompt tokens, at most the prompt tokens and
// never negative (an engine may report nonsense).
func (u *chatUsage) cached() int64 {
	if u.PromptTokensDetails == nil {
		return 0
	}
	return min(max(u.PromptTokensDetails.CachedTokens, 0), max(u.PromptTokens, 0))
}

type message struct {
	ID           string       `json:"id"`
	Type         string       `json:"type"`
	Role         string       `json:"role"`
	Model        string       `json:"model"`
	Content      []any        `json:"content"`
	StopReason   string       `json:"stop_reason"`
	StopSequence *string      `json:"stop_sequence"`
	Usage        messageUsage `json:"usage"`
}

type messageUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
}

type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type toolUseBlock struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// FromChat translates a non-streaming chat completion body into an
// Anthropic Message (JSON) answering req: id "msg_" + the completion's id
// (random when it has none), model req.Model, the text as one text block
// followed by one tool_use block per tool call, stop_reason and
// stop_sequence by the rule in the package documentation (against
// req.StopSequences), and usage. When the completion carries no usage,
// input_tokens is CountTokens(req) and output_tokens is the output's bytes
// / 4 rounded up. Only the first choice is read. A body that is not a chat
// completion with at least one choice is an error wrapping ErrBadChat.
func FromChat(body []byte, req *Request) ([]byte, error) {
	if req == nil {
		return nil, errors.New("anthropic: FromChat with a nil Request")
	}
	var cc chatCompletion
	if err := json.Unmarshal(body, &cc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadChat, err)
	}
	if len(cc.Choices) == 0 {
		return nil, fmt.Errorf("%w: no choices", ErrBadChat)
	}
	ch := &cc.Choices[0]
	text, err := contentText(ch.Message.Content)
	if err != nil {
		return nil, err
	}
	msg := message{
		ID:      messageID(cc.ID),
		Type:    "message",
		Role:    RoleAssistant,
		Model:   req.Model,
		Content: make([]any, 0, 1+len(ch.Message.ToolCalls)),
	}
	outBytes := len(text)
	if text != "" {
		msg.Content = append(msg.Content, textBlock{Type: BlockText, Text: text})
	}
	for _, tc := range ch.Message.ToolCalls {
		input, raw := toolInput(tc.Function.Arguments)
		outBytes += len(raw) + len(tc.Function.Name)
		id := tc.ID
		if id == "" {
			id = randomID(toolUseIDPrefix)
		}
		msg.Content = append(msg.Content, toolUseBlock{Type: BlockToolUse, ID: id, Name: tc.Function.Name, Input: input})
	}
	finish := ""
	if ch.FinishReason != nil {
		finish = *ch.FinishReason
	}
	msg.StopReason, msg.StopSequence = stopReason(finish, ch.StopReason, req.StopSequences, len(ch.Message.ToolCalls) > 0)
	if u := cc.Usage; u != nil {
		cached := u.cached()
		msg.Usage = messageUsage{
			InputTokens:          max(u.PromptTokens-cached, 0),
			CacheReadInputTokens: cached,
			OutputTokens:         max(u.CompletionTokens, 0),
		}
	} else {
		msg.Usage = messageUsage{InputTokens: CountTokens(req), OutputTokens: int64((outBytes + 3) / 4)}
	}
	return marshal(msg)
}

// contentText reads a message content: a string, null, or an array of
// text parts (joined).
func contentText(raw json.RawMessage) (string, error) {
	switch kindOf(raw) {
	case 0, 'n':
		return "", nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%w: content: %v", ErrBadChat, err)
		}
		return s, nil
	case '[':
		var parts []struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", fmt.Errorf("%w: content: %v", ErrBadChat, err)
		}
		var sb strings.Builder
		for _, p := range parts {
			sb.WriteString(p.Text)
		}
		return sb.String(), nil
	default:
		return "", fmt.Errorf("%w: content must be a string or an array", ErrBadChat)
	}
}

// toolInput returns the tool_use input for a tool call's arguments (a JSON
// string holding an object, or an object) and the raw arguments text. Any
// other arguments give {}.
func toolInput(args json.RawMessage) (input, raw json.RawMessage) {
	raw = args
	if kindOf(args) == '"' {
		var s string
		if json.Unmarshal(args, &s) != nil {
			return json.RawMessage(`{}`), nil
		}
		raw = json.RawMessage(s)
	}
	if kindOf(raw) != '{' || !json.Valid(raw) {
		return json.RawMessage(`{}`), raw
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, raw)
	return buf.Bytes(), raw
}

// stopReason maps a finish_reason (and vLLM's stop_reason) to Anthropic's
// stop_reason and stop_sequence.
func stopReason(finish string, engineStop json.RawMessage, stops []string, hasToolCalls bool) (string, *string) {
	switch finish {
	case "length":
		return StopMaxTokens, nil
	case "tool_calls", "function_call":
		return StopToolUse, nil
	case "content_filter":
		return StopRefusal, nil
	case "stop":
		if hasToolCalls {
			return StopToolUse, nil
		}
		if kindOf(engineStop) == '"' && len(stops) > 0 {
			var s string
			if json.Unmarshal(engineStop, &s) == nil {
				for _, seq := range stops {
					if seq == s {
						return StopSequence, &s
					}
				}
			}
		}
	default:
		if hasToolCalls {
			return StopToolUse, nil
		}
	}
	return StopEndTurn, nil
}

func messageID(chatID string) string {
	if chatID == "" {
		return randomID(messageIDPrefix)
	}
	return messageIDPrefix + chatID
}

// randomID returns prefix followed by 24 random hex digits.
func randomID(prefix string) string {
	var b [randomIDHexBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return prefix + hex.EncodeToString(b[:])
}

package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Message roles.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Content block types this package accepts.
const (
	BlockText       = "text"
	BlockImage      = "image"
	BlockToolUse    = "tool_use"
	BlockToolResult = "tool_result"
)

// Image source types.
const (
	SourceBase64 = "base64"
	SourceURL    = "url"
)

// tool_choice types.
const (
	ToolChoiceAuto = "auto"
	ToolChoiceAny  = "any"
	ToolChoiceTool = "tool"
	ToolChoiceNone = "none"
)

// Request is an Anthropic Messages API request, as far as this package
// understands it. ParseRequest fills it from a body; ToChat and CountTokens
// read it. A Request is not modified by this package.
type Request struct {
	// Model is the requested model name. Required.
	Model string
	// MaxTokens is the maximum output. Required (at least 1) on
	// /v1/messages; zero means absent, as on count_tokens.
	MaxTokens int64
	// System holds the system prompt: one entry for a string, one per text
	// block for an array. Nil when absent.
	System []string
	// Messages is the conversation. At least one message.
	Messages []Message
	// StopSequences are custom stop strings.
	StopSequences []string
	// Temperature, TopP and TopK are the sampling parameters; nil when absent.
	Temperature *float64
	TopP        *float64
	TopK        *int64
	// Stream asks for a server-sent events answer.
	Stream bool
	// Tools are the client tools the model may call.
	Tools []Tool
	// ToolChoice says how the model may use the tools; nil when absent.
	ToolChoice *ToolChoice
	// UserID is metadata.user_id; empty when absent.
	UserID string
}

// Message is one turn of the conversation.
type Message struct {
	// Role is RoleUser or RoleAssistant.
	Role string
	// Content holds the blocks. A string content is one text block.
	Content []Block
}

// Block is one content block. Type says which fields are set.
type Block struct {
	// Type is BlockText, BlockImage, BlockToolUse or BlockToolResult.
	Type string
	// Text is the text of a text block.
	Text string
	// Image is the source of an image block.
	Image *ImageSource
	// ID, Name and Input describe a tool_use block. Input is a JSON object.
	ID    string
	Name  string
	Input json.RawMessage
	// ToolUseID, Content and IsError describe a tool_result block. Content
	// holds text and image blocks (a string content is one text block).
	ToolUseID string
	Content   []Block
	IsError   bool
}

// ImageSource is where an image block's image comes from.
type ImageSource struct {
	// Type is SourceBase64 or SourceURL.
	Type string
	// MediaType and Data are set for SourceBase64.
	MediaType string
	Data      string
	// URL is set for SourceURL.
	URL string
}

// Tool is a client tool definition.
type Tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// ToolChoice is the tool_choice parameter.
type ToolChoice struct {
	// Type is ToolChoiceAuto, ToolChoiceAny, ToolChoiceTool or ToolChoiceNone.
	Type string
	// Name is the tool to call, for ToolChoiceTool.
	Name string
	// DisableParallelToolUse limits the model to one tool call.
	DisableParallelToolUse bool
}

// RequestError is a request body this package refuses. Param is the dotted
// path of the offending field ("messages.2.content.0.source"), empty for
// the body as a whole. The gateway answers it with 400
// invalid_request_error.
type RequestError struct {
	Param string
	Msg   string
}

func (e *RequestError) Error() string {
	if e.Param == "" {
		return e.Msg
	}
	return e.Param + ": " + e.Msg
}

func reqErr(param, format string, a ...any) *RequestError {
	return &RequestError{Param: param, Msg: fmt.Sprintf(format, a...)}
}

// ParseRequest decodes and checks a /v1/messages request body. Every
// refusal is a *RequestError. See the package documentation for what is
// accepted.
func ParseRequest(body []byte) (*Request, error) {
	return parse(body, true)
}

// ParseCountTokensRequest decodes and checks a /v1/messages/count_tokens
// body: the same as ParseRequest except that max_tokens is optional.
func ParseCountTokensRequest(body []byte) (*Request, error) {
	return parse(body, false)
}

type wireRequest struct {
	Model         json.RawMessage `json:"model"`
	MaxTokens     json.RawMessage `json:"max_tokens"`
	System        json.RawMessage `json:"system"`
	Messages      json.RawMessage `json:"messages"`
	StopSequences json.RawMessage `json:"stop_sequences"`
	Temperature   json.RawMessage `json:"temperature"`
	TopP          json.RawMessage `json:"top_p"`
	TopK          json.RawMessage `json:"top_k"`
	Stream        json.RawMessage `json:"stream"`
	Tools         json.RawMessage `json:"tools"`
	ToolChoice    json.RawMessage `json:"tool_choice"`
	Metadata      json.RawMessage `json:"metadata"`
}

func parse(body []byte, needMaxTokens bool) (*Request, error) {
	if !utf8.Valid(body) {
		return nil, reqErr("", "body is not valid UTF-8")
	}
	if kindOf(body) != '{' || !json.Valid(body) {
		return nil, reqErr("", "body must be one JSON object")
	}
	var w wireRequest
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, reqErr("", "body must be one JSON object")
	}
	r := &Request{}
	var err error
	if r.Model, err = str("model", w.Model, true); err != nil {
		return nil, err
	}
	if r.Model == "" {
		return nil, reqErr("model", "must not be empty")
	}
	if present(w.MaxTokens) {
		if r.MaxTokens, err = integer("max_tokens", w.MaxTokens); err != nil {
			return nil, err
		}
		if r.MaxTokens < 1 {
			return nil, reqErr("max_tokens", "must be at least 1")
		}
	} else if needMaxTokens {
		return nil, reqErr("max_tokens", "field required")
	}
	if r.System, err = parseSystem(w.System); err != nil {
		return nil, err
	}
	if r.Messages, err = parseMessages(w.Messages); err != nil {
		return nil, err
	}
	if present(w.StopSequences) {
		items, err := array("stop_sequences", w.StopSequences)
		if err != nil {
			return nil, err
		}
		for i, it := range items {
			p := "stop_sequences." + strconv.Itoa(i)
			s, err := str(p, it, true)
			if err != nil {
				return nil, err
			}
			if s == "" {
				return nil, reqErr(p, "must not be empty")
			}
			r.StopSequences = append(r.StopSequences, s)
		}
	}
	if r.Temperature, err = unitFloat("temperature", w.Temperature); err != nil {
		return nil, err
	}
	if r.TopP, err = unitFloat("top_p", w.TopP); err != nil {
		return nil, err
	}
	if present(w.TopK) {
		k, err := integer("top_k", w.TopK)
		if err != nil {
			return nil, err
		}
		if k < 0 {
			return nil, reqErr("top_k", "must not be negative")
		}
		r.TopK = &k
	}
	if present(w.Stream) {
		if kindOf(w.Stream) != 't' && kindOf(w.Stream) != 'f' {
			return nil, reqErr("stream", "must be a boolean")
		}
		r.Stream = kindOf(w.Stream) == 't'
	}
	if r.Tools, err = parseTools(w.Tools); err != nil {
		return nil, err
	}
	if r.ToolChoice, err = parseToolChoice(w.ToolChoice); err != nil {
		return nil, err
	}
	if present(w.Metadata) {
		if kindOf(w.Metadata) != '{' {
			return nil, reqErr("metadata", "must be an object")
		}
		var md struct {
			UserID json.RawMessage `json:"user_id"`
		}
		_ = json.Unmarshal(w.Metadata, &md) // valid JSON object: cannot fail
		if r.UserID, err = str("metadata.user_id", md.UserID, false); err != nil {
			return nil, err
		}
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return r, nil
}

func parseSystem(raw json.RawMessage) ([]string, error) {
	switch kindOf(raw) {
	case 0, 'n':
		return nil, nil
	case '"':
		s, err := str("system", raw, true)
		return []string{s}, err
	case '[':
		items, _ := array("system", raw)
		out := make([]string, 0, len(items))
		for i, it := range items {
			p := "system." + strconv.Itoa(i)
			b, err := parseBlock(p, it)
			if err != nil {
				return nil, err
			}
			if b.Type != BlockText {
				return nil, reqErr(p+".type", "system blocks must be text blocks, not %q", b.Type)
			}
			out = append(out, b.Text)
		}
		return out, nil
	default:
		return nil, reqErr("system", "must be a string or an array of text blocks")
	}
}

func parseMessages(raw json.RawMessage) ([]Message, error) {
	if !present(raw) {
		return nil, reqErr("messages", "field required")
	}
	items, err := array("messages", raw)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, reqErr("messages", "at least one message is required")
	}
	out := make([]Message, 0, len(items))
	for i, it := range items {
		p := "messages." + strconv.Itoa(i)
		if kindOf(it) != '{' {
			return nil, reqErr(p, "must be an object")
		}
		var wm struct {
			Role    json.RawMessage `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal(it, &wm)
		var m Message
		if m.Role, err = str(p+".role", wm.Role, true); err != nil {
			return nil, err
		}
		if m.Content, err = parseContent(p+".content", wm.Content, true); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// parseContent reads a string or an array of blocks.
func parseContent(p string, raw json.RawMessage, required bool) ([]Block, error) {
	switch kindOf(raw) {
	case 0, 'n':
		if required {
			return nil, reqErr(p, "field required")
		}
		return nil, nil
	case '"':
		s, err := str(p, raw, true)
		return []Block{{Type: BlockText, Text: s}}, err
	case '[':
		items, _ := array(p, raw)
		out := make([]Block, 0, len(items))
		for i, it := range items {
			b, err := parseBlock(p+"."+strconv.Itoa(i), it)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		return out, nil
	default:
		return nil, reqErr(p, "must be a string or an array of content blocks")
	}
}

type wireBlock struct {
	Type      json.RawMessage `json:"type"`
	Text      json.RawMessage `json:"text"`
	Source    json.RawMessage `json:"source"`
	ID        json.RawMessage `json:"id"`
	Name      json.RawMessage `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID json.RawMessage `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   json.RawMessage `json:"is_error"`
}

func parseBlock(p string, raw json.RawMessage) (Block, error) {
	if kindOf(raw) != '{' {
		return Block{}, reqErr(p, "content block must be an object")
	}
	var wb wireBlock
	_ = json.Unmarshal(raw, &wb)
	typ, err := str(p+".type", wb.Type, true)
	if err != nil {
		return Block{}, err
	}
	b := Block{Type: typ}
	switch typ {
	case BlockText:
		b.Text, err = str(p+".text", wb.Text, true)
		return b, err
	case BlockImage:
		b.Image, err = parseImageSource(p+".source", wb.Source)
		return b, err
	case BlockToolUse:
		if b.ID, err = str(p+".id", wb.ID, true); err != nil {
			return b, err
		}
		if b.Name, err = str(p+".name", wb.Name, true); err != nil {
			return b, err
		}
		switch kindOf(wb.Input) {
		case 0, 'n':
			b.Input = json.RawMessage(`{}`)
		case '{':
			var buf bytes.Buffer
			_ = json.Compact(&buf, wb.Input)
			b.Input = buf.Bytes()
		default:
			return b, reqErr(p+".input", "must be an object")
		}
		return b, nil
	case BlockToolResult:
		if b.ToolUseID, err = str(p+".tool_use_id", wb.ToolUseID, true); err != nil {
			return b, err
		}
		if b.Content, err = parseContent(p+".content", wb.Content, false); err != nil {
			return b, err
		}
		switch kindOf(wb.IsError) {
		case 0, 'n', 'f':
		case 't':
			b.IsError = true
		default:
			return b, reqErr(p+".is_error", "must be a boolean")
		}
		return b, nil
	default:
		return b, reqErr(p+".type", "unsupported content block type %q (supported: text, image, tool_use, tool_result)", typ)
	}
}

func parseImageSource(p string, raw json.RawMessage) (*ImageSource, error) {
	if kindOf(raw) != '{' {
		return nil, reqErr(p, "must be an object")
	}
	var ws struct {
		Type      json.RawMessage `json:"type"`
		MediaType json.RawMessage `json:"media_type"`
		Data      json.RawMessage `json:"data"`
		URL       json.RawMessage `json:"url"`
	}
	_ = json.Unmarshal(raw, &ws)
	typ, err := str(p+".type", ws.Type, true)
	if err != nil {
		return nil, err
	}
	src := &ImageSource{Type: typ}
	switch typ {
	case SourceBase64:
		if src.MediaType, err = str(p+".media_type", ws.MediaType, true); err != nil {
			return nil, err
		}
		if src.Data, err = str(p+".data", ws.Data, true); err != nil {
			return nil, err
		}
		if src.MediaType == "" || src.Data == "" {
			return nil, reqErr(p, "media_type and data must not be empty")
		}
	case SourceURL:
		if src.URL, err = str(p+".url", ws.URL, true); err != nil {
			return nil, err
		}
		if src.URL == "" {
			return nil, reqErr(p+".url", "must not be empty")
		}
	default:
		return nil, reqErr(p+".type", "unsupported image source type %q (supported: base64, url)", typ)
	}
	return src, nil
}

func parseTools(raw json.RawMessage) ([]Tool, error) {
	if !present(raw) {
		return nil, nil
	}
	items, err := array("tools", raw)
	if err != nil {
		return nil, err
	}
	out := make([]Tool, 0, len(items))
	for i, it := range items {
		p := "tools." + strconv.Itoa(i)
		if kindOf(it) != '{' {
			return nil, reqErr(p, "must be an object")
		}
		var wt struct {
			Type        json.RawMessage `json:"type"`
			Name        json.RawMessage `json:"name"`
			Description json.RawMessage `json:"description"`
			InputSchema json.RawMessage `json:"input_schema"`
		}
		_ = json.Unmarshal(it, &wt)
		typ, err := str(p+".type", wt.Type, false)
		if err != nil {
			return nil, err
		}
		if typ != "" && typ != "custom" {
			return nil, reqErr(p+".type", "server tool %q is not supported; define a client tool with input_schema", typ)
		}
		var t Tool
		if t.Name, err = str(p+".name", wt.Name, true); err != nil {
			return nil, err
		}
		if t.Description, err = str(p+".description", wt.Description, false); err != nil {
			return nil, err
		}
		if kindOf(wt.InputSchema) != '{' {
			return nil, reqErr(p+".input_schema", "must be a JSON schema object")
		}
		var buf bytes.Buffer
		_ = json.Compact(&buf, wt.InputSchema)
		t.InputSchema = buf.Bytes()
		out = append(out, t)
	}
	return out, nil
}

func parseToolChoice(raw json.RawMessage) (*ToolChoice, error) {
	if !present(raw) {
		return nil, nil
	}
	if kindOf(raw) != '{' {
		return nil, reqErr("tool_choice", "must be an object")
	}
	var wc struct {
		Type    json.RawMessage `json:"type"`
		Name    json.RawMessage `json:"name"`
		Disable json.RawMessage `json:"disable_parallel_tool_use"`
	}
	_ = json.Unmarshal(raw, &wc)
	var tc ToolChoice
	var err error
	if tc.Type, err = str("tool_choice.type", wc.Type, true); err != nil {
		return nil, err
	}
	if tc.Name, err = str("tool_choice.name", wc.Name, false); err != nil {
		return nil, err
	}
	switch kindOf(wc.Disable) {
	case 0, 'n', 'f':
	case 't':
		tc.DisableParallelToolUse = true
	default:
		return nil, reqErr("tool_choice.disable_parallel_tool_use", "must be a boolean")
	}
	return &tc, nil
}

// validate checks what the types alone do not: roles, which blocks each
// role may hold, tool names and tool_choice. ToChat runs it too, for
// Requests built by hand.
func (r *Request) validate() error {
	if r.Model == "" {
		return reqErr("model", "must not be empty")
	}
	if len(r.Messages) == 0 {
		return reqErr("messages", "at least one message is required")
	}
	for i, m := range r.Messages {
		p := "messages." + strconv.Itoa(i)
		switch m.Role {
		case RoleUser, RoleAssistant:
		case "system":
			return reqErr(p+".role", `unknown role "system": use the top-level system parameter`)
		default:
			return reqErr(p+".role", "unknown role %q (want user or assistant)", m.Role)
		}
		for j, b := range m.Content {
			bp := p + ".content." + strconv.Itoa(j)
			if !allowedIn(m.Role, b.Type) {
				return reqErr(bp+".type", "%s messages may not hold %q blocks", m.Role, b.Type)
			}
			if err := b.check(bp); err != nil {
				return err
			}
		}
	}
	names := make(map[string]bool, len(r.Tools))
	for i, t := range r.Tools {
		p := "tools." + strconv.Itoa(i)
		if t.Name == "" {
			return reqErr(p+".name", "must not be empty")
		}
		if names[t.Name] {
			return reqErr(p+".name", "duplicate tool name %q", t.Name)
		}
		names[t.Name] = true
		if kindOf(t.InputSchema) != '{' || !json.Valid(t.InputSchema) {
			return reqErr(p+".input_schema", "must be a JSON schema object")
		}
	}
	if tc := r.ToolChoice; tc != nil {
		switch tc.Type {
		case ToolChoiceAuto, ToolChoiceAny, ToolChoiceNone:
		case ToolChoiceTool:
			if tc.Name == "" {
				return reqErr("tool_choice.name", "field required for tool_choice type \"tool\"")
			}
			if !names[tc.Name] {
				return reqErr("tool_choice.name", "no tool named %q in tools", tc.Name)
			}
		default:
			return reqErr("tool_choice.type", "unknown tool_choice type %q (want auto, any, tool or none)", tc.Type)
		}
	}
	return nil
}

// allowedIn reports whether a message of role may hold a block of type
// typ. Unknown types are allowed here and refused by check.
func allowedIn(role, typ string) bool {
	switch typ {
	case BlockImage, BlockToolResult:
		return role == RoleUser
	case BlockToolUse:
		return role == RoleAssistant
	}
	return true
}

// check verifies one block's own fields.
func (b *Block) check(p string) error {
	switch b.Type {
	case BlockText:
	case BlockImage:
		if b.Image == nil {
			return reqErr(p+".source", "field required")
		}
		switch b.Image.Type {
		case SourceBase64:
			if b.Image.MediaType == "" || b.Image.Data == "" {
				return reqErr(p+".source", "media_type and data must not be empty")
			}
		case SourceURL:
			if b.Image.URL == "" {
				return reqErr(p+".source.url", "must not be empty")
			}
		default:
			return reqErr(p+".source.type", "unsupported image source type %q (supported: base64, url)", b.Image.Type)
		}
	case BlockToolUse:
		if b.ID == "" {
			return reqErr(p+".id", "must not be empty")
		}
		if b.Name == "" {
			return reqErr(p+".name", "must not be empty")
		}
		if len(b.Input) > 0 && (kindOf(b.Input) != '{' || !json.Valid(b.Input)) {
			return reqErr(p+".input", "must be an object")
		}
	case BlockToolResult:
		if b.ToolUseID == "" {
			return reqErr(p+".tool_use_id", "must not be empty")
		}
		for i := range b.Content {
			c := &b.Content[i]
			cp := p + ".content." + strconv.Itoa(i)
			if c.Type != BlockText && c.Type != BlockImage {
				return reqErr(cp+".type", "tool results may hold text and image blocks, not %q", c.Type)
			}
			if err := c.check(cp); err != nil {
				return err
			}
		}
	default:
		return reqErr(p+".type", "unsupported content block type %q (supported: text, image, tool_use, tool_result)", b.Type)
	}
	return nil
}

// kindOf returns the first byte of a JSON value ('{', '[', '"', 't', 'f',
// 'n', or a digit or '-' for a number), or 0 when raw is empty.
func kindOf(raw []byte) byte {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}

// present reports whether a field was given with a non-null value.
func present(raw json.RawMessage) bool {
	k := kindOf(raw)
	return k != 0 && k != 'n'
}

// str reads a string field. Absent or null is "" unless required.
func str(p string, raw json.RawMessage, required bool) (string, error) {
	if !present(raw) {
		if required {
			return "", reqErr(p, "field required")
		}
		return "", nil
	}
	if kindOf(raw) != '"' {
		return "", reqErr(p, "must be a string")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", reqErr(p, "must be a string")
	}
	return s, nil
}

func array(p string, raw json.RawMessage) ([]json.RawMessage, error) {
	if kindOf(raw) != '[' {
		return nil, reqErr(p, "must be an array")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, reqErr(p, "must be an array")
	}
	return items, nil
}

func number(p string, raw json.RawMessage) (float64, error) {
	k := kindOf(raw)
	if k != '-' && (k < '0' || k > '9') {
		return 0, reqErr(p, "must be a number")
	}
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
	if err != nil {
		return 0, reqErr(p, "must be a finite number")
	}
	return f, nil
}

// integer reads an integral number (1024 or 1024.0; not 1024.5).
func integer(p string, raw json.RawMessage) (int64, error) {
	f, err := number(p, raw)
	if err != nil {
		return 0, reqErr(p, "must be an integer")
	}
	if n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64); err == nil {
		return n, nil
	}
	if f != math.Trunc(f) || f > math.MaxInt64/2 || f < math.MinInt64/2 {
		return 0, reqErr(p, "must be an integer")
	}
	return int64(f), nil
}

func unitFloat(p string, raw json.RawMessage) (*float64, error) {
	if !present(raw) {
		return nil, nil
	}
	f, err := number(p, raw)
	if err != nil {
		return nil, err
	}
	if f < 0 || f > 1 {
		return nil, reqErr(p, "must be between 0 and 1")
	}
	return &f, nil
}

package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/helexa-ai/helexa-go/internal/jsonw"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
	"github.com/helexa-ai/helexa-go/neuron"
)

// maxBodyBytes bounds a request body; a larger one is refused with 413.
const maxBodyBytes = 16 << 20

// Engine is a simulated inference engine: an http.Handler speaking the
// OpenAI API (see the package documentation) for any model id. It answers
// every model id with the one Config it was built with; the model field of
// a request is echoed back, or the engine's model id when empty.
//
// Concurrency: ServeHTTP may be called from many goroutines at once.
type Engine struct {
	cfg     Config
	modelID string
	clock   Clock
	crash   func()
	gpu     *replica // the GPU model of cfg; nil without one
	backend backend  // where models are looked up; nil: every id uses cfg
	created int64    // reported as the models' creation time
	salt    uint64
	seq     atomic.Uint64
	pool    sync.Pool // *reqState

	// The counters of Stats.
	generated atomic.Uint64
	prompted  atomic.Uint64
	cached    atomic.Uint64
	requests  atomic.Uint64
	inFlight  atomic.Int64
	lastURI   atomic.Pointer[string]
}

// Stats is what an engine has done since it was built, counted by the
// engine itself rather than taken from the answers it wrote: a test reads
// it to learn what a request through a gateway really cost.
type Stats struct {
	// GeneratedTokens counts the completion tokens generated for every
	// request and choice, best_of candidates that were not returned
	// included, as they are generated: the tokens of an answer whose
	// client went away count up to the step it went away at.
	GeneratedTokens uint64 `json:"generated_tokens"`
	// PromptTokens counts the prompt tokens of the generation requests
	// served, as their usage reports them.
	PromptTokens uint64 `json:"prompt_tokens"`
	// CachedTokens counts the prompt tokens that a GPU model found in its
	// prefix cache (0 without one), counted when their prefill ends:
	// CachedTokens / PromptTokens is the cache's hit ratio.
	CachedTokens uint64 `json:"cached_tokens"`
	// Requests counts the POST requests to the OpenAI routes.
	Requests uint64 `json:"requests"`
	// InFlight is the number of those requests being served now.
	InFlight int64 `json:"in_flight"`
	// LastRequestURI is the request URI (path and query, as received) of
	// the last POST request to an OpenAI route; "" before the first.
	LastRequestURI string `json:"last_request_uri"`
}

// Stats returns the engine's counters. It is safe to call at any time,
// from any goroutine.
func (e *Engine) Stats() Stats {
	s := Stats{
		GeneratedTokens: e.generated.Load(),
		PromptTokens:    e.prompted.Load(),
		CachedTokens:    e.cached.Load(),
		Requests:        e.requests.Load(),
		InFlight:        e.inFlight.Load(),
	}
	if p := e.lastURI.Load(); p != nil {
		s.LastRequestURI = *p
	}
	return s
}

var _ http.Handler = (*Engine)(nil)

// EngineOption configures an Engine.
type EngineOption interface {
	applyEngine(*Engine)
}

type engineOption func(*Engine)

func (f engineOption) applyEngine(e *Engine) { f(e) }

// WithModelID sets the model id GET /v1/models reports and a request without
// a model field is answered as. Default "sim".
func WithModelID(id string) EngineOption {
	return engineOption(func(e *Engine) {
		if id != "" {
			e.modelID = id
		}
	})
}

// WithClock sets the clock the engine paces tokens by and stamps answers
// with. Default: real time.
func WithClock(c Clock) EngineOption {
	return engineOption(func(e *Engine) { e.clock = c })
}

// WithCrashFunc sets what happens when a request reaches
// Config.CrashAfterTokens: f is called after the tokens were flushed (the
// helexa-sim command passes a function that exits the process). If f
// returns, or when no f is set (the default), the connection is aborted with
// panic(http.ErrAbortHandler).
func WithCrashFunc(f func()) EngineOption {
	return engineOption(func(e *Engine) { e.crash = f })
}

// NewEngine returns an engine that behaves as cfg says. It panics if
// cfg.Validate reports an error: check a Config built from user input first.
func NewEngine(cfg Config, opts ...EngineOption) *Engine {
	if err := cfg.Validate(); err != nil {
		panic(err.Error())
	}
	now := time.Now()
	e := &Engine{
		cfg:     cfg.withDefaults(),
		modelID: "sim",
		created: now.Unix(),
		salt:    mix(uint64(now.UnixNano())),
	}
	for _, o := range opts {
		o.applyEngine(e)
	}
	if cfg.GPU != nil {
		e.gpu = newReplica(*cfg.GPU, e.clock)
	}
	return e
}

// target is what a request runs against.
type target struct {
	cfg *Config
	// life ends when the model stops serving (unloaded or crashed); nil
	// means never. Requests in flight are then aborted.
	life context.Context
	// crash is called at Config.CrashAfterTokens before the abort; may be nil.
	crash func()
	// gpu is the replica of cfg.GPU; nil without one.
	gpu *replica
}

// backend resolves model ids for an Engine shared by several models (the
// Harness).
//
// Concurrency: both methods are called from many goroutines at once and
// must not block.
type backend interface {
	// lookup returns the target serving id, neuron.ErrModelNotFound or
	// neuron.ErrNotReady.
	lookup(id string) (target, error)
	// loaded returns the ids of the loaded models, sorted.
	loaded() []string
}

// lookup resolves a request's model id.
func (e *Engine) lookup(id string) (target, error) {
	if e.backend != nil {
		if id == "" {
			return target{}, &requestError{status: http.StatusBadRequest, code: neuron.CodeMissingModel, param: "model", msg: "you must provide a model parameter"}
		}
		return e.backend.lookup(id)
	}
	return target{cfg: &e.cfg, crash: e.crash, gpu: e.gpu}, nil
}

func (e *Engine) now() time.Time {
	if e.clock != nil {
		return e.clock.Now()
	}
	return time.Now()
}

// nextID returns a fresh identifier for an answer.
func (e *Engine) nextID() uint64 { return mix(e.salt + e.seq.Add(1)) }

// ServeHTTP answers the OpenAI API routes listed in the package
// documentation.
func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var post bool
	var serve func(http.ResponseWriter, *http.Request, *reqState)
	switch r.URL.Path {
	case "/health":
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "{\"status\":\"ok\"}\n")
			return
		}
	case "/v1/models":
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			e.serveModels(w)
			return
		}
	case "/v1/chat/completions":
		post, serve = true, e.serveChat
	case "/v1/completions":
		post, serve = true, e.serveCompletions
	case "/v1/embeddings":
		post, serve = true, e.serveEmbeddings
	case "/v1/responses":
		post, serve = true, e.serveResponses
	default:
		writeError(w, &requestError{status: http.StatusNotFound, code: "not_found", msg: "no route for " + r.URL.Path})
		return
	}
	if !post || r.Method != http.MethodPost {
		allow := "GET"
		if post {
			allow = "POST"
		}
		w.Header().Set("Allow", allow)
		writeError(w, &requestError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", msg: r.Method + " is not allowed on " + r.URL.Path})
		return
	}
	uri := r.RequestURI
	if uri == "" { // a request built in process, not read from a connection
		uri = r.URL.RequestURI()
	}
	e.lastURI.Store(&uri)
	e.requests.Add(1)
	e.inFlight.Add(1)
	defer e.inFlight.Add(-1)
	st := e.getState()
	defer e.putState(st)
	if err := readBody(w, r, st); err != nil {
		writeError(w, err)
		return
	}
	serve(w, r, st)
}

func (e *Engine) serveModels(w http.ResponseWriter) {
	ids := []string{e.modelID}
	if e.backend != nil {
		ids = e.backend.loaded()
	}
	b := make([]byte, 0, 64+96*len(ids))
	b = append(b, `{"object":"list","data":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = jsonw.AppendString(b, id)
		b = append(b, `,"object":"model","created":`...)
		b = appendInt(b, int(e.created))
		b = append(b, `,"owned_by":"helexa-sim"}`...)
	}
	b = append(b, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// reqState holds the reusable buffers of one request.
type reqState struct {
	body    bytes.Buffer
	out     []byte
	prefix  []byte
	choices []choice
	prompts []prompt
	text    []byte // the prompts' text, for the prefix cache
	chains  [][]uint64
	blocks  []uint64 // the chains' keys
	stops   [][]byte
	req     request
	chat    chatFormat
	resp    responsesFormat
	vec     []float64
}

func (e *Engine) getState() *reqState {
	if st, ok := e.pool.Get().(*reqState); ok {
		return st
	}
	return &reqState{out: make([]byte, 0, 1024)}
}

// putState returns st to the pool unless a large request grew it.
func (e *Engine) putState(st *reqState) {
	if st.body.Cap() > 1<<20 || cap(st.out) > 1<<20 || len(st.choices) > 16 || cap(st.text) > 1<<20 {
		return
	}
	for i := range st.choices {
		if cap(st.choices[i].text) > 64<<10 {
			return
		}
	}
	st.body.Reset()
	st.out = st.out[:0]
	st.prefix = st.prefix[:0]
	st.prompts = st.prompts[:0]
	st.text = st.text[:0]
	clear(st.chains)
	st.chains = st.chains[:0]
	st.blocks = st.blocks[:0]
	st.stops = st.stops[:0]
	st.req = request{}
	st.chat = chatFormat{}
	st.resp = responsesFormat{}
	e.pool.Put(st)
}

// readBody reads the whole request body into st.body. Reading to the end
// leaves no unread bytes behind, so an abort never resets the connection
// before the client has read what was sent.
func readBody(w http.ResponseWriter, r *http.Request, st *reqState) error {
	_, err := st.body.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &requestError{status: http.StatusRequestEntityTooLarge, code: "request_too_large", msg: fmt.Sprintf("request body over %d bytes", maxBodyBytes)}
		}
		return &requestError{status: http.StatusBadRequest, code: neuron.CodeInvalidBody, msg: "reading request body: " + err.Error()}
	}
	return nil
}

// requestError is a refusal of a request: a status and the envelope fields.
type requestError struct {
	status int
	code   string
	param  string
	msg    string
}

func (e *requestError) Error() string { return "sim: " + e.msg }

// badParam returns a 400 invalid_request_body error about param.
func badParam(param, format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, code: neuron.CodeInvalidBody, param: param, msg: fmt.Sprintf(format, args...)}
}

// writeError writes err as an OpenAI envelope. It is the one place where
// the engine maps errors to HTTP: a *requestError carries its own status
// and code, neuron.ErrModelNotFound is 404 model_not_found,
// neuron.ErrNotReady is 503 model_not_ready with Retry-After, anything else
// is 500.
func writeError(w http.ResponseWriter, err error) {
	var b oaierr.Body
	var status int
	var retry time.Duration
	if re, ok := errors.AsType[*requestError](err); ok {
		status, b.Code, b.Message = re.status, re.code, re.msg
		if re.param != "" {
			b.Param = &re.param
		}
	} else if errors.Is(err, neuron.ErrModelNotFound) {
		status, b.Code, b.Message = http.StatusNotFound, neuron.CodeModelNotFound, err.Error()
	} else if errors.Is(err, neuron.ErrNotReady) {
		status, b.Code, b.Message, retry = http.StatusServiceUnavailable, neuron.CodeModelNotReady, err.Error(), time.Second
	} else {
		status, b.Code, b.Message = http.StatusInternalServerError, "internal_error", err.Error()
	}
	b.Type = oaierr.TypeForStatus(status)
	oaierr.WriteBody(w, status, b, retry)
}

// request is the union of the request bodies the engine reads; each route
// uses its own fields.
type request struct {
	Model               string        `json:"model"`
	Messages            []message     `json:"messages"`
	Prompt              rawJSON       `json:"prompt"`
	Input               rawJSON       `json:"input"`
	Instructions        string        `json:"instructions"`
	Stream              bool          `json:"stream"`
	StreamOptions       streamOptions `json:"stream_options"`
	MaxTokens           optInt        `json:"max_tokens"`
	MaxCompletionTokens optInt        `json:"max_completion_tokens"`
	MaxOutputTokens     optInt        `json:"max_output_tokens"`
	NPredict            optInt        `json:"n_predict"`      // llama-server
	MaxNewTokens        optInt        `json:"max_new_tokens"` // SGLang's and TGI's native name
	Stop                rawJSON       `json:"stop"`
	N                   optInt        `json:"n"`
	NCmpl               optInt        `json:"n_cmpl"` // llama-server's n, which it takes precedence over
	BestOf              optInt        `json:"best_of"`
	Dimensions          optInt        `json:"dimensions"`
	EncodingFormat      string        `json:"encoding_format"`
	Tools               []toolDef     `json:"tools"`
	ToolChoice          rawJSON       `json:"tool_choice"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// message is a chat message or a Responses input item.
type message struct {
	Role    string  `json:"role"`
	Content content `json:"content"`
}

// content is message content: a string, or an array of parts whose "text"
// fields are joined.
type content string

func (c *content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*c = ""
		return nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = content(s)
		return nil
	case b[0] == '[':
		var parts []struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(b, &parts); err != nil {
			return err
		}
		var sb bytes.Buffer
		for _, p := range parts {
			sb.WriteString(p.Text)
		}
		*c = content(sb.String())
		return nil
	}
	return errors.New("content must be a string or an array of parts")
}

// optInt is an integer that records whether it was set (null is unset).
type optInt struct {
	v   int
	set bool
}

func (o *optInt) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*o = optInt{}
		return nil
	}
	if err := json.Unmarshal(b, &o.v); err != nil {
		return err
	}
	o.set = true
	return nil
}

// rawJSON is json.RawMessage that leaves null as nil.
type rawJSON []byte

func (r *rawJSON) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*r = nil
		return nil
	}
	*r = append((*r)[:0], b...)
	return nil
}

// decode parses st.body into st.req.
func (st *reqState) decode() error {
	if err := json.Unmarshal(st.body.Bytes(), &st.req); err != nil {
		return &requestError{status: http.StatusBadRequest, code: neuron.CodeInvalidBody, msg: "invalid JSON body: " + err.Error()}
	}
	return nil
}

// parseStops reads "stop" (a string or an array of strings) into st.stops
// and returns the longest stop's length.
func (st *reqState) parseStops() (int, error) {
	raw := st.req.Stop
	if len(raw) == 0 {
		return 0, nil
	}
	var list []string
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, badParam("stop", "stop must be a string or an array of strings")
		}
		list = []string{s}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return 0, badParam("stop", "stop must be a string or an array of strings")
	}
	if len(list) > 4 {
		return 0, badParam("stop", "at most 4 stop sequences are allowed, got %d", len(list))
	}
	longest := 0
	for _, s := range list {
		if s == "" {
			continue
		}
		st.stops = append(st.stops, []byte(s))
		longest = max(longest, len(s))
	}
	return longest, nil
}

// limitArg is one token-limit parameter of a request.
type limitArg struct {
	name string
	v    optInt
}

// unbounded is the budget of a request that asks for no limit (n_predict
// -1); prepareGeneration caps it at what the context leaves.
const unbounded = math.MaxInt32

// tokenLimit returns the answer length per choice: llama-server's
// n_predict when set (it takes precedence over every other limit, as in
// llama-server; a negative value is unbounded, 0 generates nothing), else
// the first set limit of limits, else max_new_tokens, else
// DefaultMaxTokens. A limit below 1 other than n_predict is an error.
func (st *reqState) tokenLimit(limits ...limitArg) (int, error) {
	if np := st.req.NPredict; np.set {
		if np.v < 0 {
			return unbounded, nil
		}
		return np.v, nil
	}
	for _, l := range append(limits, limitArg{"max_new_tokens", st.req.MaxNewTokens}) {
		if !l.v.set {
			continue
		}
		if l.v.v < 1 {
			return 0, badParam(l.name, "%s must be at least 1, got %d", l.name, l.v.v)
		}
		return l.v.v, nil
	}
	return DefaultMaxTokens, nil
}

// choiceCount returns the answers per prompt: llama-server's n_cmpl when
// set, else "n", default 1, within [1, 128].
func (st *reqState) choiceCount() (int, error) {
	name, n := "n", st.req.N
	if st.req.NCmpl.set {
		name, n = "n_cmpl", st.req.NCmpl
	}
	if !n.set {
		return 1, nil
	}
	if n.v < 1 || n.v > maxChoices {
		return 0, badParam(name, "%s must be between 1 and %d, got %d", name, maxChoices, n.v)
	}
	return n.v, nil
}

// contextError refuses a prompt over the context length.
func contextError(param string, promptTokens, contextLength int) error {
	return &requestError{
		status: http.StatusBadRequest,
		code:   "context_length_exceeded",
		param:  param,
		msg: fmt.Sprintf("This model's maximum context length is %d tokens. However, your %s resulted in %d tokens.",
			contextLength, param, promptTokens),
	}
}

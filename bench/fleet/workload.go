package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// message is one chat message of a request.
type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Workload sizes, in tokens of the sim's estimate (4 bytes of text a
// token, plus 4 per message).
const (
	tenants         = 16
	systemTokens    = 2000
	userMinTokens   = 30
	userMaxTokens   = 50
	answerTokens    = 128
	sessions        = 64
	openingTokens   = 1000
	turnTokens      = 30
	sessionAnswer   = 16
	thinkTime       = 300 * time.Millisecond // mean, exponential
	uniqueTokens    = 520                    // 2,080 bytes: just over the affinity's 2 KiB key
	messageOverhead = 4                      // sim.MessageOverhead
)

// workload is one of the benchmark's traffic shapes.
type workload struct {
	name, label string
	// maxTokens is the answer's length (max_tokens; with ignore_eos the
	// sim generates all of it).
	maxTokens int
	// meanPrompt is the mean prompt of a request in tokens, for the
	// capacity estimate of least-loaded (see capacity).
	meanPrompt int
	// loads are the default offered loads, as multiples of the estimated
	// capacity.
	loads []float64
	// newSource returns the requests of one cell.
	newSource func(seed uint64) source
}

// source hands out the requests of one cell.
type source interface {
	// acquire returns the next request's messages, blocking while none
	// can be sent (a conversation whose every session waits for an
	// answer), until ctx ends. release must be called with the answer
	// when the request ends; ok is false when it failed or was cut.
	acquire(ctx context.Context) (msgs []message, release func(answer string, ok bool), err error)
}

// workloads returns the workloads in run order.
func workloads() []*workload {
	return []*workload{
		{name: "tenants", label: "(a) multi-tenant", maxTokens: answerTokens,
			meanPrompt: systemTokens + (userMinTokens+userMaxTokens)/2 + 2*messageOverhead,
			loads:      []float64{0.5, 2.25},
			newSource:  func(seed uint64) source { return newTenants(seed, tenants) }},
		{name: "sessions", label: "(b) conversations", maxTokens: sessionAnswer,
			meanPrompt: openingTokens + messageOverhead + 2*(sessionAnswer+turnTokens+2*messageOverhead),
			loads:      []float64{0.5, 2.5},
			newSource:  func(seed uint64) source { return newSessions(seed, sessions) }},
		{name: "unique", label: "(c) unique prompts", maxTokens: answerTokens,
			meanPrompt: uniqueTokens + messageOverhead,
			loads:      []float64{0.5, 1.25},
			newSource:  func(seed uint64) source { return &uniques{rng: rand.New(rand.NewPCG(seed, 3))} }},
	}
}

// hotWorkload is workload (a) with a single tenant: every request shares
// one system prompt.
func hotWorkload() *workload {
	w := *workloads()[0]
	w.name, w.label = "hot", "hot prefix"
	w.newSource = func(seed uint64) source { return newTenants(seed, 1) }
	return &w
}

// words are the vocabulary of the generated text.
var words = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
	"india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
	"sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"}

// text returns head followed by random words, exactly 4×tokens bytes: the
// sim counts it as tokens tokens.
func text(rng *rand.Rand, head string, tokens int) string {
	n := 4 * tokens
	b := make([]byte, 0, n+16)
	b = append(b, head...)
	for len(b) < n {
		b = append(b, ' ')
		b = append(b, words[rng.IntN(len(words))]...)
	}
	return string(b[:n])
}

// tenantSource is workload (a): each request is one tenant's system
// prompt, the same every time, and a short user turn of its own.
type tenantSource struct {
	mu      sync.Mutex
	rng     *rand.Rand
	systems []string
}

func newTenants(seed uint64, n int) *tenantSource {
	t := &tenantSource{rng: rand.New(rand.NewPCG(seed, 1))}
	for i := range n {
		r := rand.New(rand.NewPCG(uint64(i), 11))
		t.systems = append(t.systems, text(r, fmt.Sprintf("You are the assistant of tenant %d.", i), systemTokens))
	}
	return t
}

func (t *tenantSource) acquire(context.Context) ([]message, func(string, bool), error) {
	t.mu.Lock()
	sys := t.systems[t.rng.IntN(len(t.systems))]
	user := text(t.rng, "Question:", userMinTokens+t.rng.IntN(userMaxTokens-userMinTokens+1))
	t.mu.Unlock()
	return []message{{"system", sys}, {"user", user}}, func(string, bool) {}, nil
}

// uniques is workload (c): every prompt is new from its first byte.
type uniques struct {
	mu  sync.Mutex
	rng *rand.Rand
	n   int
}

func (u *uniques) acquire(context.Context) ([]message, func(string, bool), error) {
	u.mu.Lock()
	u.n++
	p := text(u.rng, fmt.Sprintf("Request %d %d:", u.n, u.rng.Uint64()), uniqueTokens)
	u.mu.Unlock()
	return []message{{"user", p}}, func(string, bool) {}, nil
}

// sessionSource is workload (b): a fixed population of conversations. An
// arrival is the next turn of the session idle the longest; while no
// session is idle, arrivals wait for one. A turn that ends appends the
// answer and a new user message to its session's history, so the prompt
// grows by both each turn, and the session is idle again after a think
// time (exponential, mean thinkTime): without it, a saturated fleet would
// send a session's next turn the instant its answer ends, to the replica
// that just freed a slot, which least-loaded routing then picks, an
// affinity by accident that real users, who read before they answer, do
// not give.
type sessionSource struct {
	idle chan *session
}

// session is one conversation. Only the goroutine that took it from idle
// touches it.
type session struct {
	rng     *rand.Rand
	history []message
}

func newSessions(seed uint64, n int) *sessionSource {
	s := &sessionSource{idle: make(chan *session, n)}
	for i := range n {
		r := rand.New(rand.NewPCG(seed, uint64(100+i)))
		opening := text(r, fmt.Sprintf("Conversation %d opens:", i), openingTokens)
		s.idle <- &session{rng: r, history: []message{{"user", opening}}}
	}
	return s
}

func (s *sessionSource) acquire(ctx context.Context) ([]message, func(string, bool), error) {
	var ss *session
	select {
	case ss = <-s.idle:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	msgs := ss.history
	return msgs, func(answer string, ok bool) {
		if !ok {
			s.idle <- ss
			return
		}
		ss.history = append(ss.history, message{"assistant", answer},
			message{"user", text(ss.rng, "And then?", turnTokens)})
		think := time.Duration(ss.rng.ExpFloat64() * float64(thinkTime))
		time.AfterFunc(think, func() { s.idle <- ss })
	}, nil
}

// prewarm sends every session's first turn at once and waits for them
// all, so that the cell's arrivals find conversations under way, their
// openings cached wherever the policy sent them.
func (s *sessionSource) prewarm(ctx context.Context, do func([]message) (string, bool)) {
	var wg sync.WaitGroup
	for range cap(s.idle) {
		msgs, release, err := s.acquire(ctx)
		if err != nil {
			return
		}
		wg.Go(func() { release(do(msgs)) })
	}
	wg.Wait()
}

// promptTokens is the sim's estimate of msgs' prompt tokens.
func promptTokens(msgs []message) int {
	n := 0
	for _, m := range msgs {
		n += (len(m.Content)+3)/4 + messageOverhead
	}
	return n
}

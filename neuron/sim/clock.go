package sim

import (
	"context"
	"sync/atomic"
	"time"
)

// Clock is the time source an Engine paces its answers by. Tests inject a
// fake one to observe the pacing without waiting; the default is real time.
//
// Concurrency: both methods are called from many request goroutines at once.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done, in which case it returns
	// ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// pacer schedules the tokens of one request. Under a GPU model, they come
// when the replica's scheduler grants them to the request's seq; otherwise
// the first at start+TTFT, each following one interval later, measured
// from start so that delays do not add up. It keeps one timer for the
// whole request.
type pacer struct {
	clock    Clock // nil: real time
	timer    *time.Timer
	start    time.Time
	ttft     time.Duration
	interval time.Duration

	s       *seq           // the request on a GPU model; nil without one
	cached  *atomic.Uint64 // Engine.cached, counted at the first token of s
	counted bool
}

// initSeq makes p wait for the tokens of s, adding its cached tokens to
// cached once its prefill is done.
func (p *pacer) initSeq(s *seq, cached *atomic.Uint64) {
	p.s, p.cached = s, cached
}

func (p *pacer) init(clock Clock, cfg *Config) {
	p.clock = clock
	p.ttft = cfg.TTFT
	p.interval = cfg.interval()
	if p.ttft > 0 || p.interval > 0 {
		p.start = p.now()
	}
}

func (p *pacer) now() time.Time {
	if p.clock != nil {
		return p.clock.Now()
	}
	return time.Now()
}

// wait blocks until token number step is due. It returns ctx.Err() when ctx
// ends first (or has already ended).
func (p *pacer) wait(ctx context.Context, step int) error {
	if p.s != nil {
		if err := p.s.wait(ctx, step); err != nil {
			return err
		}
		if !p.counted {
			p.counted = true
			p.cached.Add(uint64(p.s.cached))
		}
		return nil
	}
	if p.ttft <= 0 && p.interval <= 0 {
		return ctx.Err()
	}
	due := p.ttft + time.Duration(step)*p.interval
	d := due - p.now().Sub(p.start)
	if d <= 0 {
		return ctx.Err()
	}
	if p.clock != nil {
		return p.clock.Sleep(ctx, d)
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		p.timer.Stop()
		return ctx.Err()
	case <-p.timer.C:
		return nil
	}
}

// stop releases the timer.
func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}

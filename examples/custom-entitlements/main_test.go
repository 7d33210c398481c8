package main

import (
	"bytes"
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
)

// The store-backed Provider keeps the whole contract of a Provider.
func TestProviderConformance(t *testing.T) {
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		store := NewStore(clock.Now)
		for _, k := range keys {
			store.AddKey(k.Secret, k.Principal, k.Budget)
		}
		return &Provider{store: store}
	})
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", &out) }()
	re := regexp.MustCompile(`status 200, acme spent (\d+) tokens, (\d+) left`)
	deadline := time.Now().Add(20 * time.Second)
	for !re.MatchString(out.String()) {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v; output %q", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result in %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := re.FindStringSubmatch(out.String()); m[1] == "0" {
		t.Errorf("nothing was spent: %s", m[0])
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

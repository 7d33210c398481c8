package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/entitlementstest"
	"github.com/helexa-ai/helexa-go/internal/testout"
)

// The store-backed Provider keeps the whole contract of a Provider.
func TestProviderConformance(t *testing.T) {
	entitlementstest.Run(t, func(t *testing.T, clock *entitlementstest.Clock, keys []entitlementstest.KeySpec) entitlements.Provider {
		store := NewStore(clock.Now)
		for _, k := range keys {
			store.AddKey(k.Secret, k.Principal, k.Budget)
		}
		return &Provider{store: store}
	}, entitlementstest.Budgets)
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out testout.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", &out) }()
	re := regexp.MustCompile(`status 200, acme spent (\d+) tokens, (\d+) left`)
	if m := out.Wait(t, re, done, 20*time.Second); m[1] == "0" {
		t.Errorf("nothing was spent: %s", m[0])
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

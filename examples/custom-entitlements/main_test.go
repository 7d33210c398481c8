package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
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

// --listen sets the gateway's address; without it the gateway listens on
// cortex.DefaultListen.
func TestListenFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr bool
	}{
		{"default", nil, cortex.DefaultListen, false},
		{"set", []string{"--listen", "0.0.0.0:8080"}, "0.0.0.0:8080", false},
		{"set with =", []string{"-listen=127.0.0.1:0"}, "127.0.0.1:0", false},
		{"unknown flag", []string{"--port", "1"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error %v, want error %v", tt.args, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseFlags(%q) = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}

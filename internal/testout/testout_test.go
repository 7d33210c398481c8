package testout_test

import (
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/internal/testout"
)

func TestWaitWokenByWrite(t *testing.T) {
	t.Parallel()
	var b testout.Buffer
	go func() {
		for i := range 5 {
			fmt.Fprintf(&b, "line %d\n", i)
		}
	}()
	m := b.Wait(t, regexp.MustCompile(`line (4)`), nil, 10*time.Second)
	if m[1] != "4" {
		t.Errorf("Wait = %q", m)
	}
}

// fakeTB records a Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	failed chan string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed <- fmt.Sprintf(format, args...)
	runtime.Goexit() // as testing.T.Fatalf does
}

func TestWaitFailsWhenTheProgramEnds(t *testing.T) {
	t.Parallel()
	var b testout.Buffer
	done := make(chan error, 1)
	done <- errors.New("exit 1")
	tb := &fakeTB{TB: t, failed: make(chan string, 1)}
	go b.Wait(tb, regexp.MustCompile(`never`), done, time.Hour)
	if msg := <-tb.failed; !regexp.MustCompile(`ended \(exit 1\)`).MatchString(msg) {
		t.Errorf("failure %q", msg)
	}
}

package clocktest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/helexa-ai/helexa-go/clock/clocktest"
)

// A test waits until the code under test has armed its timer, then moves
// the time past it: the timeout happens at once, with no real sleep.
func ExampleFake() {
	clk := clocktest.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	done := make(chan string)
	go func() { // the code under test: wait up to a minute
		t := clk.NewTimer(time.Minute)
		defer t.Stop()
		at := <-t.C()
		done <- "timed out at " + at.Format(time.TimeOnly)
	}()
	if err := clk.WaitArmed(context.Background(), 1); err != nil {
		panic(err)
	}
	clk.Advance(time.Minute)
	fmt.Println(<-done)
	// Output: timed out at 00:01:00
}

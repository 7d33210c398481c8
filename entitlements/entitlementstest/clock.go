package entitlementstest

import (
	"time"

	"github.com/helexa-ai/helexa-go/clock/clocktest"
)

// Clock is the manual clock the suite gives each provider factory: the
// one fake clock of the module, which stands still until Advance or Set
// moves it and is safe for concurrent use. The factory must make the
// provider read time from Clock.Now only (and arm any timers on it).
type Clock = clocktest.Fake

// NewClock returns a Clock that reads start.
func NewClock(start time.Time) *Clock { return clocktest.New(start) }

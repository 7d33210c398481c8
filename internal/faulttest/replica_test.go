package faulttest_test

import (
	"github.com/helexa-ai/helexa-go/internal/proctest"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/helexa-go/cortex"
	"github.com/helexa-ai/helexa-go/internal/redact"
	"github.com/helexa-ai/helexa-go/neuron"
)

// TestFailingReplicaIsRoutedAround: after its engine is killed, a replica
// answers model_not_ready while the neuron restarts it. Its snapshot still
// says loaded, and with no request in flight it wins every tie: each
// request it refuses goes to the healthy replica, before anything reached
// the client, until the failures eject it from the rotation. No client sees
// the failure, and none of the answers tells anything about the inside of
// the fleet.
func TestFailingReplicaIsRoutedAround(t *testing.T) {
	suite(t)
	a := startNeuron(t, "gpu-a", modelCrashy)
	b := startNeuron(t, "gpu-b", modelCrashy)
	// Polled only when the test says: the snapshot stays stale.
	clock := manualClock{tick: make(chan time.Time)}
	s := newStack(t, []*neuronProc{a, b}, cortex.WithClock(clock))
	engines := a.engines()
	if len(engines) != 1 {
		t.Fatalf("engines of gpu-a: %v, want one", engines)
	}
	if err := syscall.Kill(engines[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, engines)
	proctest.Eventually(t, 10*time.Second, "gpu-a's model recovering", func() bool {
		return a.status(t, modelCrashy) != neuron.StatusLoaded
	})

	const requests = 20
	statuses := map[int]int{}
	for range requests {
		status, _, body := s.chatOnce(modelCrashy, 3)
		statuses[status]++
		if status != http.StatusOK {
			t.Errorf("status %d: %s", status, body)
		}
		if !redact.Clean(body) {
			t.Errorf("the answer tells about the inside: %v", redact.Find(body))
		}
	}
	retries := strings.Count(s.logs.String(), "retrying on another replica")
	t.Logf("statuses %v over %d requests; %d retried on gpu-b", statuses, requests, retries)
	if retries == 0 {
		t.Error("no request was refused by gpu-a: the test proves nothing")
	}
	// Outlier ejection: gpu-a leaves the rotation after the failures in a
	// row that eject it; the requests after that go straight to gpu-b.
	if retries > cortex.DefaultConsecutiveFailures {
		t.Errorf("%d requests tried gpu-a first; want at most %d before it is ejected", retries, cortex.DefaultConsecutiveFailures)
	}
	s.settled(time.Second)
}

// TestRestartingModelIsWaitedFor: with no other replica, a request that
// meets a model whose engine the neuron is restarting (model_not_ready)
// waits for the restart, as a request for a cold model waits for its
// load, and is served.
func TestRestartingModelIsWaitedFor(t *testing.T) {
	suite(t)
	n := startNeuron(t, "gpu-r", modelCrashy)
	clock := manualClock{tick: make(chan time.Time)}
	s := newStack(t, []*neuronProc{n}, cortex.WithClock(clock))
	engines := n.engines()
	if len(engines) != 1 {
		t.Fatalf("engines: %v, want one", engines)
	}
	if err := syscall.Kill(engines[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, engines)
	proctest.Eventually(t, 10*time.Second, "the model restarting", func() bool {
		return n.status(t, modelCrashy) != neuron.StatusLoaded
	})
	start := time.Now()
	status, _, body := s.chatOnce(modelCrashy, 3)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	t.Logf("served %v after the kill's restart began", time.Since(start).Round(time.Millisecond))
	s.settled(time.Second)
}

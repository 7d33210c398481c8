package cortextest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/helexa-ai/helexa-go/cortex/cortextest"
	"github.com/helexa-ai/helexa-go/neuron"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestFleet(t *testing.T) {
	t.Parallel()
	engine := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"engine":"test"}`)
	})
	f := cortextest.NewFleet(t,
		cortextest.Spec{Name: "a", GPUs: []uint64{8000}, Token: "tok", Models: []neuron.LoadSpec{{ModelID: "m1", VRAMMB: 1000}}},
		cortextest.Spec{Name: "b", Engine: engine},
	)
	if diff := cmp.Diff([]string{f.Configs()[0].Name, f.Configs()[1].Name}, []string{"a", "b"}); diff != "" {
		t.Errorf("configs (-got +want):\n%s", diff)
	}
	a, b := f.Neuron("a"), f.Neuron("b")
	if got := a.Config().Token; got != "tok" {
		t.Errorf("token %q", got)
	}
	ctx := t.Context()
	// The Spec's models are loaded and not counted.
	models, err := a.Client().Models(ctx)
	if err != nil || len(models) != 1 || models[0].Status != neuron.StatusLoaded || a.Loads() != 0 {
		t.Fatalf("a: models %+v (%v), %d loads", models, err, a.Loads())
	}
	d, err := a.Client().Discovery(ctx)
	if err != nil || len(d.Devices) != 1 || d.Devices[0].TotalMB != 8000 {
		t.Errorf("a: discovery %+v, %v", d, err)
	}

	// Loads are held until released; calls are counted.
	release := b.HoldLoads()
	done := make(chan error, 1)
	go func() {
		_, err := b.Client().Load(context.WithoutCancel(ctx), neuron.LoadSpec{ModelID: "m2"})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for b.Loads() == 0 {
		select {
		case err := <-done:
			t.Fatalf("a held load returned: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the load never reached the neuron")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("a held load returned before the release: %v", err)
	default:
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Client().Unload(ctx, "m2", false); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{b.LoadCalls(), b.Unloads()}, []any{[]string{"m2"}, []string{"m2"}}); diff != "" {
		t.Errorf("calls (-got +want):\n%s", diff)
	}

	// Inference goes to the test's engine and is recorded.
	if _, err := b.Client().Load(ctx, neuron.LoadSpec{ModelID: "m3"}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.URL()+"/v1/chat/completions", strings.NewReader(`{"model":"m3"}`))
	req.Header.Set("X-Test", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `{"engine":"test"}` || b.Requests() != 1 {
		t.Errorf("answer %s, %d requests", body, b.Requests())
	}
	if h, sent := b.LastRequest(); h.Get("X-Test") != "1" || string(sent) != `{"model":"m3"}` {
		t.Errorf("last request %v %s", h, sent)
	}

	// A stopped neuron cannot be reached.
	b.Stop()
	b.Stop()
	if _, err := b.Client().Health(ctx); err == nil {
		t.Error("a stopped neuron answered")
	} else if errors.Is(err, context.Canceled) {
		t.Errorf("unexpected error %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

package cortex

import (
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkOutboxSettle is what the outbox adds to a settle that lands at
// once: its settle line before the attempt and its done line after (no
// fsync; a rewrite every 4 MiB).
func BenchmarkOutboxSettle(b *testing.B) {
	o, _, _, err := openOutbox(filepath.Join(b.TempDir(), "settles.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer o.close()
	l := outboxLine{Op: opSettle, Time: time.Now(), Token: "AAAAAAAAAAAAAAAAAAAAAAAAAA:1036", Amount: 42,
		Account: "acme", KeyID: "ci", Unit: "tokens", Reserved: 1036, Model: "llama-3-8b", Neuron: "gpu-01",
		Route: "chat.completions", Status: 200, Outcome: "ok"}
	b.ReportAllocs()
	for b.Loop() {
		l.ID = rand.Text()
		if err := o.add(l); err != nil {
			b.Fatal(err)
		}
		if err := o.done(l.ID, "settled"); err != nil {
			b.Fatal(err)
		}
	}
}

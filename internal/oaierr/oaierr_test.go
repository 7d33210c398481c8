package oaierr_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/helexa-ai/helexa-go/internal/oaierr"
)

func TestWriteAndRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		retryAfter time.Duration
		wantType   string
		wantRetry  string
	}{
		{name: "unauthorized", status: 401, wantType: oaierr.TypeAuthentication},
		{name: "not found", status: 404, wantType: oaierr.TypeNotFound},
		{name: "conflict", status: 409, wantType: oaierr.TypeConflict},
		{name: "rate limited rounds up", status: 429, retryAfter: 1500 * time.Millisecond, wantType: oaierr.TypeRateLimit, wantRetry: "2"},
		{name: "unavailable at least one second", status: 503, retryAfter: time.Millisecond, wantType: oaierr.TypeServer, wantRetry: "1"},
		{name: "bad request", status: 400, wantType: oaierr.TypeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			oaierr.Write(rec, tt.status, "some_code", "some message", tt.retryAfter)
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			if !strings.Contains(rec.Body.String(), `"param":null`) {
				t.Errorf("body %s lacks \"param\":null", rec.Body)
			}
			got, ok := oaierr.Read(rec.Body)
			if !ok {
				t.Fatalf("Read did not recognise the envelope")
			}
			want := oaierr.Body{Message: "some message", Type: tt.wantType, Code: "some_code"}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("Read (-got +want):\n%s", diff)
			}
		})
	}
}

func TestReadNumericCode(t *testing.T) {
	t.Parallel()
	got, ok := oaierr.Read(strings.NewReader(`{"error":{"message":"bad","type":"BadRequestError","code":400,"param":null}}`))
	if !ok || got.Code != "400" || got.Message != "bad" {
		t.Errorf("Read = %+v, %v; want code \"400\"", got, ok)
	}
}

func TestReadRejectsOtherBodies(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `not json`, `{"error":{}}`, `{"choices":[]}`} {
		if _, ok := oaierr.Read(strings.NewReader(in)); ok {
			t.Errorf("Read(%q) accepted a non-envelope", in)
		}
	}
	if got := oaierr.TypeForStatus(http.StatusTeapot); got != oaierr.TypeInvalidRequest {
		t.Errorf("TypeForStatus(418) = %q", got)
	}
}

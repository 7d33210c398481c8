package config_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/internal/config"
)

type doc struct {
	Top     config.Duration `toml:"top"`
	Gateway struct {
		PollInterval config.Duration  `toml:"poll_interval"`
		Limit        *config.Duration `toml:"limit"`
		Count        int              `toml:"count"`
	} `toml:"gateway"`
	Engines []struct {
		Name    string          `toml:"name"`
		Timeout config.Duration `toml:"timeout"`
		Window  struct {
			Seconds int64 `toml:"seconds"`
		} `toml:"window"`
	} `toml:"engines"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
		kind error
	}{
		{name: "strings", in: "top = \"1m\"\n[gateway]\npoll_interval = '2s'\nlimit = \"\"\"3s\"\"\"\n[[engines]]\ntimeout = \"4s\"\n"},
		{
			name: "bare integer",
			in:   "[gateway]\n\npoll_interval = 2\n",
			want: []string{`line 3: gateway.poll_interval: 2 has no unit: write a string such as "2s"`},
			kind: config.ErrDuration,
		},
		{
			name: "bare numbers everywhere, all reported",
			in:   "top = 1_000\n[gateway]\nlimit = 1.5\n[[engines]]\nname = \"a\"\n[[engines]]\ntimeout = 30\n",
			want: []string{
				`line 1: top: 1_000 has no unit: write a string such as "1000s"`,
				`line 3: gateway.limit: 1.5 has no unit: write a string such as "1.5s"`,
				`line 7: engines.timeout: 30 has no unit: write a string such as "30s"`,
			},
			kind: config.ErrDuration,
		},
		{
			name: "in an inline table",
			in:   "engines = [{ name = \"a\", timeout = 5 }]\n",
			want: []string{`line 1: engines.timeout: 5 has no unit: write a string such as "5s"`},
			kind: config.ErrDuration,
		},
		{
			name: "boolean",
			in:   "top = true\n",
			want: []string{`line 1: top: want a duration, a string such as "30s", got boolean`},
			kind: config.ErrDuration,
		},
		{
			name: "string without a unit",
			in:   "top = \"2\"\n",
			want: []string{`line 1: top: duration "2" has no unit: write a string such as "2s"`},
			kind: config.ErrSyntax,
		},
		{
			name: "negative",
			in:   "top = \"-1s\"\n",
			want: []string{`line 1: top: negative duration "-1s"`},
			kind: config.ErrSyntax,
		},
		{
			name: "unknown keys, all reported",
			in:   "[gateway]\npoll_intervall = \"2s\"\n[[engines]]\nwindow = { secs = 1 }\n[gatewya]\n",
			want: []string{
				`line 2: unknown key "gateway.poll_intervall"`,
				`line 4: unknown key "engines.window.secs"`,
				`line 5: unknown table "gatewya"`,
			},
			kind: config.ErrUnknownKey,
		},
		{
			name: "wrong type",
			in:   "[gateway]\ncount = \"three\"\n",
			want: []string{`line 2: gateway.count: want an integer, got string`},
			kind: config.ErrSyntax,
		},
		{
			name: "wrong type in an inline table",
			in:   "[[engines]]\nwindow = { seconds = 1.5 }\n",
			want: []string{`line 2: engines.window.seconds: want an integer, got float`},
			kind: config.ErrSyntax,
		},
		{
			name: "syntax",
			in:   "[gateway\n",
			want: []string{`line 1: expected ']' to close table name`},
			kind: config.ErrSyntax,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d doc
			errs := config.Decode([]byte(tt.in), &d, config.Options{})
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
				if !errors.Is(e, tt.kind) {
					t.Errorf("%v is not %v", e, tt.kind)
				}
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Decode errors (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDecodeValues(t *testing.T) {
	t.Parallel()
	var d doc
	in := "top = \"1m\"\n[gateway]\npoll_interval = \"2s\"\nlimit = \"3s\"\n[[engines]]\ntimeout = \"4s\"\n"
	if errs := config.Decode([]byte(in), &d, config.Options{}); errs != nil {
		t.Fatal(errs)
	}
	got := []time.Duration{d.Top.Std(), d.Gateway.PollInterval.Std(), d.Gateway.Limit.Std(), d.Engines[0].Timeout.Std()}
	want := []time.Duration{time.Minute, 2 * time.Second, 3 * time.Second, 4 * time.Second}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("durations (-got +want):\n%s", diff)
	}
}

func TestDecodeLaxAndFile(t *testing.T) {
	t.Parallel()
	var d doc
	errs := config.Decode([]byte("other = 1\n[gateway]\npoll_interval = 2\n"), &d, config.Options{File: "x.toml", Lax: true})
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{`x.toml:3: gateway.poll_interval: 2 has no unit: write a string such as "2s"`}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Decode errors (-got +want):\n%s", diff)
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   config.Error
		want string
	}{
		{name: "all", in: config.Error{File: "c.toml", Line: 7, Entry: "neurons[1] (n)", Msg: "bad"}, want: "c.toml:7: neurons[1] (n): bad"},
		{name: "no line", in: config.Error{File: "c.toml", Msg: "bad"}, want: "c.toml: bad"},
		{name: "no file", in: config.Error{Line: 7, Msg: "bad"}, want: "line 7: bad"},
		{name: "message only", in: config.Error{Msg: "bad"}, want: "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.in.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

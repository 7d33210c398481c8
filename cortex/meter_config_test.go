package cortex_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/helexa-ai/helexa-go/cortex"
)

// The commented [metering] example of testdata/cortex.toml is valid once
// uncommented, and its relative file is resolved against the config's
// directory.
func TestMeteringExampleConfig(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "cortex.toml"))
	if err != nil {
		t.Fatal(err)
	}
	example := regexp.MustCompile(`(?m)^# (\[metering\]|[a-z_]+ = .*)$`)
	var lines []string
	inside := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case line == "# [metering]":
			inside = true
		case inside && !example.MatchString(line):
			inside = false
		}
		if inside {
			line = strings.TrimPrefix(line, "# ")
		}
		lines = append(lines, line)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "\n[metering]\n") {
		t.Fatal("no [metering] example in testdata/cortex.toml")
	}
	path := filepath.Join(t.TempDir(), "cortex.toml")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := cortex.LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := cortex.MeteringConfig{File: filepath.Join(filepath.Dir(path), "meter.jsonl"), MaxMB: 100, Backups: ptr(5), MaxAccounts: 100}
	if diff := cmp.Diff(c.Metering, want); diff != "" {
		t.Errorf("metering (-got +want):\n%s", diff)
	}
	if n := len(c.Metering.FileSinkOptions()); n != 2 {
		t.Errorf("%d file sink options, want 2", n)
	}
}

func TestMeteringConfigErrors(t *testing.T) {
	t.Parallel()
	const neurons = "[[neurons]]\nname = \"n\"\nendpoint = \"http://n:1\"\n"
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "unknown key", in: "[metering]\nfile = \"m\"\nmax_size = 1\n", wantErr: `:3: unknown key "metering.max_size"`},
		{name: "negative size", in: "[metering]\nfile = \"m\"\nmax_mb = -1\n", wantErr: ":1: metering: max_mb -1 is out of range"},
		{name: "huge size", in: "[metering]\nfile = \"m\"\nmax_mb = 9_000_000_000_000_000\n", wantErr: "out of range"},
		{name: "negative backups", in: "[metering]\nfile = \"m\"\nbackups = -2\n", wantErr: "backups -2 is negative"},
		{name: "no file", in: "[metering]\nbackups = 2\n", wantErr: "without a file"},
		{name: "negative accounts", in: "[metering]\nper_account_metrics = true\nmax_accounts = -1\n", wantErr: "max_accounts -1"},
		{name: "valid", in: "[metering]\nfile = \"m\"\nbackups = 0\nper_account_metrics = true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := cortex.ParseConfig([]byte(tt.in + neurons))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ParseConfig: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ParseConfig: %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

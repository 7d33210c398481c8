package redisledger_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/helexa-ai/helexa-go/entitlements"
	"github.com/helexa-ai/helexa-go/entitlements/redisledger"
	"github.com/helexa-ai/helexa-go/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// fakeConfigRedis serves the RESP2 subset CheckPersistence needs: CONFIG
// GET answers from config, or with configErr (a RESP error line without
// the leading '-') when it is set; every other command is an unknown
// command, which go-redis tolerates during its handshake.
func fakeConfigRedis(t *testing.T, config map[string]string, configErr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				go func() { <-t.Context().Done(); _ = c.Close() }()
				serveFakeRedis(c, config, configErr)
			})
		}
	})
	return ln.Addr().String()
}

func serveFakeRedis(c net.Conn, config map[string]string, configErr string) {
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		var reply string
		switch {
		case len(args) == 3 && strings.EqualFold(args[0], "config") && strings.EqualFold(args[1], "get"):
			if configErr != "" {
				reply = "-" + configErr + "\r\n"
				break
			}
			v, ok := config[args[2]]
			if !ok {
				reply = "*0\r\n"
				break
			}
			reply = "*2\r\n" + bulk(args[2]) + bulk(v)
		case len(args) == 1 && strings.EqualFold(args[0], "ping"):
			reply = "+PONG\r\n"
		default:
			reply = "-ERR unknown command '" + args[0] + "'\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

func bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, errors.New("not an array")
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, err
	}
	args := make([]string, 0, n)
	for range n {
		h, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(h, "$")))
		if err != nil {
			return nil, err
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		args = append(args, string(b[:size]))
	}
	return args, nil
}

// A Redis that persists nothing is refused with an error naming the
// settings to change; AOF or a save rule is accepted; a Redis that hides
// its CONFIG is refused as unverifiable.
func TestCheckPersistence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		config    map[string]string
		configErr string
		wantErr   error
		wantMsg   []string
	}{
		{name: "volatile", config: map[string]string{"appendonly": "no", "save": ""}, wantErr: redisledger.ErrVolatile,
			wantMsg: []string{`"appendonly yes"`, `"save" rule`, "allow_volatile_redis = true"}},
		{name: "aof", config: map[string]string{"appendonly": "yes", "save": ""}},
		{name: "rdb", config: map[string]string{"appendonly": "no", "save": "3600 1 300 100"}},
		{name: "both", config: map[string]string{"appendonly": "yes", "save": "60 1"}},
		{name: "config renamed", configErr: "ERR unknown command 'CONFIG', with args beginning with: 'GET'",
			wantErr: redisledger.ErrPersistenceUnknown, wantMsg: []string{"+config|get", "allow_volatile_redis = true"}},
		{name: "config not granted", configErr: "NOPERM User ledger has no permissions to run the 'config|get' command",
			wantErr: redisledger.ErrPersistenceUnknown, wantMsg: []string{"NOPERM", "allow_volatile_redis = true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := fakeConfigRedis(t, tt.config, tt.configErr)
			l, err := redisledger.Open(entitlements.RedisConfig{URL: "redis://" + addr + "/0"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			err = l.CheckPersistence(t.Context())
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CheckPersistence = %v, want %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

// An unreachable Redis is unavailable, not volatile.
func TestCheckPersistenceUnreachable(t *testing.T) {
	t.Parallel()
	l, err := redisledger.Open(entitlements.RedisConfig{URL: "redis://127.0.0.1:1/0?dial_timeout=1s"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var ue *entitlements.UnavailableError
	if err := l.CheckPersistence(t.Context()); !errors.As(err, &ue) {
		t.Errorf("CheckPersistence = %v, want an *entitlements.UnavailableError", err)
	}
}

// Against a real redis-server: redistest starts it volatile; a save rule
// set at runtime makes it persistent; a user without CONFIG cannot tell.
func TestCheckPersistenceRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	l, err := redisledger.Open(entitlements.RedisConfig{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.CheckPersistence(ctx); !errors.Is(err, redisledger.ErrVolatile) {
		t.Errorf("volatile Redis: CheckPersistence = %v, want ErrVolatile", err)
	}
	// Taken only after an hour with a write, or at a clean shutdown (the
	// server is killed), so the test leaves no dump file behind.
	if err := admin.ConfigSet(ctx, "save", "3600 1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := l.CheckPersistence(ctx); err != nil {
		t.Errorf("with a save rule: CheckPersistence = %v, want nil", err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "ledger", "on", ">pw", "~*", "+@all", "-config").Err(); err != nil {
		t.Skipf("no ACL (Redis before 6): %v", err)
	}
	limited, err := redisledger.Open(entitlements.RedisConfig{URL: "redis://ledger:pw@" + srv.Addr + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()
	if err := limited.CheckPersistence(ctx); !errors.Is(err, redisledger.ErrPersistenceUnknown) {
		t.Errorf("user without CONFIG: CheckPersistence = %v, want ErrPersistenceUnknown", err)
	}
}

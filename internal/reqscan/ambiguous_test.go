package reqscan_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/helexa-ai/helexa-go/internal/reqscan"
)

// TestAmbiguous: a body that decoders could read differently is refused
// with an ambiguous *Error; its near misses are read as usual.
func TestAmbiguous(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		wantField string // the field named; "" for a duplicate key
		wantMsg   string
	}{
		{name: "duplicate model", in: `{"model":"cheap","model":"dear"}`, wantMsg: `"model" appears twice`},
		{name: "duplicate bound", in: `{"model":"m","max_tokens":5,"max_tokens":100000}`, wantMsg: "appears twice"},
		{name: "duplicate after unescaping", in: `{"model":"m","max_tokens":5,"\u006dax_tokens":100000}`, wantMsg: "appears twice"},
		{name: "duplicate unknown key", in: `{"model":"m","foo":1,"foo":2}`, wantMsg: `"foo" appears twice`},
		{name: "duplicate nested", in: `{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}`, wantMsg: `"content" appears twice`},
		{name: "duplicate deep", in: `{"model":"m","tools":[{"f":{"a":{"x":1,"x":2}}}]}`, wantMsg: `"x" appears twice`},
		{name: "duplicate in stream_options", in: `{"model":"m","stream_options":{"include_usage":false,"include_usage":true}}`, wantMsg: "appears twice"},
		{name: "duplicate among many keys", in: `{"model":"m","a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"a3":3}`, wantMsg: `"a3" appears twice`},
		{name: "duplicate after many keys", in: `{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"b7":7,"b7":7}`, wantMsg: `"b7" appears twice`},
		{name: "upper-case model", in: `{"MODEL":"dear"}`, wantField: "model"},
		{name: "mixed-case bound", in: `{"model":"m","Max_Tokens":100000}`, wantField: "max_tokens"},
		{name: "case variant beside the field", in: `{"model":"m","max_tokens":5,"MAX_TOKENS":100000}`, wantField: "max_tokens"},
		{name: "escaped model key", in: `{"\u006dodel":"dear"}`, wantField: "model"},
		{name: "escaped stream key", in: `{"model":"m","str\u0065am":true}`, wantField: "stream"},
		{name: "long s folds to s", in: `{"model":"m","ſtream":true}`, wantField: "stream"},
		{name: "escaped long s", in: `{"model":"m","\u017ftream":true}`, wantField: "stream"},
		{name: "Kelvin sign folds to k", in: `{"model":"m","max_to\u212aens":100000}`, wantField: "max_tokens"},
		{name: "dotless i, refused though Go does not fold it", in: `{"model":"m","n_predıct":100000}`, wantField: "n_predict"},
		{name: "n_predict variant", in: `{"model":"m","N_PREDICT":100000}`, wantField: "n_predict"},
		{name: "n variant", in: `{"model":"m","N":100}`, wantField: "n"},
		{name: "best_of variant", in: `{"model":"m","Best_Of":100}`, wantField: "best_of"},
		{name: "n_cmpl variant", in: `{"model":"m","N_Cmpl":100}`, wantField: "n_cmpl"},
		{name: "prompt variant", in: `{"model":"m","Prompt":["a","b"]}`, wantField: "prompt"},
		{name: "stream_options variant", in: `{"model":"m","Stream_Options":{}}`, wantField: "stream_options"},
		{name: "include_usage variant", in: `{"model":"m","stream_options":{"Include_Usage":false}}`, wantField: "include_usage"},
		{name: "max_completion_tokens variant", in: `{"model":"m","max_completion_Tokens":9}`, wantField: "max_completion_tokens"},
		{name: "max_output_tokens variant", in: `{"model":"m","MAX_OUTPUT_TOKENS":9}`, wantField: "max_output_tokens"},
		{name: "max_new_tokens variant", in: `{"model":"m","max_new_tokenS":9}`, wantField: "max_new_tokens"},
		{name: "messages variant", in: `{"model":"m","Messages":[]}`, wantField: "messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r reqscan.Request
			err := reqscan.Scan([]byte(tt.in), &r)
			var se *reqscan.Error
			if !errors.As(err, &se) || !se.Ambiguous {
				t.Fatalf("Scan(%s) = %v, want an ambiguous *Error", tt.in, err)
			}
			if se.Field != tt.wantField {
				t.Errorf("Field = %q, want %q", se.Field, tt.wantField)
			}
			if !strings.Contains(se.Error(), tt.wantMsg) {
				t.Errorf("Error() = %q, want it to contain %q", se.Error(), tt.wantMsg)
			}
		})
	}
}

// TestNotAmbiguous: keys near a read field, or equal in other objects, are
// not ambiguous.
func TestNotAmbiguous(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"model":"m","models":"x","max_tokens_x":1,"nn":2,"streaming":true}`,
		`{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`,
		`{"model":"m","metadata":{"model":"x","Model":"y","MAX_TOKENS":3}}`,
		`{"model":"m","\u0066oo":1}`,
		`{"model":"m","a":{"k":1},"b":{"k":1}}`,
		`{"model":"m","ſ":1}`,
	} {
		var r reqscan.Request
		if err := reqscan.Scan([]byte(in), &r); err != nil {
			t.Errorf("Scan(%s): %v", in, err)
		}
	}
}

// TestOutputBounds: every bound an engine obeys is read, and SetMaxTokens
// rewrites each one present and adds the route's own.
func TestOutputBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string
	}{
		{name: "n_predict alone", in: `{"n_predict":9}`, want: 9},
		{name: "max_new_tokens alone", in: `{"max_new_tokens":8}`, want: 8},
		{name: "max_tokens before n_predict", in: `{"n_predict":100000,"max_tokens":5}`, want: 5},
		{name: "n_predict unbounded", in: `{"n_predict":-1}`, wantErr: "n_predict: must be a positive integer"},
		{name: "max_new_tokens string", in: `{"max_new_tokens":"9"}`, wantErr: "must be an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r reqscan.Request
			err := reqscan.Scan([]byte(tt.in), &r)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Scan error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.MaxTokens != tt.want {
				t.Errorf("MaxTokens = %d, want %d", r.MaxTokens, tt.want)
			}
		})
	}
}

// TestPromptShapes: the four shapes of a completion's prompt and the
// sequences they make.
func TestPromptShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in            string
		prompts, seqs int64
		wantErr       string
	}{
		{in: `{"prompt":"hi"}`, prompts: 1, seqs: 1},
		{in: `{"prompt":["a","b","c"]}`, prompts: 3, seqs: 3},
		{in: `{"prompt":[1,2,3]}`, prompts: 1, seqs: 1},
		{in: `{"prompt":[[1,2],[3],[4,5,6],[7]]}`, prompts: 4, seqs: 4},
		{in: `{"prompt":["a","b"],"n":3}`, prompts: 2, seqs: 6},
		{in: `{"prompt":["a","b"],"n":2,"best_of":5}`, prompts: 2, seqs: 10},
		{in: `{"prompt":"a","n":2,"n_cmpl":7}`, prompts: 1, seqs: 7},
		{in: `{"prompt":null}`, prompts: 0, seqs: 1},
		{in: `{"prompt":{"id":"pmpt_1","variables":{}}}`, prompts: 0, seqs: 1},
		{in: `{"prompt":[]}`, wantErr: "must not be an empty array"},
		{in: `{"prompt":["a",1]}`, wantErr: "prompt: must be a string"},
		{in: `{"prompt":[[1],"a"]}`, wantErr: "prompt: must be a string"},
		{in: `{"prompt":[1.5]}`, wantErr: "prompt: must be a string"},
		{in: `{"prompt":5}`, wantErr: "prompt: must be a string"},
		{in: `{"prompt":[[1,"a"]]}`, wantErr: "prompt: must be an integer"},
	}
	for _, tt := range tests {
		var r reqscan.Request
		err := reqscan.Scan([]byte(tt.in), &r)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Scan(%s) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Scan(%s): %v", tt.in, err)
			continue
		}
		if r.Prompts != tt.prompts || r.Sequences() != tt.seqs {
			t.Errorf("Scan(%s): Prompts %d, Sequences %d; want %d, %d", tt.in, r.Prompts, r.Sequences(), tt.prompts, tt.seqs)
		}
	}
}

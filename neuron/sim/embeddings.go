package sim

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
	"strconv"

	"github.com/helexa-ai/helexa-go/internal/jsonw"
)

// serveEmbeddings answers POST /v1/embeddings with one deterministic unit
// vector per input, a function of the input alone. Embeddings answer at
// once: pacing and faults apply to the generation routes only.
func (e *Engine) serveEmbeddings(w http.ResponseWriter, _ *http.Request, st *reqState) {
	if err := e.embed(st); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(st.out)
}

// embed writes the answer into st.out.
func (e *Engine) embed(st *reqState) error {
	if err := st.decode(); err != nil {
		return err
	}
	req := &st.req
	if err := st.parsePrompts(req.Input, "input"); err != nil {
		return err
	}
	var b64 bool
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		b64 = true
	default:
		return badParam("encoding_format", "encoding_format must be \"float\" or \"base64\", got %q", req.EncodingFormat)
	}
	t, err := e.lookup(req.Model)
	if err != nil {
		return err
	}
	dims := t.cfg.EmbeddingDimensions
	if req.Dimensions.set {
		if req.Dimensions.v < 1 || req.Dimensions.v > maxDimensions {
			return badParam("dimensions", "dimensions must be between 1 and %d, got %d", maxDimensions, req.Dimensions.v)
		}
		dims = req.Dimensions.v
	}
	total := 0
	for _, p := range st.prompts {
		if p.tokens > t.cfg.ContextLength {
			return contextError("input", p.tokens, t.cfg.ContextLength)
		}
		total += p.tokens
	}
	if cap(st.vec) < dims {
		st.vec = make([]float64, dims)
	}
	vec := st.vec[:dims]
	b := append(st.out[:0], `{"object":"list","data":[`...)
	for i, p := range st.prompts {
		unitVector(vec, p.seed)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = appendInt(b, i)
		b = append(b, `,"embedding":`...)
		if b64 {
			raw := st.prefix[:0]
			for _, v := range vec {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(v)))
			}
			st.prefix = raw
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for k, v := range vec {
				if k > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(float32(v)), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = jsonw.AppendString(b, e.answerModel(req.Model))
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = appendInt(b, total)
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, total)
	st.out = append(b, "}}\n"...)
	return nil
}

// unitVector fills v with a deterministic vector of length 1 drawn from seed.
func unitVector(v []float64, seed uint64) {
	var norm float64
	for i := range v {
		x := float64(mix(seed+uint64(i)*golden)>>11)/(1<<53)*2 - 1
		v[i] = x
		norm += x * x
	}
	if norm == 0 {
		v[0], norm = 1, 1
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] /= norm
	}
}

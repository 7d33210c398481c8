package sim

import (
	"bytes"
	"unicode/utf8"
)

// words is the vocabulary of the simulated model; each word is one token.
// It is read-only.
var words = [...]string{
	"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
	"model", "token", "stream", "answer", "neuron", "cortex", "signal", "memory",
	"river", "mountain", "forest", "ocean", "cloud", "stone", "light", "shadow",
	"garden", "window", "silver", "golden", "quiet", "bright", "gentle", "rapid",
	"engine", "harbor", "meadow", "valley", "summer", "winter", "autumn", "spring",
	"simple", "careful", "honest", "modest", "clever", "steady", "patient", "curious",
	"paper", "pencil", "letter", "number", "circle", "square", "line", "point",
	"north", "south", "east", "west", "morning", "evening", "night", "noon",
	"build", "carry", "follow", "gather", "listen", "notice", "open", "share",
	"apple", "bread", "honey", "lemon", "olive", "pepper", "salt", "sugar",
	"city", "village", "road", "bridge", "tower", "market", "school", "library",
	"music", "story", "poem", "song", "voice", "word", "page", "book",
	"red", "green", "blue", "yellow", "purple", "orange", "white", "black",
	"one", "two", "three", "four", "five", "six", "seven", "eight",
	"is", "was", "will", "can", "may", "should", "would", "must",
	"and", "but", "or", "so", "yet", "for", "with", "near",
}

// FNV-1a parameters for hashing prompts.
const (
	fnvOffset uint64 = 14695981039346656037
	fnvPrime  uint64 = 1099511628211
	golden    uint64 = 0x9e3779b97f4a7c15
)

// hashString folds s into the FNV-1a hash h.
func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// hashUint folds v into the FNV-1a hash h, eight bytes little endian.
func hashUint(h, v uint64) uint64 {
	for range 8 {
		h ^= v & 0xff
		h *= fnvPrime
		v >>= 8
	}
	return h
}

// hashMessage folds one chat message into the prompt hash h.
func hashMessage(h uint64, role, text string) uint64 {
	h = hashUint(hashString(h, role), 1)
	return hashUint(hashString(h, text), 2)
}

// mix is the splitmix64 finaliser: a cheap, well-spread bijection.
func mix(x uint64) uint64 {
	x += golden
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// word returns token number step of the answer seeded by seed.
func word(seed uint64, step int) string {
	return words[mix(seed+uint64(step)*golden)%uint64(len(words))]
}

// choiceSeed derives the seed of choice j from the prompt's seed; choice 0
// uses the prompt's seed so that it matches the n = 1 answer.
func choiceSeed(seed uint64, j int) uint64 {
	if j == 0 {
		return seed
	}
	return mix(seed ^ uint64(j)*0xd6e8feb86659fd93)
}

// EstimateTokens is the simulated tokenizer: ceil(characters/4), counting
// Unicode code points. The empty string is 0 tokens.
func EstimateTokens(s string) int {
	return (utf8.RuneCountInString(s) + 3) / 4
}

// prompt is one prompt of a request: the seed of its answers, its size,
// and where its text is in reqState.text (what the prefix cache keys).
type prompt struct {
	seed       uint64
	tokens     int
	start, end int
}

// choice is the generation state of one answer.
type choice struct {
	index  int
	seed   uint64
	text   []byte // the answer so far; truncated at a stop sequence
	sent   int    // bytes of text already handed out by next
	tokens int    // tokens generated
	finish string // "" while generating, then "stop" or "length"
}

// reset prepares c for a new answer, keeping its text buffer.
func (c *choice) reset(index int, seed uint64) {
	*c = choice{index: index, seed: seed, text: c.text[:0]}
}

// next generates one token and returns the text that may be sent now: all
// of it without stop sequences, otherwise the text up to a stop sequence
// (which ends the answer with finish "stop") or up to a suffix that could
// still grow into one (held back until it cannot). The returned slice
// aliases c.text and is valid until the next call.
func (c *choice) next(stops [][]byte, maxStop int) []byte {
	start := len(c.text)
	if c.tokens > 0 {
		c.text = append(c.text, ' ')
	}
	c.text = append(c.text, word(c.seed, c.tokens)...)
	c.tokens++
	if len(stops) == 0 {
		out := c.text[c.sent:]
		c.sent = len(c.text)
		return out
	}
	// A match found now ends inside the new bytes, so it starts at most
	// maxStop-1 bytes before them.
	from := max(start-maxStop+1, 0)
	cut := -1
	for _, s := range stops {
		if i := bytes.Index(c.text[from:], s); i >= 0 && (cut < 0 || from+i < cut) {
			cut = from + i
		}
	}
	if cut >= 0 {
		c.text = c.text[:cut]
		c.finish = "stop"
		return c.flush()
	}
	hold := 0
	for _, s := range stops {
		for k := min(len(s)-1, len(c.text)); k > hold; k-- {
			if bytes.HasSuffix(c.text, s[:k]) {
				hold = k
				break
			}
		}
	}
	safe := max(len(c.text)-hold, c.sent)
	out := c.text[c.sent:safe]
	c.sent = safe
	return out
}

// flush returns the text not yet handed out.
func (c *choice) flush() []byte {
	out := c.text[c.sent:]
	c.sent = len(c.text)
	return out
}

package sim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/helexa-ai/helexa-go/neuron/sim"
)

// A simulated engine answers the OpenAI API with deterministic text.
func ExampleNewEngine() {
	srv := httptest.NewServer(sim.NewEngine(sim.Config{}))
	defer srv.Close()

	body := `{"model":"demo","messages":[{"role":"user","content":"Hello!"}],"max_tokens":4}`
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%q %s\n", out.Choices[0].Message.Content, out.Choices[0].FinishReason)
	fmt.Println(out.Usage.PromptTokens, out.Usage.CompletionTokens)
	// Output:
	// "tower was spring token" length
	// 6 4
}

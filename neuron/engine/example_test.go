package engine_test

import (
	"fmt"
	"time"

	"github.com/helexa-ai/helexa-go/neuron"
	"github.com/helexa-ai/helexa-go/neuron/engine"
)

func ExampleNew() {
	h, err := engine.New([]neuron.EngineConfig{{
		Name: "llama-server",
		Command: []string{"llama-server", "-m", "{model}", "--alias", "{id}",
			"--host", "{host}", "--port", "{port}", "-c", "{context}"},
		StartTimeout: neuron.Duration(5 * time.Minute),
	}}, engine.WithLogLines(200))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(h.Models()), "models")

	// A typo in a placeholder is caught before any engine starts.
	_, err = engine.New([]neuron.EngineConfig{{
		Name:    "vllm",
		Command: []string{"vllm", "serve", "{model}", "--port", "{prot}"},
	}})
	fmt.Println(err)
	// Output:
	// 0 models
	// engine: engine "vllm": command[4]: unknown placeholder {prot} (known: {model} {id} {port} {host} {gpus} {context})
}

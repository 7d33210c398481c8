package catalogue_test

import (
	"errors"
	"fmt"

	"github.com/helexa-ai/helexa-go/catalogue"
)

func ExampleParse() {
	c, err := catalogue.Parse([]byte(`
[[models]]
id = "llama-3.1-8b-instruct"
engine = "llama-server"
vram_mb = 6144
cost = { input = 0.10, output = 0.20 }

[aliases]
"llama3.1" = "llama-3.1-8b-instruct"
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	m, ok := c.Resolve("llama3.1")
	fmt.Println(m.ID, ok, m.MinDevices, m.ResidencyPriority)
	// Output: llama-3.1-8b-instruct true 1 100
}

func ExampleParse_errors() {
	_, err := catalogue.Parse([]byte(`
[[models]]
id = "llama-3-8b"
vram_gb = 6

[[models]]
id = "qwen2.5-7b-instruct"
vram_mb = -1
`))
	fmt.Println(err)
	fmt.Println(errors.Is(err, catalogue.ErrUnknownField), errors.Is(err, catalogue.ErrNegative))
	// Output:
	// line 4: models[0] (llama-3-8b): unknown key "vram_gb"
	// line 8: models[1] (qwen2.5-7b-instruct): negative vram_mb
	// true true
}

func ExampleLoad() {
	c, err := catalogue.Load("../testdata/models.toml")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range c.Models() {
		priced := "not priced"
		if m.Cost != nil {
			priced = fmt.Sprintf("$%g/$%g per 1M", m.Cost.Input, m.Cost.Output)
		}
		fmt.Printf("%-26s %-13s %5d MiB  %s\n", m.ID, m.Engine, m.VRAMMB, priced)
	}
	// Output:
	// llama-3.1-8b-instruct      llama-server   6144 MiB  $0.1/$0.2 per 1M
	// llama-3.2-1b-instruct      sim            1024 MiB  $0/$0 per 1M
	// nomic-embed-text-v1.5      llama-server   1024 MiB  $0.02/$0 per 1M
	// qwen2.5-32b-instruct       vllm          24576 MiB  $0.4/$1.2 per 1M
	// qwen2.5-coder-7b-instruct  llama-server   5120 MiB  not priced
}

func ExampleNew() {
	c, err := catalogue.New([]catalogue.Model{
		{ID: "qwen2.5-32b-instruct", Engine: "vllm", VRAMMB: 24576, MinDevices: 2},
	}, map[string]string{"gpt-4o-mini": "qwen2.5-32b-instruct"})
	if err != nil {
		fmt.Println(err)
		return
	}
	m, _ := c.Resolve("gpt-4o-mini")
	fmt.Println(m.ID, m.Engine)

	_, err = catalogue.New([]catalogue.Model{{ID: "a"}}, map[string]string{"b": "c"})
	fmt.Println(err)
	// Output:
	// qwen2.5-32b-instruct vllm
	// catalogue: aliases.b: unknown model "c"
}

func ExampleFeasible() {
	m := catalogue.Model{ID: "qwen2.5-32b-instruct", VRAMMB: 24576, MinDevices: 2, MinDeviceVRAMMB: 16384}
	fmt.Println(catalogue.Feasible(m, []uint64{24576, 24576}))
	fmt.Println(catalogue.Feasible(m, []uint64{81920}))        // one device only
	fmt.Println(catalogue.Feasible(m, []uint64{24576, 12288})) // one below the floor
	// Output:
	// true
	// false
	// false
}

func ExampleFeasibleOn() {
	m := catalogue.Model{ID: "llama-3.1-8b-instruct", VRAMMB: 6144, PinnedOn: []string{"gpu-01"}}
	fmt.Println(catalogue.FeasibleOn(m, []uint64{24576}, "gpu-01"))
	fmt.Println(catalogue.FeasibleOn(m, []uint64{24576}, "gpu-02"))
	fmt.Println(catalogue.FeasibleOn(m, []uint64{4096}, "gpu-01"))
	// Output:
	// fits_pinned
	// fits
	// no_fit
}

func ExampleCost_MicroUSD() {
	c := catalogue.Cost{Input: 0.15, Output: 0.60} // USD per 1M tokens
	fmt.Println(c.MicroUSD(1_000_000, 0))
	fmt.Println(c.MicroUSD(1200, 300))
	fmt.Println(c.MicroUSD(1, 0)) // 0.15 micro-dollars, rounded up
	// Output:
	// 150000
	// 360
	// 1
}

func ExampleCost_OutputTokensFor() {
	c := catalogue.Cost{Input: 3, Output: 15}
	remaining := int64(10_000) // micro-dollars: one US cent
	prompt := c.MicroUSD(2000, 0)
	fmt.Println(prompt, c.OutputTokensFor(remaining-prompt))
	// Output: 6000 266
}

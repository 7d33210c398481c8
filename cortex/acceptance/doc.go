// Package acceptance holds the gateway's acceptance tests: a whole stack
// (a cortex Gateway with API keys and budgets over a neuron Agent over the
// simulated engine, each behind a real HTTP server) driven by the official
// OpenAI and Anthropic Go clients, unmodified, as a user would drive it.
// The package has no code of its own; its tests run with `make test`.
package acceptance

// Package neuron is the per-host agent of a helexa fleet: it discovers the
// host's GPUs, runs models through a Harness (engine child processes, or the
// simulated engine), admits and forwards inference requests to them, and
// answers a small management API. Agent is an http.Handler; Client is the
// typed client of its API used by cortex.
//
// The wire types of the management API are defined here once and used by
// both the Agent and the Client.
package neuron

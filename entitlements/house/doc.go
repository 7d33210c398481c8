// Package house is the clearing house of entitlements: a small versioned
// HTTP/JSON protocol (PROTOCOL.md) that lets gateways spend budgets kept
// in one place, a Handler that serves it over any entitlements.Provider,
// and a Client that is an entitlements.Provider speaking it.
package house

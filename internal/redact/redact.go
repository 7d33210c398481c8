// Package redact finds what must not leave the fleet in a message a client
// reads: network addresses and ports, file paths, transport errors. The
// gateway scrubs relayed error messages with it, and the tests check every
// client-visible answer and the non-admin status with the same code.
package redact

import "regexp"

// patterns are what Find looks for, each with what it is.
var patterns = []struct {
	what string
	re   *regexp.Regexp
}{
	{"an IPv4 address", regexp.MustCompile(`\b\d{1,3}(?:\.\d{1,3}){3}\b`)},
	{"an IPv6 address", regexp.MustCompile(`\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]|\b(?:[0-9A-Fa-f]{1,4}:){3,7}[0-9A-Fa-f]{1,4}\b|::1\b`)},
	{"a host and port", regexp.MustCompile(`\b[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*:\d{2,5}\b`)},
	{"a URL", regexp.MustCompile(`\b[a-z][a-z0-9+.-]*://`)},
	{"a file path", regexp.MustCompile(`(?:^|[\s"'(=:,\[])(?:~|\.{1,2})?/[A-Za-z0-9._-]+/[A-Za-z0-9._/-]*`)},
	{"a Windows path", regexp.MustCompile(`\b[A-Za-z]:\\`)},
	{"a transport error", regexp.MustCompile(`(?i)\b(?:dial tcp|read tcp|write tcp|connection refused|connection reset|broken pipe|i/o timeout|no such host|unexpected EOF)\b|(?:^|[\s:])EOF\b`)},
}

// Find returns a description of each kind of inside detail s contains;
// nil when it contains none.
func Find(s string) []string {
	var found []string
	for _, p := range patterns {
		if loc := p.re.FindStringIndex(s); loc != nil {
			found = append(found, p.what+": "+s[loc[0]:loc[1]])
		}
	}
	return found
}

// Clean reports whether s contains nothing Find finds.
func Clean(s string) bool {
	for _, p := range patterns {
		if p.re.MatchString(s) {
			return false
		}
	}
	return true
}

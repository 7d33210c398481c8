package main

import (
	"log"
	"net/http"
	"time"
)

// Limits of the neuron's listener.
const (
	// readHeaderTimeout cuts a client that is slow to send its headers.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes a keep-alive connection idle for this long.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds the request line and headers (431 beyond).
	maxHeaderBytes = 64 << 10
)

// newServer is the neuron's http.Server: the header timeout, idle timeout
// and header size limit of a server reached over the network (the Agent
// bounds request bodies itself). It has no read or write timeout: a
// stream lasts as long as generation does, and a read timeout would cancel
// it.
func newServer(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
}

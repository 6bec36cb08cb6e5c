package kube

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// Health is the agent's liveness and readiness: ready once the datapath
// serves and the conflist is in place.
type Health struct {
	datapath, conflist atomic.Bool
}

// SetDatapathReady records that the daemon serves its socket.
func (h *Health) SetDatapathReady() { h.datapath.Store(true) }

// SetConflistReady records that the node's conflist is written.
func (h *Health) SetConflistReady() { h.conflist.Store(true) }

// Ready reports readiness and, when not ready, what is missing.
func (h *Health) Ready() (bool, string) {
	var missing []string
	if !h.datapath.Load() {
		missing = append(missing, "datapath not serving")
	}
	if !h.conflist.Load() {
		missing = append(missing, "conflist not written (no podCIDR yet?)")
	}
	return len(missing) == 0, strings.Join(missing, "; ")
}

// Handler serves GET /healthz (200 while the process runs) and GET /readyz
// (200 when ready, else 503 saying what is missing).
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := h.Ready()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

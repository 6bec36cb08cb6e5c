package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"syscall"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/version"
	"golang.org/x/sys/unix"
)

type ctxKey struct{}

// listen opens the unix socket: its directory is made the daemon's own,
// 0700 (secureSocketDir), the socket 0600, and a stale socket from a dead
// daemon, or an impostor's, is replaced, while a live daemon's is an error.
func listen(socket string) (net.Listener, error) {
	if err := secureSocketDir(filepath.Dir(socket)); err != nil {
		return nil, err
	}
	if liveDaemon(socket) {
		return nil, fmt.Errorf("another daemon is already listening on %s", socket)
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", socket)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return l, nil
}

// peerUID reads the connecting process's uid from the socket (SO_PEERCRED).
// The socket's mode already keeps other users out; checking the peer as well
// keeps them out even if the mode was loosened by hand.
func peerUID(c net.Conn) (uint32, bool) {
	uc, ok := c.(syscall.Conn) // a *net.UnixConn, or the limitConn around it
	if !ok {
		return 0, false
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, false
	}
	return cred.Uid, true
}

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", d.status)
	mux.HandleFunc("GET /v1/pairs", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, d.m.List())
	})
	mux.HandleFunc("POST /v1/pairs", d.create)
	mux.HandleFunc("POST /v1/cni/results", d.cniResult)
	mux.HandleFunc("GET /v1/pairs/{id}", func(w http.ResponseWriter, r *http.Request) {
		p, err := d.m.Get(r.PathValue("id"))
		answer(w, p, err)
	})
	mux.HandleFunc("DELETE /v1/pairs/{id}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, struct{}{}, d.m.Delete(r.PathValue("id")))
	})
	mux.HandleFunc("PUT /v1/pairs/{id}/ips", func(w http.ResponseWriter, r *http.Request) {
		var req api.SetIPsRequest
		if readJSON(w, r, &req) {
			p, err := d.m.SetIPs(r.PathValue("id"), req.IPs)
			answer(w, p, err)
		}
	})
	mux.HandleFunc("GET /v1/pairs/{id}/stats", func(w http.ResponseWriter, r *http.Request) {
		s, err := d.m.Stats(r.PathValue("id"))
		answer(w, s, err)
	})
	mux.HandleFunc("GET /v1/pairs/{id}/capture", d.capture)
	mux.HandleFunc("DELETE /v1/captures/{id}", d.stopCapture)
	// Go profiles of the datapath (hack/bench/profile.sh), root-only like
	// everything on this socket.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return d.mx.Instrument(rootOnly(mux))
}

func rootOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if uid, ok := r.Context().Value(ctxKey{}).(uint32); !ok || uid != 0 {
			reply(w, http.StatusForbidden, api.Error{Error: "the epair daemon answers root only"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (d *Daemon) create(w http.ResponseWriter, r *http.Request) {
	req := readCreate(w, r)
	if req == nil {
		return
	}
	p, err := d.m.Create(req)
	if err == nil {
		reply(w, http.StatusCreated, p)
		return
	}
	answer(w, nil, err)
}

// cniResult counts how a CNI command of the plugin ended (the plugin
// reports it as its last request), for epair_cni_commands_total.
func (d *Daemon) cniResult(w http.ResponseWriter, r *http.Request) {
	var res api.CNIResult
	if !readJSON(w, r, &res) {
		return
	}
	if err := res.Validate(); err != nil {
		reply(w, http.StatusBadRequest, api.Error{Error: "malformed CNI result: " + err.Error()})
		return
	}
	d.mx.CNIResult(res)
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) status(w http.ResponseWriter, r *http.Request) {
	cfg := d.core.Config()
	s := api.Status{Version: version.Version, Pairs: d.m.Len(), Queues: cfg.Queues, Policy: cfg.Policy.String(), CanCreate: true}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		s.CanCreate, s.Problem = false, fmt.Sprintf("cannot open /dev/net/tun: %v", err)
	} else {
		f.Close()
	}
	reply(w, http.StatusOK, s)
}

// answer maps an error to its HTTP status, or replies v.
func answer(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		reply(w, http.StatusOK, v)
	case errors.Is(err, errNotFound):
		reply(w, http.StatusNotFound, api.Error{Error: err.Error()})
	case errors.Is(err, errExists), errors.Is(err, unix.EEXIST), errors.Is(err, errBusy):
		reply(w, http.StatusConflict, api.Error{Error: err.Error()})
	case errors.Is(err, errInvalid), errors.Is(err, unix.ENOSPC):
		reply(w, http.StatusBadRequest, api.Error{Error: err.Error()})
	default:
		slog.Error("request failed", "err", err)
		reply(w, http.StatusInternalServerError, api.Error{Error: err.Error()})
	}
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if uid, ok := peerUID(c); ok {
		return context.WithValue(ctx, ctxKey{}, uid)
	}
	return ctx
}

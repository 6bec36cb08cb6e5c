package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// CheckAddr checks a --metrics-addr: HOST:PORT with an IP address (or
// nothing: every address) as the host and a port 1..65535. A name is
// refused rather than resolved: what it resolves to may change, and the
// address decides who can read the metrics.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("metrics address %q: %w (want HOST:PORT, e.g. 127.0.0.1:9808)", addr, err)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("metrics address %q: host %q is not an IP address (want e.g. 127.0.0.1:9808, [::1]:9808 or :9808 for all)", addr, host)
		}
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("metrics address %q: port %q is not a number 1..65535", addr, port)
	}
	return nil
}

// listenRetry is how long Listen retries a port in use: a daemon killed
// just before (kill -9, a DaemonSet pod replaced) still holds it until the
// kernel has closed its files, as it does the state dir's lock.
const listenRetry = 2 * time.Second

// Listen checks addr and listens on it. A port in use is retried for
// listenRetry, then an error that says so.
func Listen(addr string) (net.Listener, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(listenRetry)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("metrics: port of %s is in use (another epair daemon, or another exporter? choose another --metrics-addr): %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Server serves GET /metrics on a listener.
type Server struct {
	srv *http.Server
}

// Serve serves m's exposition at /metrics on l, in the background, until
// Shutdown. Scrapes are small and quick: the timeouts only end stalled
// connections.
func Serve(l net.Listener, m *Metrics) *Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	s := &Server{srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}}
	go func() {
		if err := s.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics server stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
	return s
}

// Shutdown stops serving, waiting for scrapes in flight until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

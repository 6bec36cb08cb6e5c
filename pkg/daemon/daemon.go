package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/datapath"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/hostid"
	"github.com/epair-cni/epair/pkg/metrics"
	"github.com/epair-cni/epair/pkg/state"
)

// Options configure the daemon.
type Options struct {
	Socket   string
	StateDir string
	// LockWait bounds how long the daemon waits for the state dir's lock
	// (state.OpenWait): a daemon killed just before still holds it for a
	// moment. Zero does not wait.
	LockWait time.Duration
	Core     epair.Config
	Datapath datapath.Options
	// Ready, when set, is called once the socket serves (the Kubernetes
	// agent's readiness waits for it).
	Ready func()
	// MetricsAddr, when set, is the HOST:PORT where GET /metrics serves
	// the Prometheus metrics (metrics.CheckAddr); empty serves none.
	MetricsAddr string
}

// Daemon is a running node agent.
type Daemon struct {
	core *epair.Core
	m    *Manager
	mx   *metrics.Metrics
	caps captures
}

// Run starts the daemon and serves until ctx is done. On the way out it
// stops forwarding but leaves every TAP in place for the next start.
func Run(ctx context.Context, opts Options) error {
	if opts.Socket == "" {
		opts.Socket = api.DefaultSocket
	}
	if opts.StateDir == "" {
		opts.StateDir = api.DefaultStateDir
	}
	store, err := state.OpenWait(opts.StateDir, opts.LockWait)
	if err != nil {
		return err
	}
	defer store.Close()
	// The metrics port is taken before any pair is touched, and after the
	// lock, so that a daemon killed just now has let go of both.
	var ml net.Listener
	if opts.MetricsAddr != "" {
		if ml, err = metrics.Listen(opts.MetricsAddr); err != nil {
			return err
		}
		defer ml.Close()
	}
	core := epair.New(opts.Core)
	defer core.Close()
	// Callers' namespaces are pinned beside the socket: a root-only
	// directory under /run, gone at reboot like the namespaces themselves.
	pinDir := filepath.Join(filepath.Dir(opts.Socket), "netns")
	m, err := NewManager(store, core, hostid.Get(), opts.Datapath, pinDir)
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	defer m.Close()
	d := &Daemon{core: core, m: m, mx: metrics.New(m)}
	if ml != nil {
		ms := metrics.Serve(ml, d.mx)
		defer ms.Shutdown(context.Background())
		slog.Info("serving metrics", "addr", ml.Addr().String())
	}

	l, err := listen(opts.Socket)
	if err != nil {
		return err
	}
	srv := newServer(d.handler(), defaultLimits)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(newLimitListener(l, defaultLimits.maxConns)) }()
	if opts.Ready != nil {
		opts.Ready()
	}
	cfg := core.Config()
	slog.Info("epair daemon ready", "socket", opts.Socket, "state", opts.StateDir,
		"pairs", m.Len(), "queues", cfg.Queues, "policy", cfg.Policy.String(),
		"peer_poll", opts.Datapath.PeerPoll, "busy_poll", opts.Datapath.BusyPoll)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	slog.Info("epair daemon stopped; pairs stay for the next start")
	return nil
}

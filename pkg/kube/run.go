package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/epair-cni/epair/pkg/kube/kubeopts"
	"github.com/vishvananda/netlink"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Options are the flags of `epair daemon --kubernetes`, defined in kubeopts
// so that the lean CLI can fill them in without linking client-go.
type Options = kubeopts.Options

// Run runs the datapath daemon (through daemon, which calls ready once it
// serves) and the agent in the current network namespace until ctx is done
// or one of them fails; then it stops the other.
func Run(ctx context.Context, o Options, daemon func(ctx context.Context, ready func()) error) error {
	klog.SetSlogLogger(slog.Default())
	client, err := newClient(o.Kubeconfig)
	if err != nil {
		return err
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	health := &Health{}
	cfg := Config{
		NodeName: o.NodeName, Client: client,
		ConfDir: o.CNIConfDir, ConfName: o.CNIConfName, Socket: o.CNISocket, MTU: o.MTU, DataDir: o.IPAMDataDir,
		Uplink:     func(ip netip.Addr) (string, int, error) { return UplinkMTU(h, ip) },
		InstallSrc: o.CNIInstallSrc, BinDir: o.CNIBinDir,
		ClusterCIDRs: o.ClusterCIDRs, ServiceCIDRs: o.ServiceCIDRs,
		Router: &NetlinkRouter{H: h}, Health: health,
	}
	masq := &NftMasq{}
	if o.Masquerade {
		cfg.Masq = masq
	} else if err := masq.Remove(); err != nil {
		slog.Warn("could not remove epair's masquerade table", "err", err)
	}
	agent, err := NewAgent(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.HealthAddr)
	if err != nil {
		return fmt.Errorf("health endpoint: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return runAll(ctx, cancel,
		func(ctx context.Context) error { return daemon(ctx, health.SetDatapathReady) },
		agent.Run,
		func(ctx context.Context) error { return serveHealth(ctx, ln, health) })
}

// runAll runs fns until each returns; the first to return stops the others.
func runAll(ctx context.Context, cancel func(), fns ...func(context.Context) error) error {
	errc := make(chan error, len(fns))
	for _, fn := range fns {
		go func() { errc <- fn(ctx) }()
	}
	var errs []error
	for range fns {
		err := <-errc
		cancel()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func serveHealth(ctx context.Context, ln net.Listener, h *Health) error {
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		srv.Shutdown(sctx)
	}()
	slog.Info("health endpoint", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("health endpoint: %w", err)
	}
	return nil
}

// newClient uses the kubeconfig file when given, else the in-cluster
// config (the pod's service account).
func newClient(kubeconfig string) (corev1client.NodesGetter, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.UserAgent = "epair"
	c, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, nil
}

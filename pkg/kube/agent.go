package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Config configures an Agent.
type Config struct {
	// NodeName is this node's Node object.
	NodeName string
	// Client is the core/v1 client (only Nodes are used); the typed client
	// of one group keeps every other API group out of the binary.
	Client corev1client.NodesGetter

	// ConfDir and ConfName are where the conflist goes.
	ConfDir, ConfName string
	// Socket is the daemon's socket as the host sees it.
	Socket string
	// DataDir is host-local's dataDir in the conflist ("" = its default).
	DataDir string
	// MTU of the pods' pairs; 0 asks Uplink.
	MTU int
	// Uplink returns the name and MTU of the link holding the node's
	// InternalIP (an invalid address when the node has none).
	Uplink func(netip.Addr) (string, int, error)

	// InstallSrc holds the CNI binaries to install into BinDir at start
	// ("" installs nothing).
	InstallSrc, BinDir string

	// ClusterCIDRs are the pods' CIDRs of the whole cluster; empty uses
	// the podCIDRs of every node. ServiceCIDRs are the Services'.
	ClusterCIDRs, ServiceCIDRs []netip.Prefix

	Router Router
	// Masq is nil when the agent does not masquerade.
	Masq Masquerader

	Health *Health
	// Resync recomputes everything this often even without events, to
	// repair what someone else changed (default 1m).
	Resync time.Duration
}

// Agent keeps the node's conflist, routes and masquerade in line with the
// Node objects.
type Agent struct {
	cfg    Config
	lister listersv1.NodeLister
	// what was last logged, so that a resync does not repeat it
	waiting string
	skipped map[Skip]bool
}

// NewAgent returns an agent; Run starts it.
func NewAgent(cfg Config) (*Agent, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("no node name: set --node-name or NODE_NAME (the downward API's spec.nodeName)")
	}
	if cfg.Client == nil || cfg.Router == nil || cfg.Health == nil || cfg.Uplink == nil {
		return nil, errors.New("kube agent: Client, Router, Health and Uplink are required")
	}
	if cfg.ConfName == "" {
		cfg.ConfName = "10-epair.conflist"
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Minute
	}
	return &Agent{cfg: cfg, skipped: map[Skip]bool{}}, nil
}

// syncKey is the one item of the work queue: every event means "recompute
// everything", so events coalesce.
const syncKey = "sync"

// Run installs the binaries, then watches the Nodes and syncs until ctx is
// done. It does nothing to routes or files before the Node cache has synced
// once: an unreachable apiserver leaves everything as it is, while the
// reflector retries with backoff.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.InstallSrc != "" {
		if err := InstallBinaries(a.cfg.InstallSrc, a.cfg.BinDir); err != nil {
			return err
		}
	}
	inf := a.nodeInformer()
	a.lister = listersv1.NewNodeLister(inf.GetIndexer())
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "epair-nodes"})
	defer q.ShutDown()
	enqueue := func(any) { q.Add(syncKey) }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
		DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	stopped := make(chan struct{})
	go func() { inf.RunWithContext(ctx); close(stopped) }()
	defer func() { <-stopped }()
	slog.Info("waiting for the Node cache", "node", a.cfg.NodeName)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil // ctx done
	}
	go a.tick(ctx, q)
	go func() { <-ctx.Done(); q.ShutDown() }()
	for a.next(ctx, q) {
	}
	return nil
}

// nodeInformer lists and watches every Node; its reflector retries a failed
// list or watch with backoff and keeps the cache meanwhile.
func (a *Agent) nodeInformer() cache.SharedIndexInformer {
	nodes := a.cfg.Client.Nodes()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return nodes.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return nodes.Watch(ctx, o)
		},
	}
	return cache.NewSharedIndexInformer(lw, &corev1.Node{}, 0, cache.Indexers{})
}

// tick asks for a full recompute every Resync.
func (a *Agent) tick(ctx context.Context, q workqueue.TypedRateLimitingInterface[string]) {
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.Add(syncKey)
		}
	}
}

// next runs one sync; a failed one is retried with exponential backoff.
func (a *Agent) next(ctx context.Context, q workqueue.TypedRateLimitingInterface[string]) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	if err := a.Sync(ctx); err != nil {
		slog.Error("node sync failed; retrying", "err", err, "retries", q.NumRequeues(key))
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	return true
}

// Sync recomputes the conflist, the routes and the masquerade from the
// Node cache. It is exported for tests that drive it step by step.
func (a *Agent) Sync(ctx context.Context) error {
	all, err := a.lister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	slices.SortFunc(all, func(x, y *corev1.Node) int { return cmp.Compare(x.Name, y.Name) })
	self, err := a.lister.Get(a.cfg.NodeName)
	if apierrors.IsNotFound(err) {
		a.wait(fmt.Sprintf("no Node object named %q yet", a.cfg.NodeName))
		self = nil
	} else if err != nil {
		return fmt.Errorf("get node %s: %w", a.cfg.NodeName, err)
	}
	var errs []error
	if self != nil {
		errs = append(errs, a.syncConflist(self))
	}
	errs = append(errs, a.syncRoutes(all), a.syncMasq(all))
	return errors.Join(errs...)
}

// wait logs once per reason that the conflist cannot be written yet.
func (a *Agent) wait(reason string) {
	if a.waiting != reason {
		slog.Warn("not writing the conflist yet", "reason", reason)
		a.waiting = reason
	}
}

func (a *Agent) syncConflist(self *corev1.Node) error {
	cidrs, bad := PodCIDRs(self)
	if len(bad) > 0 {
		a.wait(fmt.Sprintf("podCIDRs %q do not parse", bad))
		return nil
	}
	if len(cidrs) == 0 {
		a.wait("the node has no podCIDR yet")
		return nil
	}
	mtu, err := a.mtu(self, cidrs[0])
	if err != nil {
		return err
	}
	b, err := RenderConflist(ConflistParams{PodCIDRs: cidrs, MTU: mtu, Socket: a.cfg.Socket, DataDir: a.cfg.DataDir})
	if err != nil {
		a.wait(err.Error())
		return nil
	}
	path := filepath.Join(a.cfg.ConfDir, a.cfg.ConfName)
	wrote, err := WriteFileAtomic(path, b, 0o644)
	if err != nil {
		return fmt.Errorf("conflist: %w", err)
	}
	if wrote {
		slog.Info("wrote the conflist", "path", path, "podCIDRs", cidrs, "mtu", mtu)
	}
	a.waiting = ""
	a.cfg.Health.SetConflistReady()
	return nil
}

// mtu is --mtu, or the MTU of the uplink holding the node's InternalIP of
// the first podCIDR's family.
func (a *Agent) mtu(self *corev1.Node, first netip.Prefix) (int, error) {
	if a.cfg.MTU > 0 {
		return a.cfg.MTU, nil
	}
	var ip netip.Addr
	if ips := InternalIPs(self); len(ips) > 0 {
		ip = ips[0]
		for _, x := range ips {
			if x.Is4() == first.Addr().Is4() {
				ip = x
				break
			}
		}
	}
	name, mtu, err := a.cfg.Uplink(ip)
	if err != nil {
		return 0, fmt.Errorf("uplink MTU (InternalIP %v): %w", ip, err)
	}
	slog.Debug("uplink", "link", name, "mtu", mtu)
	return mtu, nil
}

func (a *Agent) syncRoutes(all []*corev1.Node) error {
	routes, skips := DesiredRoutes(a.cfg.NodeName, all)
	now := map[Skip]bool{}
	for _, s := range skips {
		now[s] = true
		if !a.skipped[s] {
			slog.Warn("no route to a node's pods", "node", s.Node, "reason", s.Reason)
		}
	}
	a.skipped = now
	if err := a.cfg.Router.Sync(routes); err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	return nil
}

func (a *Agent) syncMasq(all []*corev1.Node) error {
	if a.cfg.Masq == nil {
		return nil
	}
	cluster := a.cfg.ClusterCIDRs
	if len(cluster) == 0 {
		for _, n := range all {
			c, _ := PodCIDRs(n)
			cluster = append(cluster, c...)
		}
		slices.SortFunc(cluster, func(x, y netip.Prefix) int { return cmp.Compare(x.String(), y.String()) })
		cluster = slices.Compact(cluster)
	}
	if len(cluster) == 0 {
		return nil
	}
	if err := a.cfg.Masq.Apply(cluster, a.cfg.ServiceCIDRs); err != nil {
		return fmt.Errorf("masquerade: %w", err)
	}
	return nil
}

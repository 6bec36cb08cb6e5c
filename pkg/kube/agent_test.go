package kube

import (
	"context"
	"errors"
	"github.com/epair-cni/epair/internal/eventually"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeNet records what the agent asks of the routes and the masquerade.
type fakeNet struct {
	mu              sync.Mutex
	routes          []Route
	routeSyncs      int
	cluster, svc    []netip.Prefix
	masqApplies     int
	uplinkAskedWith []netip.Addr
}

func (f *fakeNet) Sync(d []Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes, f.routeSyncs = d, f.routeSyncs+1
	return nil
}

func (f *fakeNet) Apply(c, s []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cluster, f.svc, f.masqApplies = c, s, f.masqApplies+1
	return nil
}

func (f *fakeNet) Remove() error { return nil }

func (f *fakeNet) uplink(ip netip.Addr) (string, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uplinkAskedWith = append(f.uplinkAskedWith, ip)
	return "eth0", 1450, nil
}

func (f *fakeNet) snapshot() (routes []Route, syncs int, cluster []netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.routes, f.routeSyncs, f.cluster
}

type agentEnv struct {
	client *fake.Clientset
	net    *fakeNet
	health *Health
	conf   string
}

func startAgent(t *testing.T, client *fake.Clientset, mod func(*Config)) *agentEnv {
	t.Helper()
	e := &agentEnv{client: client, net: &fakeNet{}, health: &Health{}}
	dir := t.TempDir()
	e.conf = filepath.Join(dir, "10-epair.conflist")
	cfg := Config{
		NodeName: "self", Client: client.CoreV1(), ConfDir: dir, Socket: "/run/epair/epair.sock",
		Uplink: e.net.uplink, Router: e.net, Masq: e.net, Health: e.health,
		ServiceCIDRs: prefixes(t, "10.96.0.0/12"), Resync: time.Hour,
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return e
}

// watching waits until the informer watches the nodes: the fake clientset
// has no resource versions, so a change made between the informer's list
// and its watch would be lost.
func watching(t *testing.T, client *fake.Clientset) {
	t.Helper()
	eventually.True(t, "the informer's watch", func() bool {
		for _, a := range client.Actions() {
			if a.GetVerb() == "watch" && a.GetResource().Resource == "nodes" {
				return true
			}
		}
		return false
	})
}

func (e *agentEnv) routesAre(want ...Route) func() bool {
	return func() bool {
		got, syncs, _ := e.net.snapshot()
		return syncs > 0 && (reflect.DeepEqual(got, want) || len(got) == 0 && len(want) == 0)
	}
}

func TestAgentFollowsNodes(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(
		node("self", nil, "192.168.0.1"),
		node("n2", []string{"10.244.2.0/24"}, "192.168.0.2"),
		node("noip", []string{"10.244.9.0/24"}),
	)
	e := startAgent(t, client, nil)
	watching(t, client)
	nodes := client.CoreV1().Nodes()

	// Routes follow other nodes even before this node has its podCIDR.
	eventually.True(t, "route to n2", e.routesAre(rt("10.244.2.0/24", "192.168.0.2", "n2")))
	if _, err := os.Stat(e.conf); !os.IsNotExist(err) {
		t.Fatalf("conflist written without a podCIDR (stat: %v)", err)
	}
	if ok, _ := e.health.Ready(); ok {
		t.Fatal("ready without a conflist")
	}

	self := node("self", []string{"10.244.1.0/24", "fd00:244:1::/64"}, "192.168.0.1", "fd00::1")
	if _, err := nodes.Update(ctx, self, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "the conflist", func() bool { _, err := os.Stat(e.conf); return err == nil })
	b, _ := os.ReadFile(e.conf)
	want, _ := RenderConflist(ConflistParams{PodCIDRs: prefixes(t, "10.244.1.0/24", "fd00:244:1::/64"), MTU: 1450, Socket: "/run/epair/epair.sock"})
	if string(b) != string(want) {
		t.Errorf("conflist\n%s\nwant\n%s", b, want)
	}
	e.health.SetDatapathReady()
	// The agent marks the conflist written just after the file appears.
	eventually.True(t, "ready with datapath and conflist", func() bool { ok, _ := e.health.Ready(); return ok })
	e.net.mu.Lock()
	asked := e.net.uplinkAskedWith
	e.net.mu.Unlock()
	if len(asked) == 0 || asked[len(asked)-1] != netip.MustParseAddr("192.168.0.1") {
		t.Errorf("uplink asked with %v, want the InternalIP of the first podCIDR's family", asked)
	}

	// A new node, a changed InternalIP, a deleted node.
	if _, err := nodes.Create(ctx, node("n3", []string{"10.244.3.0/24"}, "192.168.0.3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.Update(ctx, node("n2", []string{"10.244.2.0/24"}, "192.168.0.22"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "n2 moved, n3 added", e.routesAre(
		rt("10.244.2.0/24", "192.168.0.22", "n2"), rt("10.244.3.0/24", "192.168.0.3", "n3")))
	if err := nodes.Delete(ctx, "n2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "n2's route gone", e.routesAre(rt("10.244.3.0/24", "192.168.0.3", "n3")))

	// Without --cluster-cidr, every node's podCIDRs are the cluster.
	_, _, cluster := e.net.snapshot()
	wantCluster := prefixes(t, "10.244.1.0/24", "10.244.3.0/24", "10.244.9.0/24", "fd00:244:1::/64")
	if !reflect.DeepEqual(cluster, wantCluster) {
		t.Errorf("masquerade cluster %v, want %v", cluster, wantCluster)
	}
}

func TestAgentKeepsConflistWhenPodCIDRGoes(t *testing.T) {
	client := fake.NewClientset(node("self", []string{"10.244.1.0/24"}, "192.168.0.1"))
	e := startAgent(t, client, func(c *Config) { c.MTU = 9000 })
	eventually.True(t, "the conflist", func() bool { _, err := os.Stat(e.conf); return err == nil })
	before, _ := os.ReadFile(e.conf)
	watching(t, client)
	_, syncs, _ := e.net.snapshot()
	if _, err := client.CoreV1().Nodes().Update(context.Background(), node("self", nil, "192.168.0.1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "a sync after the update", func() bool { _, s, _ := e.net.snapshot(); return s > syncs })
	after, err := os.ReadFile(e.conf)
	if err != nil || string(after) != string(before) {
		t.Errorf("conflist changed or removed: %v\n%s", err, after)
	}
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	if len(e.net.uplinkAskedWith) != 0 {
		t.Error("--mtu given, yet the uplink was asked")
	}
}

// An unreachable apiserver: the agent never syncs, so it never removes a
// route nor writes a conflist from an empty cache.
func TestAgentWaitsForTheAPIServer(t *testing.T) {
	client := fake.NewClientset(node("self", []string{"10.244.1.0/24"}, "192.168.0.1"))
	var mu sync.Mutex
	down, lists := true, 0
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		lists++
		return down, nil, errors.New("connection refused")
	})
	client.PrependWatchReactor("nodes", func(k8stesting.Action) (bool, watch.Interface, error) {
		mu.Lock()
		defer mu.Unlock()
		return down, nil, errors.New("connection refused")
	})
	e := startAgent(t, client, nil)
	eventually.True(t, "a retried list", func() bool { mu.Lock(); defer mu.Unlock(); return lists >= 2 })
	if _, syncs, _ := e.net.snapshot(); syncs != 0 {
		t.Fatalf("%d route syncs while the apiserver is unreachable", syncs)
	}
	if _, err := os.Stat(e.conf); !os.IsNotExist(err) {
		t.Fatalf("conflist written while the apiserver is unreachable (stat: %v)", err)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	eventually.True(t, "the conflist once the apiserver answers", func() bool { _, err := os.Stat(e.conf); return err == nil })
}

func TestNewAgentNeedsNodeName(t *testing.T) {
	_, err := NewAgent(Config{Client: fake.NewClientset().CoreV1(), Router: &fakeNet{}, Health: &Health{}, Uplink: (&fakeNet{}).uplink})
	if err == nil {
		t.Fatal("no error without a node name")
	}
}

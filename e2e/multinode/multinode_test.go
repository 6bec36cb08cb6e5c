// Package multinode runs the Kubernetes agent of `epair daemon --kubernetes`
// on several "nodes" at once: network namespaces joined by a bridge, each
// with its own epair daemon, routing table and nftables, and one fake
// clientset holding their Node objects. Pods made through libcni with the
// conflist each agent wrote reach each other across nodes.
package multinode

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/kube"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Address plan (private ranges no other suite uses).
const (
	fabricNet   = "10.231.0.0/24" // the nodes' "physical" network
	clusterCIDR = "10.232.0.0/16" // pods: node N has 10.232.N.0/24
	serviceCIDR = "10.233.0.0/16"
	externalIP  = "10.231.0.100" // a host on the fabric that is not a node
	uplinkMTU   = 1400           // the nodes' uplink: the pods must get it

	// IPv6, for the dual-stack test: node N is fd00:231::1N on the fabric
	// (a /64) and has pods in fd00:232:N::/64.
	clusterCIDR6 = "fd00:232::/32"
	serviceCIDR6 = "fd00:233::/112"
	externalIP6  = "fd00:231::100"
)

func nodeIP(i int) string   { return fmt.Sprintf("10.231.0.%d", 10+i) }
func podCIDR(i int) string  { return fmt.Sprintf("10.232.%d.0/24", i) }
func nodeName(i int) string { return fmt.Sprintf("node%d", i) }
func nodeIP6(i int) string  { return fmt.Sprintf("fd00:231::%d", 10+i) }
func podCIDR6(i int) string { return fmt.Sprintf("fd00:232:%d::/64", i) }

// node is one fake Kubernetes node.
type node struct {
	name    string
	ns      ns.NetNS
	h       *netlink.Handle
	d       *harness.Daemon
	cni     *harness.CNI
	confDir string
	health  *kube.Health
	newNS   func(*testing.T) ns.NetNS // for its pods
}

func (n *node) confPath() string { return filepath.Join(n.confDir, "10-epair.conflist") }

// cluster is the fabric, the nodes and the shared apiserver.
type cluster struct {
	fabric, external ns.NetNS
	fh               *netlink.Handle
	client           *fake.Clientset
	nodes            map[string]*node
	veths            int
	// dual: the nodes, pods and external host have IPv6 on, and every
	// namespace on the fabric an IPv6 address (a /64) as well.
	dual bool
}

func newCluster(t *testing.T) *cluster { return newClusterOf(t, false) }

// newDualCluster is newCluster for dual-stack nodes.
func newDualCluster(t *testing.T) *cluster { return newClusterOf(t, true) }

func newClusterOf(t *testing.T, dual bool) *cluster {
	t.Helper()
	harness.RequireRoot(t)
	c := &cluster{client: fake.NewClientset(), nodes: map[string]*node{}, dual: dual}
	c.fabric = harness.NewNS(t)
	c.fh = handle(t, c.fabric)
	harness.MustRun(t, c.fabric, "ip", "link", "add", "br0", "type", "bridge")
	harness.MustRun(t, c.fabric, "ip", "link", "set", "br0", "up")
	c.external = c.newNS(t)
	c.attach(t, c.external, externalIP, externalIP6)
	return c
}

// newNS makes a node's, pod's or host's namespace: with IPv6 on when dual.
func (c *cluster) newNS(t *testing.T) ns.NetNS {
	t.Helper()
	if c.dual {
		return harness.NewNSWithIPv6(t)
	}
	return harness.NewNS(t)
}

func handle(t *testing.T, n ns.NetNS) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(netns.NsHandle(n.Fd()))
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", n.Path(), err)
	}
	t.Cleanup(h.Close)
	return h
}

// attach plugs n into the bridge as eth0 with ip/24 and the uplink MTU, and
// in a dual-stack cluster ip6/64 too (nodad: usable at once).
func (c *cluster) attach(t *testing.T, n ns.NetNS, ip, ip6 string) {
	t.Helper()
	c.veths++
	br, err := c.fh.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	v := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("v%d", c.veths), MasterIndex: br.Attrs().Index, MTU: uplinkMTU},
		PeerName:  "eth0", PeerNamespace: netlink.NsFd(n.Fd()), PeerMTU: uplinkMTU,
	}
	if err := c.fh.LinkAdd(v); err != nil {
		t.Fatalf("veth into %s: %v", n.Path(), err)
	}
	harness.MustRun(t, c.fabric, "ip", "link", "set", v.Name, "up")
	harness.MustRun(t, n, "ip", "addr", "add", ip+"/24", "dev", "eth0")
	if c.dual {
		harness.MustRun(t, n, "ip", "addr", "add", ip6+"/64", "dev", "eth0", "nodad")
	}
	harness.MustRun(t, n, "ip", "link", "set", "eth0", "up")
}

// addNode makes a node namespace on the fabric with a daemon and an agent.
func (c *cluster) addNode(t *testing.T, i int) *node {
	t.Helper()
	n := &node{name: nodeName(i), ns: c.newNS(t), confDir: t.TempDir(), health: &kube.Health{}, newNS: c.newNS}
	n.h = handle(t, n.ns)
	c.attach(t, n.ns, nodeIP(i), nodeIP6(i))
	clusterCIDRs := []netip.Prefix{netip.MustParsePrefix(clusterCIDR)}
	serviceCIDRs := []netip.Prefix{netip.MustParsePrefix(serviceCIDR)}
	if c.dual {
		clusterCIDRs = append(clusterCIDRs, netip.MustParsePrefix(clusterCIDR6))
		serviceCIDRs = append(serviceCIDRs, netip.MustParsePrefix(serviceCIDR6))
	}
	n.d = harness.StartDaemonIn(t, n.ns)
	n.health.SetDatapathReady() // StartDaemonIn returns once it answers
	n.cni = harness.NewCNI(t, n.ns)
	agent, err := kube.NewAgent(kube.Config{
		NodeName: n.name, Client: c.client.CoreV1(),
		ConfDir: n.confDir, Socket: n.d.Socket, DataDir: t.TempDir(),
		Uplink:       func(ip netip.Addr) (string, int, error) { return kube.UplinkMTU(n.h, ip) },
		ClusterCIDRs: clusterCIDRs,
		ServiceCIDRs: serviceCIDRs,
		Router:       &kube.NetlinkRouter{H: n.h},
		Masq:         &kube.NftMasq{NetNSFd: int(n.ns.Fd())},
		Health:       n.health,
		Resync:       2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", n.name, err)
		}
	})
	c.nodes[n.name] = n
	return n
}

// nodeObject is a Node with podCIDR (none when "") and InternalIPs.
func nodeObject(name, cidr string, ips ...string) *corev1.Node {
	o := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if cidr != "" {
		o.Spec.PodCIDR, o.Spec.PodCIDRs = cidr, []string{cidr}
	}
	return withAddresses(o, ips...)
}

// dualNodeObject is a Node with the podCIDRs of both families (IPv4 first,
// as kube-controller-manager assigns them) and both InternalIPs.
func dualNodeObject(i int) *corev1.Node {
	o := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(i)}}
	o.Spec.PodCIDR, o.Spec.PodCIDRs = podCIDR(i), []string{podCIDR(i), podCIDR6(i)}
	return withAddresses(o, nodeIP(i), nodeIP6(i))
}

func withAddresses(o *corev1.Node, ips ...string) *corev1.Node {
	o.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: o.Name}}
	for _, ip := range ips {
		o.Status.Addresses = append(o.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return o
}

func (c *cluster) create(t *testing.T, o *corev1.Node) {
	t.Helper()
	if _, err := c.client.CoreV1().Nodes().Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) update(t *testing.T, o *corev1.Node) {
	t.Helper()
	if _, err := c.client.CoreV1().Nodes().Update(context.Background(), o, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// watching waits until every agent's informer watches: the fake clientset
// has no resource versions, so a change between an informer's list and its
// watch would be lost.
func (c *cluster) watching(t *testing.T) {
	t.Helper()
	eventually(t, "every agent's watch", func() error {
		n := 0
		for _, a := range c.client.Actions() {
			if a.GetVerb() == "watch" && a.GetResource().Resource == "nodes" {
				n++
			}
		}
		if n < len(c.nodes) {
			return fmt.Errorf("%d of %d watching", n, len(c.nodes))
		}
		return nil
	})
}

// eventually waits up to 15 s: a node agent's watch and route sync on a
// loaded 2-core machine.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	harness.Eventually(t, 15*time.Second, what, cond)
}

// routes returns the node's main-table IPv4 routes as "dst via gw proto N".
func (n *node) routes(t *testing.T) []string {
	t.Helper()
	return n.routesOf(t, netlink.FAMILY_V4)
}

func (n *node) routesOf(t *testing.T, family int) []string {
	t.Helper()
	rs, err := n.h.RouteList(nil, family)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Dst == nil || r.Gw == nil {
			continue
		}
		out = append(out, fmt.Sprintf("%s via %s proto %d", r.Dst, r.Gw, r.Protocol))
	}
	slices.Sort(out)
	return out
}

// routesAre waits until the node's IPv4 gateway routes are exactly want.
func (n *node) routesAre(t *testing.T, want ...string) {
	t.Helper()
	n.routesOfAre(t, netlink.FAMILY_V4, want...)
}

// routes6Are waits until the node's IPv6 gateway routes are exactly want.
func (n *node) routes6Are(t *testing.T, want ...string) {
	t.Helper()
	n.routesOfAre(t, netlink.FAMILY_V6, want...)
}

func (n *node) routesOfAre(t *testing.T, family int, want ...string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, n.name+"'s routes", func() error {
		if got := n.routesOf(t, family); !slices.Equal(got, want) {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		return nil
	})
}

func epairRoute(i int) string {
	return fmt.Sprintf("%s via %s proto %d", podCIDR(i), nodeIP(i), kube.RouteProtocol)
}

func epairRoute6(i int) string {
	return fmt.Sprintf("%s via %s proto %d", podCIDR6(i), nodeIP6(i), kube.RouteProtocol)
}

// pod is one pod made through libcni with its node's conflist: ip is its
// IPv4 address, ip6 its IPv6 one ("" when it has none).
type pod struct {
	ns      ns.NetNS
	ip, ip6 string
}

var ids atomic.Int64

func (n *node) pod(t *testing.T) *pod {
	t.Helper()
	list, err := libcni.ConfListFromFile(n.confPath())
	if err != nil {
		t.Fatalf("%s's conflist: %v", n.name, err)
	}
	p := &pod{ns: n.newNS(t)}
	rt := harness.RuntimeConf(fmt.Sprintf("mn-%d-%d", os.Getpid(), ids.Add(1)), p.ns, "eth0")
	res, err := n.cni.Add(list, rt)
	if err != nil {
		t.Fatalf("ADD on %s: %v", n.name, err)
	}
	t.Cleanup(func() {
		if err := n.cni.Del(list, rt); err != nil {
			t.Errorf("DEL on %s: %v", n.name, err)
		}
	})
	for _, ipc := range res.IPs {
		if ipc.Address.IP.To4() != nil {
			p.ip = ipc.Address.IP.String()
		} else {
			p.ip6 = ipc.Address.IP.String()
		}
	}
	return p
}

func ping(t *testing.T, from *pod, to string) {
	t.Helper()
	if out, err := harness.Run(t, from.ns, "ping", "-c", "2", "-W", "2", to); err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", to, from.ip, err, out)
	}
}

// sourceSeen connects from one namespace to a listener in another and
// returns the client address the listener saw.
func sourceSeen(t *testing.T, from, to ns.NetNS, toIP string) string {
	t.Helper()
	var ln net.Listener
	if err := to.Do(func(ns.NetNS) (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(toIP, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		seen <- c.RemoteAddr().(*net.TCPAddr).IP.String()
	}()
	if err := from.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		t.Fatalf("connect to %s: %v", ln.Addr(), err)
	}
	select {
	case s := <-seen:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no connection arrived")
		return ""
	}
}

func TestMultiNode(t *testing.T) {
	c := newCluster(t)
	for i := 1; i <= 3; i++ {
		c.create(t, nodeObject(nodeName(i), podCIDR(i), nodeIP(i)))
	}
	c.create(t, nodeObject("node4", "", nodeIP(4))) // no podCIDR yet
	c.create(t, nodeObject("node5", podCIDR(5)))    // no InternalIP: skipped
	n1, n2, n3, n4 := c.addNode(t, 1), c.addNode(t, 2), c.addNode(t, 3), c.addNode(t, 4)
	// Someone else's route on node1, which epair must leave alone.
	foreign := "10.240.0.0/24 via " + nodeIP(3) + " proto 4"
	harness.MustRun(t, n1.ns, "ip", "route", "add", "10.240.0.0/24", "via", nodeIP(3), "proto", "static")
	c.watching(t)

	for _, n := range []*node{n1, n2, n3} {
		eventually(t, n.name+" ready", func() error {
			if ok, why := n.health.Ready(); !ok {
				return fmt.Errorf("%s", why)
			}
			return nil
		})
	}
	t.Run("routes", func(t *testing.T) {
		n1.routesAre(t, epairRoute(2), epairRoute(3), foreign)
		n2.routesAre(t, epairRoute(1), epairRoute(3))
		n3.routesAre(t, epairRoute(1), epairRoute(2))
		n4.routesAre(t, epairRoute(1), epairRoute(2), epairRoute(3))
	})
	t.Run("conflist", func(t *testing.T) {
		b, err := os.ReadFile(n1.confPath())
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"subnet": "` + podCIDR(1) + `"`, fmt.Sprintf(`"mtu": %d`, uplinkMTU), `"socket": "` + n1.d.Socket + `"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("conflist lacks %s:\n%s", want, b)
			}
		}
		if _, err := os.Stat(n4.confPath()); !os.IsNotExist(err) {
			t.Errorf("node4 has a conflist without a podCIDR (stat: %v)", err)
		}
		if ok, _ := n4.health.Ready(); ok {
			t.Error("node4 ready without a podCIDR")
		}
	})

	p1, p2, p3 := n1.pod(t), n2.pod(t), n3.pod(t)
	t.Run("pod MTU is the uplink's", func(t *testing.T) {
		out := harness.MustRun(t, p1.ns, "ip", "-o", "link", "show", "eth0")
		if !strings.Contains(out, fmt.Sprintf("mtu %d ", uplinkMTU)) {
			t.Errorf("pod eth0: %s", out)
		}
	})
	t.Run("pods reach pods on other nodes", func(t *testing.T) {
		ping(t, p1, p2.ip)
		ping(t, p1, p3.ip)
		ping(t, p3, p2.ip)
	})
	t.Run("pod to pod keeps the pod address", func(t *testing.T) {
		if got := sourceSeen(t, p1.ns, p2.ns, p2.ip); got != p1.ip {
			t.Errorf("pod2 saw %s, want pod1's %s", got, p1.ip)
		}
	})
	t.Run("pod to outside is masqueraded", func(t *testing.T) {
		if got := sourceSeen(t, p1.ns, c.external, externalIP); got != nodeIP(1) {
			t.Errorf("external host saw %s, want node1's %s", got, nodeIP(1))
		}
		out := harness.MustRun(t, n1.ns, "nft", "list", "table", "inet", kube.MasqTable)
		if !strings.Contains(out, "masquerade") || !strings.Contains(out, clusterCIDR) || !strings.Contains(out, serviceCIDR) {
			t.Errorf("table inet %s:\n%s", kube.MasqTable, out)
		}
	})
	t.Run("a podCIDR set late", func(t *testing.T) {
		c.update(t, nodeObject("node4", podCIDR(4), nodeIP(4)))
		eventually(t, "node4's conflist", func() error { _, err := os.Stat(n4.confPath()); return err })
		n1.routesAre(t, epairRoute(2), epairRoute(3), epairRoute(4), foreign)
		p4 := n4.pod(t)
		ping(t, p1, p4.ip)
	})
	t.Run("a deleted node loses its route, and only that", func(t *testing.T) {
		if err := c.client.CoreV1().Nodes().Delete(context.Background(), "node3", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n1.routesAre(t, epairRoute(2), epairRoute(4), foreign)
		n2.routesAre(t, epairRoute(1), epairRoute(4))
	})
	t.Run("a changed InternalIP moves the route", func(t *testing.T) {
		moved := "10.231.0.22"
		// Deleting the old (primary) address below must keep the new one.
		harness.MustRun(t, n2.ns, "sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1")
		harness.MustRun(t, n2.ns, "ip", "addr", "add", moved+"/24", "dev", "eth0")
		c.update(t, nodeObject("node2", podCIDR(2), moved))
		want := fmt.Sprintf("%s via %s proto %d", podCIDR(2), moved, kube.RouteProtocol)
		n1.routesAre(t, want, epairRoute(4), foreign)
		harness.MustRun(t, n2.ns, "ip", "addr", "del", nodeIP(2)+"/24", "dev", "eth0")
		ping(t, p1, p2.ip)
	})
	t.Run("epair routes carry epair's protocol only", func(t *testing.T) {
		epairRoutesAre(t, n1, 2) // what the changes above left: node2 and node4
	})
}

// TestDualStack runs two dual-stack nodes: IPv4 and IPv6 InternalIPs and
// podCIDRs. Each pod gets an address of both families, each node routes
// the other's IPv6 podCIDR via its IPv6 InternalIP, and pods reach each
// other over IPv6 with their own addresses.
func TestDualStack(t *testing.T) {
	c := newDualCluster(t)
	for i := 1; i <= 2; i++ {
		c.create(t, dualNodeObject(i))
	}
	n1, n2 := c.addNode(t, 1), c.addNode(t, 2)
	c.watching(t)
	for _, n := range []*node{n1, n2} {
		eventually(t, n.name+" ready", func() error {
			if ok, why := n.health.Ready(); !ok {
				return fmt.Errorf("%s", why)
			}
			return nil
		})
	}
	t.Run("routes", func(t *testing.T) {
		n1.routesAre(t, epairRoute(2))
		n2.routesAre(t, epairRoute(1))
		n1.routes6Are(t, epairRoute6(2))
		n2.routes6Are(t, epairRoute6(1))
	})
	t.Run("conflist has both ranges", func(t *testing.T) {
		b, err := os.ReadFile(n1.confPath())
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`"subnet": "` + podCIDR(1) + `"`, `"subnet": "` + podCIDR6(1) + `"`,
			`"dst": "0.0.0.0/0"`, `"dst": "::/0"`, fmt.Sprintf(`"mtu": %d`, uplinkMTU),
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("conflist lacks %s:\n%s", want, b)
			}
		}
	})

	p1, p2 := n1.pod(t), n2.pod(t)
	t.Run("pods get both families", func(t *testing.T) {
		for i, p := range []*pod{p1, p2} {
			c4, c6 := netip.MustParsePrefix(podCIDR(i+1)), netip.MustParsePrefix(podCIDR6(i+1))
			a4, err4 := netip.ParseAddr(p.ip)
			a6, err6 := netip.ParseAddr(p.ip6)
			if err4 != nil || err6 != nil || !c4.Contains(a4) || !c6.Contains(a6) {
				t.Errorf("pod on node%d has %q and %q, want one in %s and one in %s", i+1, p.ip, p.ip6, c4, c6)
			}
		}
	})
	t.Run("pods reach pods on other nodes over IPv6", func(t *testing.T) {
		ping6(t, p1, p2.ip6)
		ping6(t, p2, p1.ip6)
		ping(t, p1, p2.ip) // and still over IPv4
	})
	t.Run("pod to pod keeps the pod's IPv6 address", func(t *testing.T) {
		if got := sourceSeen(t, p1.ns, p2.ns, p2.ip6); got != p1.ip6 {
			t.Errorf("pod2 saw %s, want pod1's %s", got, p1.ip6)
		}
	})
	t.Run("pod to outside over IPv6 is masqueraded", func(t *testing.T) {
		if got := sourceSeen(t, p1.ns, c.external, externalIP6); got != nodeIP6(1) {
			t.Errorf("external host saw %s, want node1's %s", got, nodeIP6(1))
		}
	})
	t.Run("epair routes carry epair's protocol only", func(t *testing.T) {
		epairRoutesAre(t, n1, 2) // to node2, one per family
	})
}

// ping6 pings over IPv6, retrying for a while: the first neighbour
// discoveries on a fresh fabric can take a moment.
func ping6(t *testing.T, from *pod, to string) {
	t.Helper()
	var out string
	eventually(t, "ping -6 "+to+" from "+from.ip6, func() (err error) {
		out, err = harness.Run(t, from.ns, "ping", "-6", "-c", "1", "-W", "2", to)
		if err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})
}

// epairRoutesAre checks how many routes of epair's protocol the node has.
func epairRoutesAre(t *testing.T, n *node, want int) {
	t.Helper()
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{Protocol: kube.RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != want {
		t.Errorf("%s has %d routes of protocol %d, want %d: %v", n.name, len(rs), kube.RouteProtocol, want, rs)
	}
}

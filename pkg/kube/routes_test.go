package kube

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/epair-cni/epair/pkg/nldump"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// node makes a Node with podCIDRs and InternalIPs (and one ExternalIP, which
// must never be used).
func node(name string, cidrs []string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "203.0.113.9"}, {Type: corev1.NodeHostName, Address: name}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

func rt(dst, via, n string) Route {
	return Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(via), Node: n}
}

func TestDesiredRoutes(t *testing.T) {
	legacy := node("legacy", nil, "192.168.0.6")
	legacy.Spec.PodCIDR = "10.244.6.0/24"
	nodes := []*corev1.Node{
		node("self", []string{"10.244.0.0/24"}, "192.168.0.1"),
		node("b", []string{"10.244.2.0/24"}, "192.168.0.2"),
		node("a", []string{"10.244.1.0/24", "fd00:244:1::/64"}, "192.168.0.11", "fd00::11"),
		node("waiting", nil, "192.168.0.4"),
		node("noip", []string{"10.244.5.0/24"}),
		node("v4only", []string{"10.244.7.0/24", "fd00:244:7::/64"}, "192.168.0.7"),
		node("garbage", []string{"not-a-cidr"}, "192.168.0.8"),
		legacy,
	}
	routes, skips := DesiredRoutes("self", nodes)
	want := []Route{
		rt("10.244.1.0/24", "192.168.0.11", "a"),
		rt("10.244.2.0/24", "192.168.0.2", "b"),
		rt("10.244.6.0/24", "192.168.0.6", "legacy"),
		rt("10.244.7.0/24", "192.168.0.7", "v4only"),
		rt("fd00:244:1::/64", "fd00::11", "a"),
	}
	if !reflect.DeepEqual(routes, want) {
		t.Errorf("routes\n got %v\nwant %v", routes, want)
	}
	wantSkips := []Skip{
		{"noip", "no InternalIP"},
		{"v4only", "no InternalIP of the family of podCIDR fd00:244:7::/64"},
		{"garbage", `podCIDR "not-a-cidr" is not a CIDR`},
	}
	if !reflect.DeepEqual(skips, wantSkips) {
		t.Errorf("skips\n got %v\nwant %v", skips, wantSkips)
	}
}

func TestDesiredRoutesAlone(t *testing.T) {
	routes, skips := DesiredRoutes("self", []*corev1.Node{node("self", []string{"10.244.0.0/24"}, "192.168.0.1")})
	if len(routes) != 0 || len(skips) != 0 {
		t.Errorf("single node: routes %v skips %v", routes, skips)
	}
}

// fakeTable answers NetlinkRouter's listings in turn from two scripts, one
// for epair's own routes (filtered by protocol), one for the foreign-route
// check (filtered by destination); past a script's end it lists nothing.
// It records what is replaced and deleted.
type fakeTable struct {
	ours, byDst []listing
	replaced    []netlink.Route
	deleted     []netlink.Route
}

type listing struct {
	routes []netlink.Route
	err    error
}

func (f *fakeTable) RouteListFiltered(_ int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	script := &f.byDst
	if mask&netlink.RT_FILTER_PROTOCOL != 0 {
		script = &f.ours
	}
	if len(*script) == 0 {
		return nil, nil
	}
	l := (*script)[0]
	*script = (*script)[1:]
	return l.routes, l.err
}

func (f *fakeTable) RouteReplace(r *netlink.Route) error {
	f.replaced = append(f.replaced, *r)
	return nil
}

func (f *fakeTable) RouteDel(r *netlink.Route) error {
	f.deleted = append(f.deleted, *r)
	return nil
}

var (
	desired = []Route{rt("10.244.1.0/24", "192.168.0.11", "a")}
	// someone else's route for the desired podCIDR, say a BGP daemon's
	bgpRoute = netlink.Route{Dst: prefixNet(netip.MustParsePrefix("10.244.1.0/24")), Protocol: unix.RTPROT_BGP}
	// epair's route to a node that is gone
	staleRoute = netlink.Route{Dst: prefixNet(netip.MustParsePrefix("10.244.9.0/24")), Protocol: RouteProtocol}
)

// TestSyncFailedForeignCheckReplacesNothing: when the listing that tells
// whether the desired podCIDR is someone else's route fails (here: stays
// interrupted), Sync must not replace it but return the error.
func TestSyncFailedForeignCheckReplacesNothing(t *testing.T) {
	for _, err := range []error{unix.ENOBUFS, netlink.ErrDumpInterrupted} {
		f := &fakeTable{}
		for range nldump.Attempts {
			f.byDst = append(f.byDst, listing{[]netlink.Route{}, err})
		}
		got := (&NetlinkRouter{t: f}).Sync(desired)
		if !errors.Is(got, err) {
			t.Errorf("%v: Sync returned %v, want the listing's error", err, got)
		}
		if len(f.replaced) != 0 {
			t.Errorf("%v: replaced %v without knowing whether it was someone else's", err, f.replaced)
		}
	}
}

// TestSyncRetriesInterruptedForeignCheck: an interrupted listing is asked
// again, and the whole one shows the route is someone else's.
func TestSyncRetriesInterruptedForeignCheck(t *testing.T) {
	f := &fakeTable{byDst: []listing{{nil, netlink.ErrDumpInterrupted}, {[]netlink.Route{bgpRoute}, nil}}}
	if err := (&NetlinkRouter{t: f}).Sync(desired); err != nil {
		t.Fatal(err)
	}
	if len(f.replaced) != 0 {
		t.Errorf("replaced someone else's route: %v", f.replaced)
	}
}

// TestSyncRetriesInterruptedListOfOurs: an interrupted listing of epair's
// routes is asked again; a failed one deletes nothing.
func TestSyncRetriesInterruptedListOfOurs(t *testing.T) {
	f := &fakeTable{ours: []listing{{nil, netlink.ErrDumpInterrupted}, {[]netlink.Route{staleRoute}, nil}}}
	if err := (&NetlinkRouter{t: f}).Sync(desired); err != nil {
		t.Fatal(err)
	}
	if len(f.replaced) != 1 || len(f.deleted) != 1 {
		t.Errorf("replaced %v, deleted %v; want the desired route and the stale one", f.replaced, f.deleted)
	}

	f = &fakeTable{ours: []listing{{nil, unix.ENOBUFS}}}
	if err := (&NetlinkRouter{t: f}).Sync(nil); !errors.Is(err, unix.ENOBUFS) {
		t.Errorf("Sync returned %v, want ENOBUFS", err)
	}
	if len(f.replaced)+len(f.deleted) != 0 {
		t.Errorf("acted on a failed listing: replaced %v, deleted %v", f.replaced, f.deleted)
	}
}

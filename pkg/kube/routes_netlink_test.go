package kube

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/internal/testns"
	"github.com/vishvananda/netlink"
)

// routerNS makes a namespace with a link (a veth: dummy may not be built)
// holding 192.0.2.1/24 and
// returns a handle into it; it is removed at cleanup.
func routerNS(t *testing.T) *netlink.Handle {
	t.Helper()
	n, h := testns.New(t)
	err := n.Do(func(ns.NetNS) error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0", MTU: 1450}, PeerName: "up1"}); err != nil {
			return err
		}
		if p, err := netlink.LinkByName("up1"); err != nil || netlink.LinkSetUp(p) != nil {
			return fmt.Errorf("veth peer: %v", err)
		}
		l, err := netlink.LinkByName("up0")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func routeSet(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	rs, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Gw != nil {
			out = append(out, r.Dst.String()+" via "+r.Gw.String()+" proto "+r.Protocol.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestNetlinkRouterLeavesOthersAlone(t *testing.T) {
	h := routerNS(t)
	// Someone else's route to a podCIDR epair would route, and another one.
	for _, dst := range []string{"10.244.9.0/24", "10.99.0.0/16"} {
		_, n, _ := net.ParseCIDR(dst)
		if err := h.RouteAdd(&netlink.Route{Dst: n, Gw: net.IPv4(192, 0, 2, 254), Protocol: 4}); err != nil {
			t.Fatal(err)
		}
	}
	r := &NetlinkRouter{H: h}
	if err := r.Sync([]Route{rt("10.244.2.0/24", "192.0.2.2", "n2"), rt("10.244.9.0/24", "192.0.2.9", "n9")}); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.244.2.0/24 via 192.0.2.2 proto 101", "10.244.9.0/24 via 192.0.2.254 proto static", "10.99.0.0/16 via 192.0.2.254 proto static"}
	if got := routeSet(t, h); !slices.Equal(got, want) {
		t.Errorf("after sync\n got %q\nwant %q", got, want)
	}
	// Moving and then dropping every node removes only epair's routes.
	if err := r.Sync([]Route{rt("10.244.2.0/24", "192.0.2.22", "n2")}); err != nil {
		t.Fatal(err)
	}
	if got := routeSet(t, h); !slices.Contains(got, "10.244.2.0/24 via 192.0.2.22 proto 101") {
		t.Errorf("route not moved: %q", got)
	}
	if err := r.Sync(nil); err != nil {
		t.Fatal(err)
	}
	if got := routeSet(t, h); !slices.Equal(got, want[1:]) {
		t.Errorf("after sync(nil)\n got %q\nwant %q", got, want[1:])
	}
	if name, mtu, err := UplinkMTU(h, netip.MustParseAddr("192.0.2.1")); err != nil || name != "up0" || mtu != 1450 {
		t.Errorf("uplink %s %d %v, want up0 1450", name, mtu, err)
	}
}

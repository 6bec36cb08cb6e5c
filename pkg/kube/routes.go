package kube

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/epair-cni/epair/pkg/nldump"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// RouteProtocol tags every route epair adds (`ip route ... proto 101`), and
// epair lists, replaces and deletes only routes with this tag: a route
// someone else added is never touched. 101 (0x65) is free in the kernel's
// rtnetlink.h and iproute2's rt_protos (taken: 0-18, 42 babel, 99 openr,
// 186-192 bgp/isis/ospf/rip/eigrp); `echo "101 epair" >
// /etc/iproute2/rt_protos.d/epair.conf` makes `ip route` print its name.
const RouteProtocol netlink.RouteProtocol = 101

// Route is one route to another node's pods.
type Route struct {
	Dst  netip.Prefix // the node's podCIDR
	Via  netip.Addr   // the node's InternalIP of the same family
	Node string
}

func (r Route) String() string { return fmt.Sprintf("%v via %v (%s)", r.Dst, r.Via, r.Node) }

// Skip is a node (or one of its podCIDRs) that gets no route, and why.
type Skip struct {
	Node, Reason string
}

// DesiredRoutes computes one route per podCIDR of every node but self, via
// that node's InternalIP of the podCIDR's family. Nodes without a podCIDR
// get none silently (they are waiting for one, like self); nodes without a
// usable InternalIP are returned as skips, to be warned about.
func DesiredRoutes(self string, nodes []*corev1.Node) ([]Route, []Skip) {
	var routes []Route
	var skips []Skip
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		cidrs, bad := PodCIDRs(n)
		for _, b := range bad {
			skips = append(skips, Skip{n.Name, fmt.Sprintf("podCIDR %q is not a CIDR", b)})
		}
		if len(cidrs) == 0 {
			continue
		}
		ips := InternalIPs(n)
		if len(ips) == 0 {
			skips = append(skips, Skip{n.Name, "no InternalIP"})
			continue
		}
		for _, c := range cidrs {
			i := slices.IndexFunc(ips, func(a netip.Addr) bool { return a.Is4() == c.Addr().Is4() })
			if i < 0 {
				skips = append(skips, Skip{n.Name, fmt.Sprintf("no InternalIP of the family of podCIDR %v", c)})
				continue
			}
			routes = append(routes, Route{Dst: c, Via: ips[i], Node: n.Name})
		}
	}
	slices.SortFunc(routes, func(a, b Route) int { return strings.Compare(a.Dst.String(), b.Dst.String()) })
	return routes, skips
}

// PodCIDRs returns the node's spec.podCIDRs (or the older spec.podCIDR),
// masked, and the entries that do not parse.
func PodCIDRs(n *corev1.Node) (cidrs []netip.Prefix, bad []string) {
	list := n.Spec.PodCIDRs
	if len(list) == 0 && n.Spec.PodCIDR != "" {
		list = []string{n.Spec.PodCIDR}
	}
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			bad = append(bad, s)
			continue
		}
		cidrs = append(cidrs, p.Masked())
	}
	return cidrs, bad
}

// InternalIPs returns the node's InternalIP addresses in status order.
func InternalIPs(n *corev1.Node) []netip.Addr {
	var ips []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	return ips
}

// Router makes the node's routes to other nodes' pods what is desired.
type Router interface {
	Sync(desired []Route) error
}

// NetlinkRouter keeps the routes in the main table of the namespace its
// handle belongs to.
type NetlinkRouter struct {
	H *netlink.Handle
	t routeTable // H if nil; tests fake it
}

// routeTable is what NetlinkRouter needs of a netlink handle.
type routeTable interface {
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

func (r *NetlinkRouter) table() routeTable {
	if r.t != nil {
		return r.t
	}
	return r.H
}

// list dumps the routes of the main table matching filter, retrying an
// interrupted dump: every decision of Sync rests on a whole listing.
func (r *NetlinkRouter) list(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	filter.Table = unix.RT_TABLE_MAIN
	return nldump.Retry(func() ([]netlink.Route, error) {
		return r.table().RouteListFiltered(family, filter, mask|netlink.RT_FILTER_TABLE)
	})
}

// Sync replaces every desired route whose gateway differs and deletes
// every route of epair's protocol that is no longer desired. A desired
// destination already routed by someone else is left to them, with a
// warning. Errors of single routes do not stop the others; a listing that
// fails changes nothing it would have decided, and the caller retries.
func (r *NetlinkRouter) Sync(desired []Route) error {
	have, err := r.list(netlink.FAMILY_ALL, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list epair routes: %w", err)
	}
	ours := map[netip.Prefix]netlink.Route{}
	for _, rt := range have {
		if p, ok := prefixOf(rt.Dst); ok {
			ours[p] = rt
		}
	}
	var errs []error
	want := map[netip.Prefix]bool{}
	for _, d := range desired {
		want[d.Dst] = true
		if err := r.ensure(d, ours); err != nil {
			errs = append(errs, err)
		}
	}
	for p, rt := range ours {
		if want[p] {
			continue
		}
		if err := r.table().RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %v: %w", p, err))
			continue
		}
		slog.Info("deleted route to a gone node's pods", "dst", p, "via", rt.Gw)
	}
	return errors.Join(errs...)
}

// ensure makes the route d exist, tagged as epair's.
func (r *NetlinkRouter) ensure(d Route, ours map[netip.Prefix]netlink.Route) error {
	if rt, ok := ours[d.Dst]; ok && addrOf(rt.Gw) == d.Via {
		return nil
	}
	if _, ok := ours[d.Dst]; !ok {
		owner, ok, err := r.foreign(d.Dst)
		if err != nil {
			return fmt.Errorf("route %v: %w", d, err)
		}
		if ok {
			slog.Warn("not routing a node's podCIDR: another route for it exists",
				"node", d.Node, "dst", d.Dst, "protocol", owner)
			return nil
		}
	}
	rt := &netlink.Route{
		Dst:      prefixNet(d.Dst),
		Gw:       net.IP(d.Via.AsSlice()),
		Protocol: RouteProtocol,
		Table:    unix.RT_TABLE_MAIN,
	}
	if err := r.table().RouteReplace(rt); err != nil {
		return fmt.Errorf("route %v: %w", d, err)
	}
	slog.Info("routed a node's pods", "node", d.Node, "dst", d.Dst, "via", d.Via)
	return nil
}

// foreign reports a route for exactly dst in the main table that epair did
// not add: replacing it would destroy it. When the listing fails, so does
// foreign: nobody knows then whether the route is someone else's.
func (r *NetlinkRouter) foreign(dst netip.Prefix) (netlink.RouteProtocol, bool, error) {
	rts, err := r.list(familyOf(dst), &netlink.Route{Dst: prefixNet(dst)}, netlink.RT_FILTER_DST)
	if err != nil {
		return 0, false, fmt.Errorf("list routes to %v: %w", dst, err)
	}
	if len(rts) == 0 {
		return 0, false, nil
	}
	return rts[0].Protocol, rts[0].Protocol != RouteProtocol, nil
}

func familyOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a, bits).Masked(), true
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

package kube

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/epair-cni/epair/pkg/nldump"
	"github.com/vishvananda/netlink"
)

// UplinkMTU returns the name and MTU of the node's uplink: the link holding
// ip (the node's InternalIP), or else the link of the default route of ip's
// family. It looks in the namespace of h. Interrupted listings are asked
// again; one that stays interrupted is an error, not a guess from a part.
func UplinkMTU(h *netlink.Handle, ip netip.Addr) (string, int, error) {
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(nil, fam) })
	if err != nil {
		return "", 0, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if addrOf(a.IP) == ip {
			return linkMTU(h, a.LinkIndex)
		}
	}
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return h.RouteList(nil, fam) })
	if err != nil {
		return "", 0, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if p, ok := prefixOf(r.Dst); (!ok || p.Bits() == 0) && r.LinkIndex > 0 {
			return linkMTU(h, r.LinkIndex)
		}
	}
	return "", 0, errors.New("no link holds the node's InternalIP and there is no default route")
}

func linkMTU(h *netlink.Handle, index int) (string, int, error) {
	l, err := h.LinkByIndex(index)
	if err != nil {
		return "", 0, fmt.Errorf("link %d: %w", index, err)
	}
	return l.Attrs().Name, l.Attrs().MTU, nil
}

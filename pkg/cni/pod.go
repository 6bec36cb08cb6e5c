package cni

import (
	"fmt"
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
)

// setupPod puts the addresses and routes on the a end inside the pod.
//
// routed: like ptp, the address keeps the IPAM prefix but its subnet route
// is replaced by a link route to the gateway and the subnet via the
// gateway, so every packet, even to a neighbour, goes through the host.
func setupPod(conf *NetConf, netns string, index int, res *current.Result) error {
	return ns.WithNetNSPath(netns, func(ns.NetNS) error {
		l, err := netlink.LinkByIndex(index)
		if err != nil {
			return fmt.Errorf("find the a end (ifindex %d): %w", index, err)
		}
		if err := enableIPv6(l.Attrs().Name, res.IPs); err != nil {
			return err
		}
		for _, ipc := range res.IPs {
			if err := addAddr(l, &ipc.Address); err != nil {
				return err
			}
			if conf.Mode == ModeRouted {
				if err := pointToPoint(l, ipc); err != nil {
					return err
				}
			}
		}
		return addRoutes(l, res)
	})
}

// enableIPv6 makes sure IPv6 is on for the interface when it gets an IPv6
// address (some runtimes create namespaces with it off by default).
func enableIPv6(name string, ips []*current.IPConfig) error {
	for _, ipc := range ips {
		if ipc.Address.IP.To4() == nil {
			_, err := sysctl.Sysctl(fmt.Sprintf("net/ipv6/conf/%s/disable_ipv6", name), "0")
			if err != nil {
				return fmt.Errorf("enable IPv6 on %s: %w", name, err)
			}
			return nil
		}
	}
	return nil
}

func pointToPoint(l netlink.Link, ipc *current.IPConfig) error {
	idx := l.Attrs().Index
	subnet := &net.IPNet{IP: ipc.Address.IP.Mask(ipc.Address.Mask), Mask: ipc.Address.Mask}
	netlink.RouteDel(&netlink.Route{LinkIndex: idx, Dst: subnet, Scope: netlink.SCOPE_NOWHERE})
	for _, r := range []*netlink.Route{
		{LinkIndex: idx, Dst: hostNet(ipc.Gateway), Scope: netlink.SCOPE_LINK, Src: ipc.Address.IP},
		{LinkIndex: idx, Dst: subnet, Gw: ipc.Gateway, Src: ipc.Address.IP},
	} {
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s: %w", r.Dst, err)
		}
	}
	return nil
}

// addRoutes adds the IPAM result's routes, through the gateway of the
// route's family when the route names none.
func addRoutes(l netlink.Link, res *current.Result) error {
	for _, r := range res.Routes {
		gw := r.GW
		if gw == nil {
			gw = gatewayFor(res.IPs, r.Dst.IP.To4() != nil)
		}
		route := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: &r.Dst, Gw: gw}
		if r.MTU > 0 {
			route.MTU = r.MTU
		}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("route %s via %s: %w", r.Dst.String(), gw, err)
		}
	}
	return nil
}

func gatewayFor(ips []*current.IPConfig, v4 bool) net.IP {
	for _, ipc := range ips {
		if (ipc.Address.IP.To4() != nil) == v4 {
			return ipc.Gateway
		}
	}
	return nil
}

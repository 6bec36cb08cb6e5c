package cni

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// setupHost configures the b end in the host namespace (where the plugin
// runs, beside the daemon).
//
// routed: the b end holds each gateway as a /32 (/128) and the host routes
// each pod address to the b end, so the pod is one hop away and every pod
// reaches the others through the host, as with ptp.
//
// bridge: the b end joins the bridge, so the pods of a node share one L2
// segment; with isGateway the bridge (or its VLAN interface, which setupHost
// then returns) holds the gateways with the subnet's prefix.
func setupHost(conf *NetConf, p *api.Pair, res *current.Result) (netlink.Link, error) {
	b, err := netlinksafe.LinkByName(p.B.Name)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", p.B.Name, err)
	}
	if conf.Mode == ModeBridge {
		return joinBridge(conf, b, res)
	}
	return nil, routeToPod(p, b, res)
}

// routeToPod puts the gateways on the b end and routes the pod's addresses
// over it.
func routeToPod(p *api.Pair, b netlink.Link, res *current.Result) error {
	if err := ip.EnableForward(res.IPs); err != nil {
		return fmt.Errorf("enable IP forwarding: %w", err)
	}
	for _, ipc := range res.IPs {
		if err := addAddr(b, hostNet(ipc.Gateway)); err != nil {
			return err
		}
		r := &netlink.Route{LinkIndex: b.Attrs().Index, Dst: hostNet(ipc.Address.IP), Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("route to %s via %s: %w", ipc.Address.IP, p.B.Name, err)
		}
	}
	return nil
}

// addAddr adds an address, without duplicate address detection for IPv6
// (the address must work at once); an address already there is fine.
func addAddr(l netlink.Link, ipn *net.IPNet) error {
	a := &netlink.Addr{IPNet: ipn}
	if ipn.IP.To4() == nil {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("add %s to %s: %w", ipn, l.Attrs().Name, err)
	}
	return nil
}

// hostNet is ip as a single-address network.
func hostNet(addr net.IP) *net.IPNet {
	if v4 := addr.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return &net.IPNet{IP: addr, Mask: net.CIDRMask(128, 128)}
}

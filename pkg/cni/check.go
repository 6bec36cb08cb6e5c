package cni

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/client"
	"github.com/vishvananda/netlink"
)

func mismatch(format string, a ...any) *types.Error {
	return types.NewError(ErrMismatch, fmt.Sprintf(format, a...), "")
}

// cmdCheck verifies the attachment against prevResult: the IPAM plugin's
// own CHECK, the pair (exists, forwarding, names and MACs) and, in the pod,
// the interface, its addresses and routes.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := checkEnv(args, true); err != nil {
		return err
	}
	prev, err := prevResult(conf)
	if err != nil {
		return err
	}
	ctx, cancel := newContext()
	defer cancel()
	if err := invoke.DelegateCheck(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
		return ipamError(conf, "CHECK", err)
	}
	c := client.New(conf.Socket)
	pair, err := findPair(ctx, c, conf.Name, args.ContainerID, args.IfName)
	if err != nil {
		return daemonError(c, "find pair", err)
	}
	if pair == nil {
		return mismatch("no epair pair for container %s %s on network %s", args.ContainerID, args.IfName, conf.Name)
	}
	if !pair.Forwarding {
		return mismatch("pair %d is not forwarding: %s", pair.Unit, pair.Problem)
	}
	if pair.AntiSpoofing != conf.antiSpoofing() {
		return mismatch("pair %d has anti-spoofing %v, the config's antiSpoofing is %v: DEL and ADD again to change it",
			pair.Unit, pair.AntiSpoofing, conf.antiSpoofing())
	}
	if want := conf.bandwidth(); !reflect.DeepEqual(pair.Bandwidth, want) {
		return mismatch("pair %d is shaped %s, the config asks for %s: DEL and ADD again to change it",
			pair.Unit, describeBandwidth(pair.Bandwidth), describeBandwidth(want))
	}
	if err := checkInterfaces(pair, args, prev); err != nil {
		return err
	}
	if err := checkHost(conf, pair, prev); err != nil {
		return err
	}
	return checkPod(args, pair, prev)
}

// checkHost looks at the b end where the plugin runs (the runtime's
// namespace, where ADD put it): there, with its MAC, and routed to each pod
// address or enslaved to the bridge.
func checkHost(conf *NetConf, p *api.Pair, prev *current.Result) error {
	l, err := netlinksafe.LinkByName(p.B.Name)
	if err != nil {
		return mismatch("b end %s is not in this (the runtime's) network namespace: %v", p.B.Name, err)
	}
	if got := l.Attrs().HardwareAddr.String(); got != p.B.MAC {
		return mismatch("%s here has MAC %s, the pair's b end has %s: not our device", p.B.Name, got, p.B.MAC)
	}
	if conf.Mode == ModeBridge {
		br, err := netlinksafe.LinkByName(conf.Bridge)
		if err != nil || l.Attrs().MasterIndex != br.Attrs().Index {
			return mismatch("%s is not a port of bridge %s", p.B.Name, conf.Bridge)
		}
		return nil
	}
	for _, ipc := range prev.IPs {
		routes, err := netlink.RouteGet(ipc.Address.IP)
		if err != nil || len(routes) == 0 || routes[0].LinkIndex != l.Attrs().Index {
			return mismatch("the host does not route %s over %s", ipc.Address.IP, p.B.Name)
		}
	}
	return nil
}

// prevResult parses the config's prevResult as a current result (code 6 if
// it cannot). A null entry in its interfaces, ips or routes is refused: the
// CNI library's conversion from 0.4.0 and CHECK itself would dereference it.
func prevResult(conf *NetConf) (*current.Result, error) {
	if conf.RawPrevResult == nil {
		return nil, invalidConf("CHECK needs prevResult in the config")
	}
	for k, v := range conf.RawPrevResult {
		l, _ := v.([]any)
		for i, e := range l {
			if e == nil && (strings.EqualFold(k, "interfaces") || strings.EqualFold(k, "ips") || strings.EqualFold(k, "routes")) {
				return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("cannot parse prevResult: %s[%d] is null", k, i), "")
			}
		}
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot parse prevResult: "+err.Error(), "")
	}
	res, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot convert prevResult: "+err.Error(), "")
	}
	return res, nil
}

// checkInterfaces compares the result's interfaces with the pair.
func checkInterfaces(p *api.Pair, args *skel.CmdArgs, prev *current.Result) error {
	var sawA, sawB bool
	for _, i := range prev.Interfaces {
		switch {
		case i.Sandbox != "" && i.Name == args.IfName:
			sawA = true
			if i.Mac != p.A.MAC || i.Sandbox != args.Netns {
				return mismatch("%s: prevResult says MAC %s in %s, the pair has %s in %s", i.Name, i.Mac, i.Sandbox, p.A.MAC, p.A.Netns)
			}
		case i.Name == p.B.Name:
			sawB = true
			if i.Mac != p.B.MAC {
				return mismatch("%s: prevResult says MAC %s, the pair has %s", i.Name, i.Mac, p.B.MAC)
			}
		}
	}
	if !sawA || !sawB {
		return mismatch("prevResult does not list both ends of pair %d (%s in the pod, %s on the host)", p.Unit, args.IfName, p.B.Name)
	}
	return nil
}

// checkPod looks at the a end in the pod: it exists with its MAC, and the
// addresses and routes of prevResult are on it.
func checkPod(args *skel.CmdArgs, p *api.Pair, prev *current.Result) error {
	return ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(args.IfName)
		if err != nil {
			return mismatch("%s is missing in %s: %v", args.IfName, args.Netns, err)
		}
		if l.Attrs().HardwareAddr.String() != p.A.MAC {
			return mismatch("%s has MAC %s, want %s", args.IfName, l.Attrs().HardwareAddr, p.A.MAC)
		}
		if err := ip.ValidateExpectedInterfaceIPs(args.IfName, prev.IPs); err != nil {
			return mismatch("%s addresses: %v", args.IfName, err)
		}
		if err := ip.ValidateExpectedRoute(prev.Routes); err != nil {
			return mismatch("%s routes: %v", args.IfName, err)
		}
		return nil
	})
}

// describeBandwidth puts shaping into a CHECK message.
func describeBandwidth(bw *api.Bandwidth) string {
	if bw == nil {
		return "not at all"
	}
	return fmt.Sprintf("ingress %d bit/s burst %d bits, egress %d bit/s burst %d bits",
		bw.IngressRate, bw.IngressBurst, bw.EgressRate, bw.EgressBurst)
}

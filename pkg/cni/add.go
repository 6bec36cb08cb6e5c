package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/client"
	"github.com/epair-cni/epair/pkg/nsfile"
	"github.com/vishvananda/netlink"
)

// cmdAdd: IPAM first (so the pair's record can carry the addresses), then
// the pair, then the host side, then the pod; for an IPAM plugin that needs
// the pod's interface (dhcp) the pair comes first and its addresses are
// sent to the daemon after IPAM. Every step undoes the ones before it on
// failure, so a failed ADD leaves nothing behind.
func cmdAdd(args *skel.CmdArgs) (err error) {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := checkEnv(args, true); err != nil {
		return err
	}
	mac, err := macFor(conf, args)
	if err != nil {
		return err
	}
	pod, err := podFor(args)
	if err != nil {
		return err
	}
	if conf.ipamNeedsLink() && conf.Mode != ModeBridge {
		return invalidConf("ipam %q asks a DHCP server on the pod's L2 segment: it needs mode %q (routed mode has none)", conf.IPAM.Type, ModeBridge)
	}
	ctx, cancel := newContext()
	defer cancel()
	c := client.New(conf.Socket)
	if existing, err := findPair(ctx, c, conf.Name, args.ContainerID, args.IfName); err != nil {
		return daemonError(c, "list pairs", err)
	} else if existing != nil {
		return types.NewError(ErrPair, fmt.Sprintf("container %s already has %s on network %s (pair %d): DEL it first",
			args.ContainerID, args.IfName, conf.Name, existing.Unit), "")
	}

	var res *current.Result
	if !conf.ipamNeedsLink() {
		if res, err = ipamAdd(ctx, conf, args.StdinData); err != nil {
			return err
		}
		defer undoIPAM(&err, conf, args)
	}
	pair, err := createPair(ctx, c, conf, args, mac, pod, res)
	if err != nil {
		return err
	}
	unit := fmt.Sprint(pair.Unit)
	defer func() {
		if err != nil {
			c.DeletePair(context.Background(), unit)
		}
	}()
	if res == nil {
		// Deferred after the pair's undo, so it runs first: dhcp releases
		// its lease through the a end while it is still there.
		if res, pair, err = ipamThroughPair(ctx, c, conf, args, pair); err != nil {
			return err
		}
		defer undoIPAM(&err, conf, args)
	}
	return configure(conf, args, pair, res)
}

// createPair asks the daemon for the pod's pair, owned by the attachment
// (and its pod, when the runtime named it), with the addresses of res (none
// yet when res is nil).
func createPair(ctx context.Context, c *client.Client, conf *NetConf, args *skel.CmdArgs, mac string, pod *api.Pod, res *current.Result) (*api.Pair, error) {
	owner := &api.Owner{ContainerID: args.ContainerID, IfName: args.IfName, Network: conf.Name, Pod: pod}
	if res != nil {
		owner.IPs = ipStrings(res.IPs)
	}
	spoof := conf.antiSpoofing()
	req := &api.CreateRequest{
		ANetns: args.Netns, AName: args.IfName, AMAC: mac, MTU: conf.MTU,
		Owner: owner, AntiSpoofing: &spoof, Bandwidth: conf.bandwidth(),
	}
	if err := hereAsHostNetns(req); err != nil {
		return nil, types.NewError(ErrHostSetup, err.Error(), "")
	}
	pair, err := c.CreatePair(ctx, req)
	if err != nil {
		return nil, daemonError(c, "create pair", err)
	}
	return pair, nil
}

// ipamThroughPair runs an IPAM plugin that talks through the a end (dhcp:
// its daemon brings the interface up and asks from 0.0.0.0, which the
// anti-spoofing filter lets through) once the b end is a port of the
// bridge, where the DHCP server answers; then it gives the daemon the
// addresses.
func ipamThroughPair(ctx context.Context, c *client.Client, conf *NetConf, args *skel.CmdArgs, pair *api.Pair) (*current.Result, *api.Pair, error) {
	b, err := netlinksafe.LinkByName(pair.B.Name)
	if err == nil {
		_, err = bridgePort(conf, b)
	}
	if err != nil {
		return nil, nil, types.NewError(ErrHostSetup, "host side of "+pair.B.Name+": "+err.Error(), "")
	}
	res, err := ipamAdd(ctx, conf, args.StdinData)
	if err != nil {
		return nil, nil, err
	}
	withIPs, err := c.SetIPs(ctx, fmt.Sprint(pair.Unit), ipStrings(res.IPs))
	if err != nil {
		invoke.DelegateDel(context.Background(), conf.IPAM.Type, args.StdinData, nil)
		return nil, nil, daemonError(c, "set the pair's addresses", err)
	}
	return res, withIPs, nil
}

// undoIPAM releases the IPAM reservation when the ADD fails (*err set).
func undoIPAM(err *error, conf *NetConf, args *skel.CmdArgs) {
	if *err != nil {
		invoke.DelegateDel(context.Background(), conf.IPAM.Type, args.StdinData, nil)
	}
}

// configure sets up the host side and the pod for pair with res, and
// prints the result.
func configure(conf *NetConf, args *skel.CmdArgs, pair *api.Pair, res *current.Result) error {
	if conf.IsDefaultGateway {
		addDefaultRoutes(res)
	}
	vlanIf, err := setupHost(conf, pair, res)
	if err != nil {
		return types.NewError(ErrHostSetup, "host side of "+pair.B.Name+": "+err.Error(), "")
	}
	if err := setupPod(conf, args.Netns, pair.A.Index, res); err != nil {
		return types.NewError(ErrPodSetup, fmt.Sprintf("%s in %s: %v", args.IfName, args.Netns, err), "")
	}
	if conf.IPMasq {
		if err := ip.SetupIPMasqForNetworks(conf.IPMasqBackend, podNets(res.IPs), conf.Name, args.IfName, args.ContainerID); err != nil {
			return types.NewError(ErrHostSetup, "ipMasq: "+err.Error(), "")
		}
	}
	fillResult(conf, pair, args.Netns, vlanIf, res)
	return printResult(res, conf.CNIVersion)
}

// hereAsHostNetns asks for the b end in the namespace this plugin runs in:
// the runtime's, where the spec puts the host side of an attachment (the
// daemon may run elsewhere). The daemon opens /proc/PID/ns/net while we
// wait, and checks it is the namespace whose inode we see.
func hereAsHostNetns(req *api.CreateRequest) error {
	ino, err := nsfile.Inode("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("this plugin's network namespace: %w", err)
	}
	req.BNetns = fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	req.BNetnsInode = ino
	return nil
}

// printResult prints res as the config's cniVersion has it, and only what
// that version's result schema holds. Converting from types100 gives
// 0.3.x/0.4.0 their shape (ips[].version, no interfaces[].mtu), but passes
// the 1.1.0-only fields through unchanged (interfaces[].mtu, socketPath and
// pciID to 1.0.0; routes' mtu, advmss, priority, table and scope to every
// older version), so they go here.
func printResult(res *current.Result, cniVersion string) error {
	r, err := resultAs(res, cniVersion)
	if err != nil {
		return err
	}
	return r.Print()
}

// resultAs is res converted to cniVersion, as printResult prints it.
func resultAs(res *current.Result, cniVersion string) (types.Result, error) {
	r := *res
	r.CNIVersion = current.ImplementedSpecVersion
	if cniVersion != current.ImplementedSpecVersion {
		r.Interfaces, r.Routes = nil, nil
		for _, i := range res.Interfaces {
			c := *i
			c.Mtu, c.SocketPath, c.PciID = 0, "", ""
			r.Interfaces = append(r.Interfaces, &c)
		}
		for _, rt := range res.Routes {
			r.Routes = append(r.Routes, &types.Route{Dst: rt.Dst, GW: rt.GW})
		}
	}
	return r.GetAsVersion(cniVersion)
}

// ipamAdd runs the IPAM plugin and checks it gave at least one address.
func ipamAdd(ctx context.Context, conf *NetConf, stdin []byte) (*current.Result, error) {
	if _, err := invoke.FindInPath(conf.IPAM.Type, cniPaths()); err != nil {
		return nil, invalidConf("ipam.type %q: no such plugin in CNI_PATH (%v)", conf.IPAM.Type, err)
	}
	r, err := invoke.DelegateAdd(ctx, conf.IPAM.Type, stdin, nil)
	if err != nil {
		return nil, ipamError(conf, "ADD", err)
	}
	res, err := current.NewResultFromResult(r)
	if err == nil && len(res.IPs) == 0 {
		err = fmt.Errorf("no addresses")
	}
	if err == nil {
		err = fillGateways(res)
	}
	if err != nil {
		invoke.DelegateDel(context.Background(), conf.IPAM.Type, stdin, nil)
		return nil, types.NewError(ErrNoAddress, fmt.Sprintf("IPAM plugin %s gave an unusable result: %v", conf.IPAM.Type, err), "")
	}
	if len(res.DNS.Nameservers) == 0 && len(res.DNS.Search) == 0 && res.DNS.Domain == "" {
		res.DNS = conf.DNS
	}
	return res, nil
}

// ipamError is the IPAM plugin's failure as epair's code 101, with the
// plugin's own message and code in it (host-local, for one, says 999 for
// an exhausted range, which means nothing to a runtime from us).
func ipamError(conf *NetConf, verb string, err error) *types.Error {
	var te *types.Error
	if errors.As(err, &te) {
		return types.NewError(ErrIPAM, fmt.Sprintf("IPAM plugin %s %s failed (its code %d): %s", conf.IPAM.Type, verb, te.Code, te.Msg), te.Details)
	}
	return types.NewError(ErrIPAM, fmt.Sprintf("IPAM plugin %s %s failed: %v", conf.IPAM.Type, verb, err), "")
}

// fillGateways gives every address a gateway: the IPAM plugin's, or the
// first address of its subnet, as ptp does.
func fillGateways(res *current.Result) error {
	for _, ipc := range res.IPs {
		if ipc.Gateway == nil {
			ipc.Gateway = ip.NextIP(ipc.Address.IP.Mask(ipc.Address.Mask))
		}
		if ipc.Gateway.Equal(ipc.Address.IP) {
			return fmt.Errorf("address %s is its own gateway", ipc.Address.IP)
		}
	}
	return nil
}

// fillResult lists the interfaces: [bridge,] b end on the host, a end in
// the pod[, the bridge's VLAN interface holding the gateways, last as the
// bridge plugin lists it]; every IP belongs to the a end.
func fillResult(conf *NetConf, p *api.Pair, netns string, vlanIf netlink.Link, res *current.Result) {
	res.Interfaces = nil
	if conf.Mode == ModeBridge {
		br := &current.Interface{Name: conf.Bridge}
		if l, err := net.InterfaceByName(conf.Bridge); err == nil {
			br.Mac = l.HardwareAddr.String()
		}
		res.Interfaces = append(res.Interfaces, br)
	}
	res.Interfaces = append(res.Interfaces,
		&current.Interface{Name: p.B.Name, Mac: p.B.MAC, Mtu: p.MTU},
		&current.Interface{Name: p.A.Name, Mac: p.A.MAC, Mtu: p.MTU, Sandbox: netns})
	for _, ipc := range res.IPs {
		ipc.Interface = current.Int(len(res.Interfaces) - 1)
	}
	if vlanIf != nil {
		res.Interfaces = append(res.Interfaces, &current.Interface{Name: vlanIf.Attrs().Name, Mac: vlanIf.Attrs().HardwareAddr.String()})
	}
}

// cniPaths is CNI_PATH as a list.
func cniPaths() []string { return filepath.SplitList(os.Getenv("CNI_PATH")) }

func ipStrings(ips []*current.IPConfig) []string {
	out := make([]string, 0, len(ips))
	for _, ipc := range ips {
		out = append(out, ipc.Address.String())
	}
	return out
}

func podNets(ips []*current.IPConfig) []*net.IPNet {
	out := make([]*net.IPNet, 0, len(ips))
	for _, ipc := range ips {
		out = append(out, &ipc.Address)
	}
	return out
}

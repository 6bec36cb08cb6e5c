package cni

import (
	"context"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/client"
)

// cmdDel is idempotent: a pair (or netns) that is already gone is success.
// The daemon is asked first: while it cannot say that the pair is gone,
// the pod may still hold its address, so a daemon that cannot be asked
// fails the DEL (11, the runtime retries) before IPAM is touched. Only once
// the pair is gone, or known to be, is the address released. An IPAM plugin
// that talks through the pod's interface (dhcp, whose DHCPRELEASE goes out
// of the a end) is asked first, while the interface is still there.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := newContext()
	defer cancel()
	c := client.New(conf.Socket)
	pair, err := findPair(ctx, c, conf.Name, args.ContainerID, args.IfName)
	if err != nil {
		return daemonError(c, "find pair", err)
	}
	release := func() error {
		if err := invoke.DelegateDel(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
			return ipamError(conf, "DEL", err)
		}
		return nil
	}
	if conf.ipamNeedsLink() {
		if err := release(); err != nil {
			return err
		}
	}
	if pair != nil {
		if err := removePair(ctx, c, conf, pair); err != nil {
			return err
		}
	}
	if conf.ipamNeedsLink() {
		return nil
	}
	return release()
}

// removePair deletes a pair and the masquerade rules of its addresses.
func removePair(ctx context.Context, c *client.Client, conf *NetConf, p *api.Pair) error {
	if conf.IPMasq && p.Owner != nil {
		if err := ip.TeardownIPMasqForNetworks(parseNets(p.Owner.IPs), conf.Name, p.Owner.IfName, p.Owner.ContainerID); err != nil {
			return types.NewError(ErrHostSetup, "remove ipMasq rules: "+err.Error(), "")
		}
	}
	if err := c.DeletePair(ctx, fmt.Sprint(p.Unit)); err != nil && !client.IsNotFound(err) {
		return daemonError(c, "delete pair", err)
	}
	return nil
}

func parseNets(cidrs []string) []*net.IPNet {
	var out []*net.IPNet
	for _, s := range cidrs {
		if ipa, n, err := net.ParseCIDR(s); err == nil {
			n.IP = ipa
			out = append(out, n)
		}
	}
	return out
}

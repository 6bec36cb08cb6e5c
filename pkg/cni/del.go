package cni

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/client"
)

// cmdDel is idempotent: the IPAM reservation is always released, and a pair
// (or netns) that is already gone is success. Only a daemon that cannot be
// asked is an error (11), so the runtime retries instead of leaking a pair.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := newContext()
	defer cancel()
	var errs []error
	if err := invoke.DelegateDel(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
		errs = append(errs, fmt.Errorf("IPAM plugin %s: %w", conf.IPAM.Type, err))
	}
	c := client.New(conf.Socket)
	pair, err := findPair(ctx, c, conf.Name, args.ContainerID, args.IfName)
	if err != nil {
		return daemonError(c, "find pair", err)
	}
	if pair != nil {
		if err := removePair(ctx, c, conf, pair); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return types.NewError(ErrIPAM, errors.Join(errs...).Error(), "")
	}
	return nil
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

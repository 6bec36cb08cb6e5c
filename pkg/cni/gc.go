package cni

import (
	"context"
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/epair-cni/epair/pkg/client"
)

// cmdGC removes every pair of this network whose attachment is not in
// cni.dev/valid-attachments, then lets the IPAM plugin collect its own
// reservations. Pairs of other networks are never touched.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := newContext()
	defer cancel()
	valid := map[types.GCAttachment]bool{}
	for _, a := range conf.ValidAttachments {
		valid[a] = true
	}
	c := client.New(conf.Socket)
	pairs, err := c.ListPairs(ctx)
	if err != nil {
		return daemonError(c, "list pairs", err)
	}
	for i := range pairs {
		o := pairs[i].Owner
		if o == nil || o.Network != conf.Name || valid[types.GCAttachment{ContainerID: o.ContainerID, IfName: o.IfName}] {
			continue
		}
		if err := removePair(ctx, c, conf, &pairs[i]); err != nil {
			return err
		}
		// IPAM plugins without GC of their own (host-local) free the
		// address on a DEL for the attachment.
		if err := ipamDelFor(ctx, conf, args.StdinData, o.ContainerID, o.IfName, pairs[i].A.Netns); err != nil {
			return err
		}
	}
	if conf.IPMasq {
		if err := ip.GCIPMasqForNetwork(conf.Name, conf.ValidAttachments); err != nil {
			return types.NewError(ErrHostSetup, "GC of ipMasq rules: "+err.Error(), "")
		}
	}
	if err := invoke.DelegateGC(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
		return ipamError(conf, "GC", err)
	}
	return nil
}

// ipamDelFor runs the IPAM plugin's DEL for another attachment than the one
// in this invocation's environment. The attachment goes into the plugin's
// environment through invoke.Args rather than os.Setenv, so this process's
// own environment (which GC reads meanwhile) never changes; CNI_ARGS and
// CNI_PATH are passed on as the runtime gave them, as DelegateDel does.
func ipamDelFor(ctx context.Context, conf *NetConf, stdin []byte, containerID, ifName, netns string) error {
	fail := func(err error) error { return ipamError(conf, "DEL of "+containerID+"/"+ifName, err) }
	path, err := invoke.FindInPath(conf.IPAM.Type, cniPaths())
	if err != nil {
		return fail(err)
	}
	args := &invoke.Args{
		Command: "DEL", ContainerID: containerID, IfName: ifName, NetNS: netns,
		PluginArgsStr: os.Getenv("CNI_ARGS"), Path: os.Getenv("CNI_PATH"),
	}
	if err := invoke.ExecPluginWithoutResult(ctx, path, stdin, args, nil); err != nil {
		return fail(err)
	}
	return nil
}

// delegateStatus asks the IPAM plugin for its STATUS too.
func delegateStatus(ctx context.Context, conf *NetConf, stdin []byte) error {
	if _, err := invoke.FindInPath(conf.IPAM.Type, cniPaths()); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("IPAM plugin %s not found in CNI_PATH", conf.IPAM.Type), "")
	}
	if err := invoke.DelegateStatus(ctx, conf.IPAM.Type, stdin, nil); err != nil {
		if te, ok := err.(*types.Error); ok {
			return te
		}
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("IPAM plugin %s: %v", conf.IPAM.Type, err), "")
	}
	return nil
}

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
// in this invocation's environment.
func ipamDelFor(ctx context.Context, conf *NetConf, stdin []byte, containerID, ifName, netns string) error {
	env := map[string]string{"CNI_CONTAINERID": containerID, "CNI_IFNAME": ifName, "CNI_NETNS": netns}
	saved := map[string]string{}
	for k, v := range env {
		saved[k] = os.Getenv(k)
		os.Setenv(k, v)
	}
	defer func() {
		for k, v := range saved {
			os.Setenv(k, v)
		}
	}()
	if err := invoke.DelegateDel(ctx, conf.IPAM.Type, stdin, nil); err != nil {
		return ipamError(conf, "DEL of "+containerID+"/"+ifName, err)
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

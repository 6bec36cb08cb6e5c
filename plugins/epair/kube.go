//go:build kubernetes

package main

import (
	"context"

	"github.com/epair-cni/epair/pkg/cli"
	"github.com/epair-cni/epair/pkg/kube"
)

// This file is only in the full build (-tags kubernetes): it links client-go,
// which the lean CNI binary must not carry.
func init() {
	cli.Kubernetes = func(ctx context.Context, o cli.KubeOptions, daemon func(context.Context, func()) error) error {
		return kube.Run(ctx, kube.Options{
			NodeName: o.NodeName, Kubeconfig: o.Kubeconfig,
			CNIBinDir: o.CNIBinDir, CNIConfDir: o.CNIConfDir, CNIConfName: o.CNIConfName,
			CNIInstallSrc: o.CNIInstallSrc, CNISocket: o.CNISocket, IPAMDataDir: o.IPAMDataDir,
			ClusterCIDRs: o.ClusterCIDRs, ServiceCIDRs: o.ServiceCIDRs,
			Masquerade: o.Masquerade, MTU: o.MTU, HealthAddr: o.HealthAddr,
		}, daemon)
	}
}

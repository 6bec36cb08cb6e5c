package cli

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/kube/kubeopts"
)

// Kubernetes runs the Kubernetes node agent next to the daemon: daemon runs
// the datapath and calls ready once it serves. It is nil in the lean build
// (client-go's init would cost every CNI exec); plugins/epair/kube.go, built
// with -tags kubernetes, sets it.
var Kubernetes func(ctx context.Context, o kubeopts.Options, daemon func(ctx context.Context, ready func()) error) error

// kubeFlagSet holds the raw --kubernetes flags.
type kubeFlagSet struct {
	enabled                            bool
	o                                  kubeopts.Options
	clusterCIDRs, serviceCIDRs, socket string
}

func kubeFlags(fs *flag.FlagSet) *kubeFlagSet {
	k := &kubeFlagSet{}
	fs.BoolVar(&k.enabled, "kubernetes", false, "also run the Kubernetes node agent (conflist, routes, masquerade)")
	fs.StringVar(&k.o.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	fs.StringVar(&k.o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config)")
	fs.StringVar(&k.o.CNIBinDir, "cni-bin-dir", "/host/opt/cni/bin", "where to install the CNI binaries")
	fs.StringVar(&k.o.CNIConfDir, "cni-conf-dir", "/host/etc/cni/net.d", "where to write the conflist")
	fs.StringVar(&k.o.CNIConfName, "cni-conf-name", "10-epair.conflist", "file name of the conflist")
	fs.StringVar(&k.o.CNIInstallSrc, "cni-install-src", "/opt/epair/cni", "directory of the CNI binaries to install")
	fs.StringVar(&k.o.IPAMDataDir, "cni-ipam-data-dir", "", "host-local's dataDir in the conflist (default: host-local's own, /var/lib/cni/networks)")
	fs.StringVar(&k.socket, "cni-socket", "", "the daemon socket as the host sees it (default: --socket)")
	fs.StringVar(&k.clusterCIDRs, "cluster-cidr", "", "comma list of the cluster's pod CIDRs (default: every node's podCIDRs)")
	fs.StringVar(&k.serviceCIDRs, "service-cidr", "", "comma list of the service CIDRs")
	fs.BoolVar(&k.o.Masquerade, "masquerade", true, "masquerade pod traffic leaving the cluster")
	fs.IntVar(&k.o.MTU, "mtu", 0, "MTU of the pods' pairs (0: the uplink's)")
	fs.StringVar(&k.o.HealthAddr, "health-addr", "127.0.0.1:9807", "address of /healthz and /readyz")
	return k
}

// options checks the flags; sock is --socket, the default of --cni-socket.
func (k *kubeFlagSet) options(sock string) (*kubeopts.Options, error) {
	if Kubernetes == nil {
		return nil, fmt.Errorf("this build has no Kubernetes support; use the image's /usr/local/bin/epair")
	}
	o := k.o
	if o.NodeName == "" {
		return nil, fmt.Errorf("%w: --kubernetes needs --node-name or NODE_NAME (the downward API's spec.nodeName)", errUsage)
	}
	if o.MTU != 0 && (o.MTU < api.MinMTU || o.MTU > api.MaxMTU) {
		return nil, fmt.Errorf("%w: --mtu %d is out of range %d..%d", errUsage, o.MTU, api.MinMTU, api.MaxMTU)
	}
	if err := checkConfName(o.CNIConfName); err != nil {
		return nil, err
	}
	for _, d := range []struct{ flag, path string }{
		{"--cni-bin-dir", o.CNIBinDir}, {"--cni-conf-dir", o.CNIConfDir},
		{"--cni-install-src", o.CNIInstallSrc}, {"--cni-socket", k.socket}, {"--cni-ipam-data-dir", o.IPAMDataDir},
	} {
		if d.path != "" && !filepath.IsAbs(d.path) {
			return nil, fmt.Errorf("%w: %s %q must be an absolute path", errUsage, d.flag, d.path)
		}
	}
	o.CNISocket = k.socket
	if o.CNISocket == "" {
		o.CNISocket = sock
	}
	var err error
	if o.ClusterCIDRs, err = parseCIDRs("--cluster-cidr", k.clusterCIDRs); err != nil {
		return nil, err
	}
	if o.ServiceCIDRs, err = parseCIDRs("--service-cidr", k.serviceCIDRs); err != nil {
		return nil, err
	}
	return &o, nil
}

// checkConfName keeps the conflist a plain file in --cni-conf-dir, with the
// extension libcni reads.
func checkConfName(name string) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".conflist") {
		return fmt.Errorf("%w: --cni-conf-name %q must be a file name ending in .conflist", errUsage, name)
	}
	return nil
}

func parseCIDRs(flag, list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", errUsage, flag, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

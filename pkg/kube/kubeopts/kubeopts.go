// Package kubeopts holds the options of `epair daemon --kubernetes`. It is
// its own package, importing no client-go, so the lean build's CLI can parse
// and check the flags while only the kubernetes build links pkg/kube.
package kubeopts

import "net/netip"

// Options are the flags of `epair daemon --kubernetes`, checked.
type Options struct {
	NodeName   string
	Kubeconfig string // "" = in-cluster config

	CNIBinDir, CNIConfDir, CNIConfName string
	CNIInstallSrc                      string
	CNISocket                          string
	IPAMDataDir                        string // host-local's dataDir ("" = its default)

	ClusterCIDRs, ServiceCIDRs []netip.Prefix
	Masquerade                 bool
	MTU                        int // 0 = the uplink's
	HealthAddr                 string
}

package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/atomicfile"
)

// NetworkName is the name of the network in the conflist epair writes.
const NetworkName = "epair"

// ConflistParams is what the node's conflist is made of.
type ConflistParams struct {
	// PodCIDRs of the node (spec.podCIDRs): at most one per family.
	PodCIDRs []netip.Prefix
	// MTU of both ends of every pair.
	MTU int
	// Socket is the daemon's socket as the host (the kubelet's runtime,
	// which execs the plugin) sees it.
	Socket string
	// DataDir is host-local's dataDir; empty keeps host-local's default
	// (/var/lib/cni/networks). Tests set it so that several "nodes" on one
	// machine do not share reservations.
	DataDir string
}

type ipRange struct {
	Subnet string `json:"subnet"`
}

type route struct {
	Dst string `json:"dst"`
}

type ipamConf struct {
	Type    string      `json:"type"`
	DataDir string      `json:"dataDir,omitempty"`
	Ranges  [][]ipRange `json:"ranges"`
	Routes  []route     `json:"routes"`
}

// pluginConf is the epair plugin. It declares the bandwidth capability:
// the runtime then passes a pod's kubernetes.io/ingress-bandwidth and
// egress-bandwidth annotations to epair, which shapes them itself (the
// reference bandwidth plugin cannot: it looks for a veth peer).
type pluginConf struct {
	Type         string          `json:"type"`
	Mode         string          `json:"mode"`
	MTU          int             `json:"mtu"`
	Socket       string          `json:"socket"`
	Capabilities map[string]bool `json:"capabilities"`
	IPAM         ipamConf        `json:"ipam"`
}

// portmapConf is the reference portmap plugin, chained after epair: the
// runtime passes a pod's hostPorts only to plugins that declare the
// portMappings capability, and portmap programs them (DNAT from the node's
// addresses to the pod). Its snat stays at portmap's default (true), as
// kindnet's and flannel's conflists leave it: that masquerades connections
// from 127.0.0.1 (a hostIP of 127.0.0.1, with route_localnet set on the
// pod's host-side link) and a pod's hairpin to its own hostPort.
type portmapConf struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

type conflist struct {
	CNIVersion  string   `json:"cniVersion"`
	CNIVersions []string `json:"cniVersions"`
	Name        string   `json:"name"`
	// Plugins: pluginConf, then portmapConf.
	Plugins []any `json:"plugins"`
}

// RenderConflist returns the node's conflist: the routed epair plugin with
// one host-local range per podCIDR and a default route per family, then
// portmap for the pods' hostPorts (what every Kubernetes node's default
// network provides; kindnet and flannel chain it the same way). It
// refuses what would make a broken config (no podCIDR, two of one family,
// an MTU out of range, a relative socket) rather than write it.
func RenderConflist(p ConflistParams) ([]byte, error) {
	if len(p.PodCIDRs) == 0 {
		return nil, errors.New("no podCIDR")
	}
	if p.MTU < api.MinMTU || p.MTU > api.MaxMTU {
		return nil, fmt.Errorf("mtu %d is out of range %d..%d", p.MTU, api.MinMTU, api.MaxMTU)
	}
	if !filepath.IsAbs(p.Socket) {
		return nil, fmt.Errorf("socket %q is not an absolute path", p.Socket)
	}
	ipam := ipamConf{Type: "host-local", DataDir: p.DataDir, Routes: []route{}}
	seen := map[bool]bool{}
	for _, c := range p.PodCIDRs {
		if !c.IsValid() || c.Masked() != c {
			return nil, fmt.Errorf("podCIDR %v is not a network prefix", c)
		}
		v4 := c.Addr().Is4()
		if seen[v4] {
			return nil, fmt.Errorf("podCIDRs %v hold two of one IP family", p.PodCIDRs)
		}
		seen[v4] = true
		ipam.Ranges = append(ipam.Ranges, []ipRange{{Subnet: c.String()}})
		dst := "::/0"
		if v4 {
			dst = "0.0.0.0/0"
		}
		ipam.Routes = append(ipam.Routes, route{Dst: dst})
	}
	b, err := json.MarshalIndent(conflist{
		CNIVersion:  "1.0.0",
		CNIVersions: []string{"1.0.0", "1.1.0"},
		Name:        NetworkName,
		Plugins: []any{
			pluginConf{Type: "epair", Mode: "routed", MTU: p.MTU, Socket: p.Socket,
				Capabilities: map[string]bool{"bandwidth": true}, IPAM: ipam},
			portmapConf{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
		},
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode conflist: %w", err)
	}
	return append(b, '\n'), nil
}

// WriteFileAtomic replaces path with data unless it already holds exactly
// that (atomicfile.Write: a reader, the runtime watching the CNI conf dir,
// sees the old file or the new one, never half of one). It reports whether
// it wrote.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := atomicfile.Write(path, data, perm); err != nil {
		return false, err
	}
	return true, nil
}

// Package cni is the epair CNI plugin: ADD, DEL, CHECK, VERSION, STATUS and
// GC per the CNI spec 1.1. It delegates IPAM, asks the epair daemon for a
// pair whose a end becomes CNI_IFNAME in the pod, and configures addresses
// and routes on both sides.
package cni

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/nsfile"
)

// Modes of the host side.
const (
	ModeRouted = "routed"
	ModeBridge = "bridge"
)

// DefaultBridge is the bridge of bridge mode unless the config names one.
const DefaultBridge = "epair-br0"

// epair's own error codes (the spec reserves 100+ for plugins).
const (
	ErrPair      uint = 100 // the daemon could not make or find the pair
	ErrIPAM      uint = 101 // the IPAM plugin failed
	ErrNoAddress uint = 102 // the IPAM result holds no address
	ErrHostSetup uint = 103 // addresses, routes or bridge on the host failed
	ErrPodSetup  uint = 104 // addresses or routes in the pod failed
	ErrMismatch  uint = 105 // CHECK found the attachment differs from prevResult
	ErrImpostor  uint = 106 // the daemon's socket is not served by root
)

// NetConf is the network configuration of an epair network.
type NetConf struct {
	types.PluginConf
	BridgeKeys
	Mode   string `json:"mode,omitempty"`
	Bridge string `json:"bridge,omitempty"`
	MTU    int    `json:"mtu,omitempty"`
	IPMasq bool   `json:"ipMasq,omitempty"`
	// IPMasqBackend is "iptables" or "nftables"; empty picks what exists.
	IPMasqBackend *string `json:"ipMasqBackend,omitempty"`
	Socket        string  `json:"socket,omitempty"`
	// AntiSpoofing drops frames the pod sends from another MAC or address
	// than ADD gave it (epair.SpoofFilter); unset means true. A pod that
	// routes other networks needs false.
	AntiSpoofing *bool `json:"antiSpoofing,omitempty"`
	// BandwidthEntry holds the static ingressRate, ingressBurst, egressRate
	// and egressBurst keys; it is nil when none is given.
	*BandwidthEntry
	RuntimeConfig struct {
		MAC       string          `json:"mac,omitempty"`
		Bandwidth *BandwidthEntry `json:"bandwidth,omitempty"`
	} `json:"runtimeConfig,omitempty"`
}

// BandwidthEntry is the CNI bandwidth capability as the reference bandwidth
// plugin defines it: rates in bits per second, bursts in bits; ingress is
// what the pod receives, egress what it sends.
type BandwidthEntry struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// bandwidth returns the shaping asked for, nil for none. As in the
// reference bandwidth plugin, the static keys win when any is given, and
// runtimeConfig.bandwidth (the pod's kubernetes.io/ingress-bandwidth and
// egress-bandwidth annotations) applies otherwise.
func (c *NetConf) bandwidth() *api.Bandwidth {
	bw := c.bandwidthKeys()
	if bw.IsZero() {
		return nil
	}
	return bw
}

// bandwidthKeys returns the bandwidth keys in force as given, nil when
// there are none.
func (c *NetConf) bandwidthKeys() *api.Bandwidth {
	e := c.BandwidthEntry
	if e == nil {
		e = c.RuntimeConfig.Bandwidth
	}
	if e == nil {
		return nil
	}
	return &api.Bandwidth{IngressRate: e.IngressRate, IngressBurst: e.IngressBurst, EgressRate: e.EgressRate, EgressBurst: e.EgressBurst}
}

// ipamNeedsLink reports whether the IPAM plugin can answer only once the
// pod's interface exists: dhcp asks a DHCP server through it (and sends
// its DHCPRELEASE through it at DEL).
func (c *NetConf) ipamNeedsLink() bool { return c.IPAM.Type == "dhcp" }

// antiSpoofing returns the antiSpoofing key, true when unset.
func (c *NetConf) antiSpoofing() bool { return c.AntiSpoofing == nil || *c.AntiSpoofing }

// envArgs are the CNI_ARGS epair understands: a MAC (as the bridge
// plugin), and the pod kubelet passes through the runtime. types.LoadArgs
// finds a key's field by its name, hence the names.
type envArgs struct {
	types.CommonArgs
	MAC                        types.UnmarshallableString `json:"mac,omitempty"`
	K8S_POD_NAMESPACE          types.UnmarshallableString
	K8S_POD_NAME               types.UnmarshallableString
	K8S_POD_UID                types.UnmarshallableString
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString
}

// loadArgs parses CNI_ARGS; a malformed one, or a key epair does not know
// without IgnoreUnknown=1 (which kubelet always sends), is code 4, as in
// the reference plugins (types.LoadArgs).
func loadArgs(args *skel.CmdArgs) (*envArgs, error) {
	e := &envArgs{}
	if err := types.LoadArgs(args.Args, e); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_ARGS: "+err.Error(), "")
	}
	return e, nil
}

// podFor returns the pod of CNI_ARGS' K8S_POD_* keys, nil when none is
// given. The keys name the pod in `epair pair list`, `epair stats POD` and
// the metrics' labels; values that break Kubernetes' name rules (or a
// namespace without a name, or the reverse) are code 4, with nothing done:
// they come from a caller that is not kubelet, and a pod recorded under a
// wrong name would be worse than an ADD that says why it failed.
func podFor(args *skel.CmdArgs) (*api.Pod, error) {
	e, err := loadArgs(args)
	if err != nil {
		return nil, err
	}
	p := &api.Pod{
		Namespace: string(e.K8S_POD_NAMESPACE), Name: string(e.K8S_POD_NAME),
		UID: string(e.K8S_POD_UID), InfraContainerID: string(e.K8S_POD_INFRA_CONTAINER_ID),
	}
	if *p == (api.Pod{}) {
		return nil, nil
	}
	if err := p.Validate(); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_ARGS: "+err.Error(), "")
	}
	return p, nil
}

func invalidConf(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// loadConf parses and checks the config; every fault is a *types.Error with
// the spec's code and a message that says what to fix.
func loadConf(data []byte) (*NetConf, error) {
	c := &NetConf{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot parse the network config: "+err.Error(), "")
	}
	if c.Mode == "" {
		c.Mode = ModeRouted
	}
	if c.Mode != ModeRouted && c.Mode != ModeBridge {
		return nil, invalidConf("mode %q is not supported: use %q or %q", c.Mode, ModeRouted, ModeBridge)
	}
	if c.Mode == ModeBridge {
		if c.Bridge == "" {
			c.Bridge = DefaultBridge
		}
		if err := epair.ValidIfName(c.Bridge); err != nil {
			return nil, invalidConf("bridge: %v", err)
		}
	}
	if err := checkModeKeys(c, data); err != nil {
		return nil, err
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	if c.MTU < api.MinMTU || c.MTU > api.MaxMTU {
		return nil, invalidConf("mtu %d is out of range %d..%d", c.MTU, api.MinMTU, api.MaxMTU)
	}
	if err := checkBridgeKeys(c); err != nil {
		return nil, err
	}
	if b := c.IPMasqBackend; b != nil && *b != "iptables" && *b != "nftables" {
		return nil, invalidConf("ipMasqBackend %q: use \"iptables\" or \"nftables\" (or leave it out)", *b)
	}
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	}
	if !filepath.IsAbs(c.Socket) || filepath.Clean(c.Socket) != c.Socket {
		return nil, invalidConf("socket %q must be an absolute, clean path", c.Socket)
	}
	if err := checkPluginName(c.IPAM.Type); err != nil {
		return nil, err
	}
	if bw := c.bandwidthKeys(); bw != nil {
		if err := bw.Validate(); err != nil {
			return nil, invalidConf("bandwidth: %v", err)
		}
	}
	return c, nil
}

// checkPluginName accepts a bare plugin name only: the IPAM type is looked
// up in CNI_PATH and must not reach outside it.
func checkPluginName(name string) error {
	if name == "" {
		return invalidConf("ipam.type is missing: name an IPAM plugin such as host-local")
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." || strings.ContainsRune(name, 0) {
		return invalidConf("ipam.type %q is not a plugin name", name)
	}
	return nil
}

// checkEnv validates CNI_IFNAME and, when needNetns, CNI_NETNS.
func checkEnv(args *skel.CmdArgs, needNetns bool) error {
	if err := epair.ValidIfName(args.IfName); err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME: "+err.Error(), "")
	}
	if !needNetns {
		return nil
	}
	if args.Netns == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_NETNS is empty: give the pod's network namespace path", "")
	}
	if err := nsfile.Check(args.Netns); err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_NETNS: %v: give the pod's network namespace path", err), "")
	}
	return nil
}

// macFor returns the MAC asked for through runtimeConfig or CNI_ARGS, which
// must be one an Ethernet interface can have (code 7 otherwise).
func macFor(c *NetConf, args *skel.CmdArgs) (string, error) {
	e, err := loadArgs(args)
	if err != nil {
		return "", err
	}
	mac, from := c.RuntimeConfig.MAC, "runtimeConfig.mac"
	if mac == "" {
		mac, from = string(e.MAC), "CNI_ARGS MAC"
	}
	if mac == "" {
		return "", nil
	}
	if _, err := epair.ParseMAC(mac); err != nil {
		return "", invalidConf("%s: %v", from, err)
	}
	return mac, nil
}

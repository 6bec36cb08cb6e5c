package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/nldump"
	"github.com/vishvananda/netlink"
)

// BridgeKeys are the keys bridge mode shares with the reference bridge
// plugin, with its meaning, so that a bridge config copied over behaves as
// it did there.
type BridgeKeys struct {
	// IsGateway puts each subnet's gateway on the bridge (or on its VLAN
	// interface) and turns on IP forwarding. Off, the bridge is plain L2.
	IsGateway bool `json:"isGateway,omitempty"`
	// IsDefaultGateway implies IsGateway and adds a default route via the
	// gateway to the pod for each family that IPAM gave none.
	IsDefaultGateway bool `json:"isDefaultGateway,omitempty"`
	// ForceAddress replaces another address of the gateway's family on the
	// bridge (IPv6: an overlapping one) instead of failing.
	ForceAddress bool `json:"forceAddress,omitempty"`
	// HairpinMode lets a frame leave the b end's bridge port it came in on.
	HairpinMode bool `json:"hairpinMode,omitempty"`
	// PromiscMode sets the bridge promiscuous.
	PromiscMode bool `json:"promiscMode,omitempty"`
	// Vlan makes the b end an untagged access port of this VLAN (1..4094)
	// on a VLAN-filtering bridge; the gateway then lives on <bridge>.<vlan>.
	Vlan int `json:"vlan,omitempty"`
	// PreserveDefaultVlan (default true, as in the bridge plugin) keeps
	// VLAN 1 on the port besides Vlan.
	PreserveDefaultVlan *bool `json:"preserveDefaultVlan,omitempty"`
	// MacSpoofChk drops frames from the pod with another source MAC: the
	// datapath's anti-spoofing (antiSpoofing, on by default) does that and
	// more, so it is accepted unless antiSpoofing is off.
	MacSpoofChk bool `json:"macspoofchk,omitempty"`
}

// bridgeOnlyKeys are the reference bridge plugin's keys: they mean nothing
// in routed mode, where a config that carries one was meant for a bridge.
var bridgeOnlyKeys = []string{
	"bridge", "isGateway", "isDefaultGateway", "forceAddress", "hairpinMode", "promiscMode",
	"vlan", "preserveDefaultVlan", "vlanTrunk", "macspoofchk", "enabledad",
	"disableContainerInterface", "portIsolation",
}

// unsupportedBridgeKeys are bridge plugin keys epair does not implement,
// each with the value that is what epair does anyway (accepted) and why
// any other value is refused.
var unsupportedBridgeKeys = map[string]struct {
	same any // the value epair's behaviour already matches; nil: none
	why  string
}{
	"vlanTrunk":                 {nil, "trunk ports are not supported: use vlan (one untagged VLAN per network)"},
	"enabledad":                 {false, "epair adds pod addresses without duplicate address detection"},
	"disableContainerInterface": {false, "the pod's interface is always brought up"},
	"portIsolation":             {false, "port isolation is not supported"},
}

// checkModeKeys refuses, with code 7, a key that would otherwise be ignored:
// a bridge key in routed mode, or a bridge plugin key epair does not
// implement (unless its value is what epair does anyway). Keys match as
// encoding/json matches them to fields, without regard to case: "Bridge"
// sets NetConf.Bridge, and the bridge plugin reads "MacSpoofChk".
func checkModeKeys(c *NetConf, data []byte) error {
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(data, &raw); err != nil {
		return invalidConf("cannot parse the network config: %v", err)
	}
	// values returns the values of every key that spells k.
	values := func(k string) []json.RawMessage {
		var vs []json.RawMessage
		for rk, v := range raw {
			if strings.EqualFold(rk, k) {
				vs = append(vs, v)
			}
		}
		return vs
	}
	if c.Mode == ModeRouted {
		var found []string
		for _, k := range bridgeOnlyKeys {
			if len(values(k)) > 0 {
				found = append(found, k)
			}
		}
		if len(found) > 0 {
			return invalidConf("%s: bridge-mode keys, and this network is mode %q (routed through the host, like ptp): remove them, or set \"mode\": %q",
				strings.Join(found, ", "), ModeRouted, ModeBridge)
		}
		return nil
	}
	keys := make([]string, 0, len(unsupportedBridgeKeys))
	for k := range unsupportedBridgeKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range values(k) {
			if string(v) == "null" {
				continue
			}
			u := unsupportedBridgeKeys[k]
			if u.same != nil {
				var got any
				if json.Unmarshal(v, &got) == nil && got == u.same {
					continue
				}
			}
			return invalidConf("%s: %s is not supported by epair (%s): remove the key", k, string(v), u.why)
		}
	}
	return nil
}

// checkBridgeKeys validates the bridge keys once the mode is known.
func checkBridgeKeys(c *NetConf) error {
	if c.Mode != ModeBridge {
		return nil
	}
	if c.IsDefaultGateway {
		c.IsGateway = true
	}
	if c.MacSpoofChk && !c.antiSpoofing() {
		return invalidConf("macspoofchk asks for the MAC check that antiSpoofing false turns off: drop one of them")
	}
	if c.HairpinMode && c.PromiscMode {
		return invalidConf("hairpinMode and promiscMode cannot both be set (as with the bridge plugin)")
	}
	if c.Vlan < 0 || c.Vlan > 4094 {
		return invalidConf("vlan %d is out of range 0..4094", c.Vlan)
	}
	if c.Vlan != 0 {
		if err := epair.ValidIfName(vlanIfName(c)); err != nil {
			return invalidConf("vlan %d on bridge %s: its gateway interface name: %v (use a shorter bridge name)", c.Vlan, c.Bridge, err)
		}
	}
	return nil
}

// vlanIfName is the interface of the bridge that holds the gateway of a
// VLAN network.
func vlanIfName(c *NetConf) string { return fmt.Sprintf("%s.%d", c.Bridge, c.Vlan) }

func (c *NetConf) preserveDefaultVlan() bool {
	return c.PreserveDefaultVlan == nil || *c.PreserveDefaultVlan
}

// addDefaultRoutes gives the pod a default route via the gateway for each
// family that IPAM gave none (isDefaultGateway).
func addDefaultRoutes(res *current.Result) {
	for _, ipc := range res.IPs {
		def := net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if ipc.Address.IP.To4() == nil {
			def = net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		found := false
		for _, r := range res.Routes {
			found = found || r.Dst.String() == def.String()
		}
		if !found {
			res.Routes = append(res.Routes, &types.Route{Dst: def, GW: ipc.Gateway})
		}
	}
}

// joinBridge makes the b end a port of the bridge (hairpin, VLAN) and,
// with isGateway, puts the gateways on the bridge or its VLAN interface.
// It returns the VLAN interface when it holds the gateways.
func joinBridge(conf *NetConf, b netlink.Link, res *current.Result) (netlink.Link, error) {
	br, err := bridgePort(conf, b)
	if err != nil || !conf.IsGateway {
		return nil, err
	}
	return bridgeGateways(conf, br, res)
}

// bridgePort makes the b end a port of the bridge (hairpin, VLAN); doing it
// again changes nothing. It returns the bridge.
func bridgePort(conf *NetConf, b netlink.Link) (*netlink.Bridge, error) {
	br, err := ensureBridge(conf)
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetMaster(b, br); err != nil {
		return nil, fmt.Errorf("attach %s to bridge %s: %w", b.Attrs().Name, conf.Bridge, err)
	}
	if err := netlink.LinkSetHairpin(b, conf.HairpinMode); err != nil {
		return nil, fmt.Errorf("hairpin mode on %s: %w", b.Attrs().Name, err)
	}
	if conf.Vlan != 0 {
		if err := accessPort(b, conf.Vlan, conf.preserveDefaultVlan()); err != nil {
			return nil, err
		}
	}
	return br, nil
}

// bridgeGateways puts the gateways of res on the bridge or its VLAN
// interface (isGateway), which it returns when it holds them.
func bridgeGateways(conf *NetConf, br *netlink.Bridge, res *current.Result) (netlink.Link, error) {
	var err error
	var gwLink netlink.Link = br
	var vlanLink netlink.Link
	if conf.Vlan != 0 {
		if vlanLink, err = ensureVlanIf(conf, br); err != nil {
			return nil, err
		}
		gwLink = vlanLink
	}
	for _, ipc := range res.IPs {
		gw := &net.IPNet{IP: ipc.Gateway, Mask: ipc.Address.Mask}
		if err := ensureGatewayAddr(gwLink, gw, conf.ForceAddress); err != nil {
			return nil, err
		}
	}
	if err := ip.EnableForward(res.IPs); err != nil {
		return nil, fmt.Errorf("enable IP forwarding: %w", err)
	}
	return vlanLink, nil
}

// ensureBridge returns the bridge, creating it if missing. A link of that
// name that is not a bridge is an error, never reused.
func ensureBridge(conf *NetConf) (*netlink.Bridge, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: conf.Bridge, MTU: conf.MTU, TxQLen: -1}}
	if conf.Vlan != 0 {
		on := true
		br.VlanFiltering = &on
	}
	if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, syscall.EEXIST) {
		return nil, fmt.Errorf("create bridge %s: %w", conf.Bridge, noVlanSupport(conf, err))
	}
	l, err := netlinksafe.LinkByName(conf.Bridge)
	if err != nil {
		return nil, fmt.Errorf("find bridge %s: %w", conf.Bridge, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge", conf.Bridge, l.Type())
	}
	// Fix the bridge's MAC (to the one it has): otherwise it takes the
	// lowest of its ports' and changes as pods come and go, and the pods'
	// neighbour entries for the gateway go stale.
	if err := netlink.LinkSetHardwareAddr(br, br.Attrs().HardwareAddr); err != nil {
		return nil, fmt.Errorf("fix the MAC of bridge %s: %w", conf.Bridge, err)
	}
	if conf.Vlan != 0 && (br.VlanFiltering == nil || !*br.VlanFiltering) {
		// A bridge made before without VLANs would forward across them.
		if err := netlink.BridgeSetVlanFiltering(br, true); err != nil {
			return nil, fmt.Errorf("VLAN filtering on bridge %s: %w", conf.Bridge, noVlanSupport(conf, err))
		}
	}
	if conf.PromiscMode {
		if err := netlink.SetPromiscOn(br); err != nil {
			return nil, fmt.Errorf("promiscuous mode on bridge %s: %w", conf.Bridge, err)
		}
	}
	// The host routes for these subnets are ours, not a router's.
	sysctl.Sysctl(fmt.Sprintf("net/ipv6/conf/%s/accept_ra", conf.Bridge), "0")
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("set bridge %s up: %w", conf.Bridge, err)
	}
	return br, nil
}

// noVlanSupport explains EOPNOTSUPP for a VLAN network: the kernel was
// built without bridge VLAN filtering or 802.1Q devices.
func noVlanSupport(conf *NetConf, err error) error {
	if conf.Vlan != 0 && errors.Is(err, syscall.EOPNOTSUPP) {
		return fmt.Errorf("%w: this kernel has no bridge VLAN filtering or 802.1Q VLAN devices (CONFIG_BRIDGE_VLAN_FILTERING, CONFIG_VLAN_8021Q), which vlan %d needs", err, conf.Vlan)
	}
	return err
}

// accessPort makes the port an untagged member of vid with vid as its PVID,
// leaving the default VLAN 1 unless told not to.
func accessPort(port netlink.Link, vid int, preserveDefault bool) error {
	name := port.Attrs().Name
	if !preserveDefault {
		all, err := nldump.Retry(netlink.BridgeVlanList)
		if err != nil {
			return fmt.Errorf("list VLANs: %w", err)
		}
		for _, v := range all[int32(port.Attrs().Index)] {
			if err := netlink.BridgeVlanDel(port, v.Vid, false, false, false, true); err != nil {
				return fmt.Errorf("remove VLAN %d from %s: %w", v.Vid, name, err)
			}
		}
	}
	if err := netlink.BridgeVlanAdd(port, uint16(vid), true, true, false, true); err != nil {
		return fmt.Errorf("VLAN %d on %s: %w", vid, name, err)
	}
	return nil
}

// ensureVlanIf returns <bridge>.<vlan>, the bridge's own interface on the
// VLAN, creating it if missing: the bridge device joins the VLAN tagged
// and the VLAN device untags, so the gateway answers only on that VLAN.
// (The reference bridge plugin builds the same with a veth pair.)
func ensureVlanIf(conf *NetConf, br *netlink.Bridge) (netlink.Link, error) {
	name := vlanIfName(conf)
	if err := netlink.BridgeVlanAdd(br, uint16(conf.Vlan), false, false, true, false); err != nil {
		return nil, fmt.Errorf("VLAN %d on bridge %s itself: %w", conf.Vlan, conf.Bridge, err)
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: br.Attrs().Index, MTU: conf.MTU}, VlanId: conf.Vlan}
	if err := netlink.LinkAdd(v); err != nil && !errors.Is(err, syscall.EEXIST) {
		return nil, fmt.Errorf("create %s: %w", name, noVlanSupport(conf, err))
	}
	l, err := netlinksafe.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	if got, ok := l.(*netlink.Vlan); !ok || got.VlanId != conf.Vlan || got.ParentIndex != br.Attrs().Index {
		return nil, fmt.Errorf("%s exists and is not VLAN %d of bridge %s", name, conf.Vlan, conf.Bridge)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("set %s up: %w", name, err)
	}
	return l, nil
}

// ensureGatewayAddr puts the gateway on l as the bridge plugin does: an
// address already there is fine; another IPv4 address, or an overlapping
// IPv6 one, is an error unless force, which replaces it.
func ensureGatewayAddr(l netlink.Link, gw *net.IPNet, force bool) error {
	fam := netlink.FAMILY_V4
	if gw.IP.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(l, fam) })
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == gw.String() {
			return nil
		}
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		if fam == netlink.FAMILY_V6 && !a.IPNet.Contains(gw.IP) && !gw.Contains(a.IP) {
			continue
		}
		if !force {
			return fmt.Errorf("%s already has the address %s, not the gateway %s (set forceAddress to replace it)", l.Attrs().Name, a.IPNet, gw)
		}
		if err := netlink.AddrDel(l, &a); err != nil {
			return fmt.Errorf("remove %s from %s: %w", a.IPNet, l.Attrs().Name, err)
		}
	}
	return addAddr(l, gw)
}

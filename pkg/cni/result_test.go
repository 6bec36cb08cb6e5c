package cni

import (
	"encoding/json"
	"net"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// keysOf returns the sorted keys of a JSON object.
func keysOf(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// TestResultAs: each version's result holds what that version's schema
// has and nothing more (the 1.1.0-only mtu fields never reach 1.0.0 or
// 0.x; ips[].version exactly in 0.x).
func TestResultAs(t *testing.T) {
	_, sub, _ := net.ParseCIDR("10.22.0.5/24")
	sub.IP = net.ParseIP("10.22.0.5").To4()
	table := 254
	full := &current.Result{
		CNIVersion: "1.1.0",
		Interfaces: []*current.Interface{{Name: "epair0b", Mac: "02:00:00:00:00:0b", Mtu: 1500}, {Name: "eth0", Mac: "02:00:00:00:00:0a", Mtu: 1500, Sandbox: "/var/run/netns/p"}},
		IPs:        []*current.IPConfig{{Interface: current.Int(1), Address: *sub, Gateway: net.ParseIP("10.22.0.1")}},
		Routes:     []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: net.ParseIP("10.22.0.1"), MTU: 1400, Table: &table}},
	}
	for _, c := range []struct{ version, iface, ip, route string }{
		{"0.3.0", "mac,name", "address,gateway,interface,version", "dst,gw"},
		{"0.3.1", "mac,name", "address,gateway,interface,version", "dst,gw"},
		{"0.4.0", "mac,name", "address,gateway,interface,version", "dst,gw"},
		{"1.0.0", "mac,name", "address,gateway,interface", "dst,gw"},
		{"1.1.0", "mac,mtu,name", "address,gateway,interface", "dst,gw,mtu,table"},
	} {
		t.Run(c.version, func(t *testing.T) {
			r, err := resultAs(full, c.version)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var top struct {
				CNIVersion string            `json:"cniVersion"`
				Interfaces []json.RawMessage `json:"interfaces"`
				IPs        []json.RawMessage `json:"ips"`
				Routes     []json.RawMessage `json:"routes"`
			}
			if err := json.Unmarshal(b, &top); err != nil {
				t.Fatal(err)
			}
			if top.CNIVersion != c.version {
				t.Errorf("cniVersion %q", top.CNIVersion)
			}
			if got := keysOf(t, top.Interfaces[0]); got != c.iface {
				t.Errorf("interfaces[0] keys %s, want %s: %s", got, c.iface, b)
			}
			if got := keysOf(t, top.IPs[0]); got != c.ip {
				t.Errorf("ips[0] keys %s, want %s: %s", got, c.ip, b)
			}
			if got := keysOf(t, top.Routes[0]); got != c.route {
				t.Errorf("routes[0] keys %s, want %s: %s", got, c.route, b)
			}
		})
	}
	if full.Interfaces[0].Mtu != 1500 || full.Routes[0].MTU != 1400 {
		t.Errorf("resultAs changed its input: %+v %+v", full.Interfaces[0], full.Routes[0])
	}
}

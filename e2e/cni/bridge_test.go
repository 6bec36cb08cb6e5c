package cni_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/vishvananda/netlink"
)

// hostLink is the netlink view of a link in the host namespace.
func hostLink(t *testing.T, e *env, name string) netlink.Link {
	t.Helper()
	var l netlink.Link
	if err := e.host.Do(func(ns.NetNS) (err error) {
		l, err = netlink.LinkByName(name)
		return err
	}); err != nil {
		t.Fatalf("link %s in the host netns: %v", name, err)
	}
	return l
}

// wantConfigError runs ADD of n and wants code 7 with every word of want
// in the message, and nothing left behind.
func wantConfigError(t *testing.T, e *env, n netw, want ...string) {
	t.Helper()
	p := e.pod(t)
	a, err := e.tryAdd(t, e.list(t, n), harness.RuntimeConf(newID(t), p, "eth0"), p)
	if err == nil {
		t.Fatalf("ADD of %+v succeeded: %+v", n.epair, a.res)
	}
	code, _ := harness.ErrorCode(err)
	if code != types.ErrInvalidNetworkConfig {
		t.Errorf("ADD: %v (code %d), want code 7", err, code)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	t.Logf("INPUT %v -> code %d: %v; left: none", n.epair, code, err)
	e.assertNothingLeft(t, n.name, p)
}

// TestBridgeIsGateway: the reference bridge plugin's isGateway. Off (its
// default) the bridge is plain L2: pods reach each other but the bridge
// holds no address, so the host does not reach them.
func TestBridgeIsGateway(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		list := e.list(t, netw{name: "l2", mode: "bridge", epair: map[string]any{"bridge": "epbr-l2", "isGateway": false}})
		p1, p2 := e.pod(t), e.pod(t)
		a1, a2 := e.add(t, list, p1), e.add(t, list, p2)
		ping(t, p1, a2.ip(t, 4).Address.IP.String())
		if out := harness.MustRun(t, e.host, "ip", "-4", "-o", "addr", "show", "dev", "epbr-l2"); strings.TrimSpace(out) != "" {
			t.Errorf("isGateway false, but the bridge has an address: %s", out)
		}
		if out, err := harness.Run(t, e.host, "ping", "-c", "1", "-W", "1", a1.ip(t, 4).Address.IP.String()); err == nil {
			t.Errorf("the host reached a pod on an L2-only bridge: %s", out)
		}
		if err := e.cni.Check(list, a1.rt); err != nil {
			t.Errorf("CHECK: %v", err)
		}
	})
}

// TestBridgeIsDefaultGateway: with isDefaultGateway the pod gets a default
// route via the gateway even when IPAM gives no routes, the result lists
// it, and the bridge holds the gateway.
func TestBridgeIsDefaultGateway(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, true)
		ipam := map[string]any{
			"type": "host-local", "dataDir": e.dataDir,
			"ranges": []any{
				[]any{map[string]any{"subnet": "10.22.0.0/24"}},
				[]any{map[string]any{"subnet": "fd00:22::/64"}},
			},
		}
		for _, dgw := range []bool{false, true} {
			list := e.list(t, netw{name: "dgw", mode: "bridge", epair: map[string]any{"bridge": "epbr-dgw", "isDefaultGateway": dgw, "ipam": ipam}})
			p := e.pod(t)
			a := e.add(t, list, p)
			for _, c := range []struct{ def, dst, gw string }{
				{"0.0.0.0/0", "192.0.2.77", "10.22.0.1"},
				{"::/0", "2001:db8::77", "fd00:22::1"},
			} {
				var inResult bool
				for _, r := range a.res.Routes {
					inResult = inResult || (r.Dst.String() == c.def && r.GW.String() == c.gw)
				}
				out, err := harness.Run(t, p, "ip", "route", "get", c.dst)
				routed := err == nil && strings.Contains(out, "via "+c.gw)
				if dgw && (!inResult || !routed) {
					t.Errorf("isDefaultGateway: result routes %v (default via %s: %v), pod routes %s via %q", a.res.Routes, c.gw, inResult, c.dst, out)
				}
				if !dgw && (inResult || routed) {
					t.Errorf("no isDefaultGateway and no IPAM routes, yet a default route: result %v, pod %q", a.res.Routes, out)
				}
			}
			if dgw {
				ping(t, p, "10.22.0.1")
				if err := e.cni.Check(list, a.rt); err != nil {
					t.Errorf("CHECK: %v", err)
				}
			}
			e.del(t, a)
		}
	})
}

// TestBridgeForceAddress: a bridge that already holds another address of
// the gateway's family makes ADD fail, leaving nothing and the address
// alone, unless forceAddress replaces it.
func TestBridgeForceAddress(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		harness.MustRun(t, e.host, "ip", "link", "add", "epbr-force", "type", "bridge")
		harness.MustRun(t, e.host, "ip", "addr", "add", "10.22.0.254/24", "dev", "epbr-force")
		n := netw{name: "force", mode: "bridge", epair: map[string]any{"bridge": "epbr-force"}}
		p := e.pod(t)
		a, err := e.tryAdd(t, e.list(t, n), harness.RuntimeConf(newID(t), p, "eth0"), p)
		if err == nil {
			t.Fatalf("ADD replaced 10.22.0.254 on the bridge without forceAddress: %+v", a.res)
		}
		if !strings.Contains(err.Error(), "forceAddress") {
			t.Errorf("ADD error %q does not say forceAddress would replace the address", err)
		}
		t.Logf("INPUT bridge with 10.22.0.254/24, no forceAddress -> %v; left: none", err)
		e.assertNothingLeft(t, n.name, p)
		if cidr, _ := addrCIDR(t, e.host, "epbr-force", "10.22.0.254"); cidr == "" {
			t.Errorf("the failed ADD removed the bridge's own address")
		}
		n.epair["forceAddress"] = true
		a = e.add(t, e.list(t, n), p)
		if cidr, _ := addrCIDR(t, e.host, "epbr-force", "10.22.0.1"); cidr != "10.22.0.1/24" {
			t.Errorf("forceAddress: bridge has %q, want the gateway 10.22.0.1/24", cidr)
		}
		if cidr, _ := addrCIDR(t, e.host, "epbr-force", "10.22.0.254"); cidr != "" {
			t.Errorf("forceAddress kept the old address %s", cidr)
		}
		ping(t, e.host, a.ip(t, 4).Address.IP.String())
	})
}

// TestBridgePortModes: hairpinMode on the b end's port, promiscMode on the
// bridge; both at once is refused, as the bridge plugin refuses it.
func TestBridgePortModes(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		wantConfigError(t, e, netw{name: "both", mode: "bridge", epair: map[string]any{"hairpinMode": true, "promiscMode": true}}, "hairpinMode", "promiscMode")
		for _, c := range []struct {
			key     string
			br      string
			hairpin bool
		}{{"hairpinMode", "epbr-hp", true}, {"promiscMode", "epbr-pr", false}} {
			list := e.list(t, netw{name: c.br, mode: "bridge", epair: map[string]any{"bridge": c.br, c.key: true}})
			a := e.add(t, list, e.pod(t))
			hp := strings.Contains(harness.MustRun(t, e.host, "ip", "-d", "link", "show", "dev", a.bEnd(t)), "hairpin on")
			promisc := hostLink(t, e, c.br).Attrs().Promisc != 0
			if hp != c.hairpin || promisc == c.hairpin {
				t.Errorf("%s: hairpin on the port %v, bridge promiscuous %v", c.key, hp, promisc)
			}
			if err := e.cni.Check(list, a.rt); err != nil {
				t.Errorf("CHECK: %v", err)
			}
		}
	})
}

type bridgeVlan struct {
	Ifname string `json:"ifname"`
	Vlans  []struct {
		Vlan  int      `json:"vlan"`
		Flags []string `json:"flags"`
	} `json:"vlans"`
}

// portVlans are the VLANs of a bridge port, with "pvid"/"untagged" marks.
func portVlans(t *testing.T, e *env, port string) map[int]string {
	t.Helper()
	var all []bridgeVlan
	if err := json.Unmarshal([]byte(harness.MustRun(t, e.host, "bridge", "-j", "vlan", "show", "dev", port)), &all); err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, p := range all {
		for _, v := range p.Vlans {
			out[v.Vlan] = strings.ToLower(strings.Join(v.Flags, " "))
		}
	}
	return out
}

// TestBridgeVlan: vlan makes the b end an untagged access port of the VLAN
// on a VLAN-filtering bridge: pods of one VLAN reach each other and their
// gateway (on <bridge>.<vlan>), a pod of another VLAN on the same bridge
// and subnet reaches neither. preserveDefaultVlan false drops VLAN 1.
func TestBridgeVlan(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		wantConfigError(t, e, netw{name: "badvlan", mode: "bridge", epair: map[string]any{"vlan": 4095}}, "vlan", "4094")
		wantConfigError(t, e, netw{name: "longvlan", mode: "bridge", epair: map[string]any{"bridge": "epair-bridge-12", "vlan": 100}}, "vlan", "name")
		if out, err := harness.Run(t, e.host, "ip", "link", "add", "epvl-probe", "type", "bridge", "vlan_filtering", "1"); err != nil {
			// The ADD must still fail cleanly, saying why.
			p := e.pod(t)
			n := netw{name: "novlan", mode: "bridge", epair: map[string]any{"vlan": 100}}
			_, err := e.tryAdd(t, e.list(t, n), harness.RuntimeConf(newID(t), p, "eth0"), p)
			if err == nil || !strings.Contains(err.Error(), "VLAN") {
				t.Errorf("ADD with vlan on a kernel without VLAN filtering: %v, want an error that says so", err)
			}
			t.Logf("INPUT vlan 100 on a kernel without VLAN filtering -> %v; left: none", err)
			e.assertNothingLeft(t, n.name, p)
			t.Skipf("this kernel has no bridge VLAN filtering (%s): the VLAN datapath cannot be tested here", strings.TrimSpace(out))
		}
		harness.MustRun(t, e.host, "ip", "link", "del", "epvl-probe")
		vnet := func(name string, vlan int, gw bool, start, end string, extra map[string]any) netw {
			c := map[string]any{
				"bridge": "epbr-vl", "vlan": vlan, "isGateway": gw,
				"ipam": map[string]any{"type": "host-local", "dataDir": e.dataDir, "ranges": []any{[]any{map[string]any{
					"subnet": "10.22.10.0/24", "rangeStart": start, "rangeEnd": end, "gateway": "10.22.10.1"}}}},
			}
			for k, v := range extra {
				c[k] = v
			}
			return netw{name: name, mode: "bridge", epair: c}
		}
		n100 := e.list(t, vnet("vlan100", 100, true, "10.22.10.10", "10.22.10.19", nil))
		n200 := e.list(t, vnet("vlan200", 200, false, "10.22.10.20", "10.22.10.29", map[string]any{"preserveDefaultVlan": false}))
		p1, p2, p3 := e.pod(t), e.pod(t), e.pod(t)
		a1, a2, a3 := e.add(t, n100, p1), e.add(t, n100, p2), e.add(t, n200, p3)

		if n := len(a1.res.Interfaces); n != 4 || a1.res.Interfaces[3].Name != "epbr-vl.100" || *a1.res.IPs[0].Interface != 2 {
			t.Errorf("result interfaces %+v (ip on %d), want bridge, b, a, epbr-vl.100 with the ip on the a end", a1.res.Interfaces, *a1.res.IPs[0].Interface)
		}
		if v := portVlans(t, e, a1.bEnd(t)); !strings.Contains(v[100], "pvid") || !strings.Contains(v[100], "untagged") || v[1] == "" {
			t.Errorf("port of a vlan-100 pod: %v, want 100 PVID untagged and VLAN 1 kept", v)
		}
		if v := portVlans(t, e, a3.bEnd(t)); len(v) != 1 || !strings.Contains(v[200], "pvid") {
			t.Errorf("port of the vlan-200 pod with preserveDefaultVlan false: %v, want only 200 PVID", v)
		}
		if cidr, _ := addrCIDR(t, e.host, "epbr-vl.100", "10.22.10.1"); cidr != "10.22.10.1/24" {
			t.Errorf("gateway of vlan 100 not on epbr-vl.100: %q", cidr)
		}
		ping(t, p1, a2.ip(t, 4).Address.IP.String())
		ping(t, p2, "10.22.10.1")
		for _, dst := range []string{a1.ip(t, 4).Address.IP.String(), "10.22.10.1"} {
			if out, err := harness.Run(t, p3, "ping", "-c", "1", "-W", "1", dst); err == nil {
				t.Errorf("a pod on vlan 200 reached %s on vlan 100: %s", dst, out)
			}
		}
		for _, a := range []*attachment{a1, a3} {
			if err := e.cni.Check(a.list, a.rt); err != nil {
				t.Errorf("CHECK %s: %v", a.list.Name, err)
			}
		}
	})
}

// TestModeKeys: a key that epair would otherwise ignore is refused with
// code 7: bridge keys in routed mode, and the bridge plugin's keys epair
// does not implement — unless the value asks for what epair does anyway.
func TestModeKeys(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		wantConfigError(t, e, netw{name: "r1", mode: "routed", epair: map[string]any{"isDefaultGateway": true, "hairpinMode": false}}, "isDefaultGateway", "hairpinMode", "routed")
		wantConfigError(t, e, netw{name: "r2", epair: map[string]any{"bridge": "cni0"}}, "bridge", "routed")
		wantConfigError(t, e, netw{name: "b1", mode: "bridge", epair: map[string]any{"vlanTrunk": []any{map[string]any{"id": 5}}}}, "vlanTrunk")
		wantConfigError(t, e, netw{name: "b2", mode: "bridge", epair: map[string]any{"macspoofchk": true, "antiSpoofing": false}}, "macspoofchk", "antiSpoofing")
		wantConfigError(t, e, netw{name: "b3", mode: "bridge", epair: map[string]any{"enabledad": true}}, "enabledad")
		wantConfigError(t, e, netw{name: "m1", epair: map[string]any{"ipMasq": true, "ipMasqBackend": "pf"}}, "ipMasqBackend")
		// What epair does anyway is accepted.
		list := e.list(t, netw{name: "same", mode: "bridge", epair: map[string]any{"macspoofchk": true, "enabledad": false, "portIsolation": false}})
		a := e.add(t, list, e.pod(t))
		ping(t, e.host, a.ip(t, 4).Address.IP.String())
	})
}

// Package cni_test drives the real epair binary as a CNI plugin through
// libcni, as a runtime would: a fake host namespace with a daemon in it, pod
// namespaces, the reference IPAM and meta plugins, real traffic.
package cni_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
)

var modes = []string{"routed", "bridge"}

const gw4 = "10.22.0.1"

// checkAttachment checks a healthy attachment against the contract: the
// result's shape, the pod's interface, the host side of the mode.
func checkAttachment(t *testing.T, e *env, a *attachment, mode string, mtu int) {
	t.Helper()
	r := a.res
	want := 2
	if mode == "bridge" {
		want = 3
	}
	if len(r.Interfaces) != want {
		t.Fatalf("%s result has %d interfaces, want %d: %+v", mode, len(r.Interfaces), want, r.Interfaces)
	}
	ai := want - 1
	aEnd, bEnd := r.Interfaces[ai], r.Interfaces[ai-1]
	if aEnd.Name != a.ifName || aEnd.Sandbox != a.pod.Path() || aEnd.Mac == "" {
		t.Errorf("a end in the result: %+v, want name %s sandbox %s and a MAC", *aEnd, a.ifName, a.pod.Path())
	}
	if !bEndRE.MatchString(bEnd.Name) || bEnd.Sandbox != "" || bEnd.Mac == "" {
		t.Errorf("b end in the result: %+v, want epair<N>b on the host with a MAC", *bEnd)
	}
	br := bridgeName(t, a)
	if mode == "bridge" && (r.Interfaces[0].Name != br || r.Interfaces[0].Sandbox != "") {
		t.Errorf("bridge in the result: %+v, want %s on the host", *r.Interfaces[0], br)
	}
	if len(r.IPs) == 0 {
		t.Fatalf("result has no IPs: %+v", r)
	}
	for _, c := range r.IPs {
		if c.Interface == nil || *c.Interface != ai {
			t.Errorf("ip %s points at interface %v, want %d (the a end)", c.Address.String(), c.Interface, ai)
		}
		if c.Gateway == nil {
			t.Errorf("ip %s has no gateway", c.Address.String())
		}
		def := "0.0.0.0/0"
		if c.Address.IP.To4() == nil {
			def = "::/0"
		}
		found := false
		for _, rt := range r.Routes {
			found = found || rt.Dst.String() == def
		}
		if !found {
			t.Errorf("result routes %v lack IPAM's %s", r.Routes, def)
		}
	}

	// The pod side.
	pl := mustLink(t, a.pod, a.ifName)
	if pl.mac != aEnd.Mac {
		t.Errorf("pod %s MAC %s, result says %s", a.ifName, pl.mac, aEnd.Mac)
	}
	if pl.mtu != mtu {
		t.Errorf("pod %s MTU %d, want %d", a.ifName, pl.mtu, mtu)
	}
	for _, c := range r.IPs {
		ip := c.Address.IP.String()
		cidr, line := addrCIDR(t, a.pod, a.ifName, ip)
		if cidr == "" {
			t.Errorf("pod %s lacks %s:\n%s", a.ifName, ip, harness.MustRun(t, a.pod, "ip", "addr"))
		}
		if strings.Contains(line, "tentative") || strings.Contains(line, "dadfailed") {
			t.Errorf("pod address %s not usable at once: %s", ip, line)
		}
	}

	// The host side.
	hl := mustLink(t, e.host, bEnd.Name)
	if hl.mac != bEnd.Mac || hl.mtu != mtu {
		t.Errorf("b end %s: MAC %s MTU %d, result says %s, want MTU %d", bEnd.Name, hl.mac, hl.mtu, bEnd.Mac, mtu)
	}
	p := e.pairOf(t, a)
	if p == nil {
		t.Fatalf("daemon lists no pair with b end %s: %+v", bEnd.Name, e.pairs(t))
	}
	if p.A.Name != a.ifName || p.A.Netns != a.pod.Path() || !p.Forwarding {
		t.Errorf("daemon's pair: %+v", *p)
	}
	if p.Owner == nil || p.Owner.ContainerID != a.id || p.Owner.IfName != a.ifName || p.Owner.Network != a.list.Name {
		t.Errorf("pair owner %+v, want {%s %s %s}", p.Owner, a.id, a.ifName, a.list.Name)
	}
	for _, c := range r.IPs {
		ip, gw := c.Address.IP.String(), c.Gateway.String()
		v6 := c.Address.IP.To4() == nil
		switch mode {
		case "routed":
			host := "/32"
			if v6 {
				host = "/128"
			}
			if cidr, _ := addrCIDR(t, e.host, bEnd.Name, gw); cidr != gw+host {
				t.Errorf("b end %s carries %q, want the gateway %s%s:\n%s", bEnd.Name, cidr, gw, host, harness.MustRun(t, e.host, "ip", "addr", "show", bEnd.Name))
			}
			if out := harness.MustRun(t, e.host, "ip", "route", "get", ip); !strings.Contains(out, "dev "+bEnd.Name) {
				t.Errorf("host routes %s not over %s: %s", ip, bEnd.Name, out)
			}
			if hostRoutesTo(t, e.host, ip) == "" {
				t.Errorf("host has no route to %s%s", ip, host)
			}
		case "bridge":
			if out := harness.MustRun(t, e.host, "ip", "-o", "link", "show", bEnd.Name); !strings.Contains(out, "master "+br) {
				t.Errorf("b end not enslaved to %s: %s", br, out)
			}
			ones, _ := c.Address.Mask.Size()
			if cidr, _ := addrCIDR(t, e.host, br, gw); cidr != fmt.Sprintf("%s/%d", gw, ones) {
				t.Errorf("bridge %s carries %q, want %s/%d", br, cidr, gw, ones)
			}
		}
		// Everything leaves the pod through the gateway (IPAM's default route).
		dst := "192.0.2.77"
		if v6 {
			dst = "2001:db8::77"
		}
		if out := harness.MustRun(t, a.pod, "ip", "route", "get", dst); !strings.Contains(out, "via "+gw) {
			t.Errorf("pod does not route %s via the gateway %s: %s", dst, gw, out)
		}
	}
	if v := readSysctl(t, e.host, "net.ipv4.ip_forward"); mode == "routed" && v != "1" {
		t.Errorf("host net.ipv4.ip_forward = %s, want 1", v)
	}
}

func TestTwoPodsPing(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		for _, mode := range modes {
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, pl, false)
				list := e.list(t, netw{mode: mode})
				p1, p2 := e.pod(t), e.pod(t)
				a1, a2 := e.add(t, list, p1), e.add(t, list, p2)
				checkAttachment(t, e, a1, mode, 1500)
				checkAttachment(t, e, a2, mode, 1500)
				ip1, ip2 := a1.ip(t, 4).Address.IP.String(), a2.ip(t, 4).Address.IP.String()
				if ip1 == ip2 || a1.ip(t, 4).Gateway.String() != gw4 {
					t.Fatalf("addresses %s %s gateway %s", ip1, ip2, a1.ip(t, 4).Gateway)
				}
				if mode == "routed" {
					// pod to pod goes through the host.
					if out := harness.MustRun(t, p1, "ip", "route", "get", ip2); !strings.Contains(out, "via "+gw4) {
						t.Errorf("pod1 reaches pod2 not via the host: %s", out)
					}
				}
				ping(t, p1, ip2)
				ping(t, p2, ip1)
				ping(t, p1, gw4)
				ping(t, p2, gw4)
				ping(t, e.host, ip1)
				ping(t, e.host, ip2)
				for _, a := range []*attachment{a1, a2} {
					if err := e.cni.Check(list, a.rt); err != nil {
						t.Errorf("CHECK of a healthy attachment: %v", err)
					}
				}
				e.del(t, a1)
				e.assertGone(t, a1)
				ping(t, e.host, ip2) // the other pod is untouched
				e.del(t, a2)
				e.assertGone(t, a2)
				e.assertNothingLeft(t, list.Name, p1, p2)
			})
		}
	})
}

func TestCheckFailsWhenAddressRemoved(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		for _, mode := range modes {
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, pl, false)
				list := e.list(t, netw{mode: mode})
				p := e.pod(t)
				a := e.add(t, list, p)
				if err := e.cni.Check(list, a.rt); err != nil {
					t.Fatalf("CHECK before: %v", err)
				}
				ip := a.ip(t, 4).Address.IP.String()
				cidr, _ := addrCIDR(t, p, "eth0", ip)
				if cidr == "" {
					t.Fatalf("pod lacks %s", ip)
				}
				harness.MustRun(t, p, "ip", "addr", "del", cidr, "dev", "eth0")
				err := e.cni.Check(list, a.rt)
				if err == nil {
					t.Fatalf("CHECK passed with %s removed from eth0", cidr)
				}
				t.Logf("CHECK after removing %s: %v", cidr, err)
				e.del(t, a)
				e.assertGone(t, a)
			})
		}
	})
}

func TestDelTwice(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		for _, mode := range modes {
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, pl, false)
				list := e.list(t, netw{mode: mode})
				p := e.pod(t)
				a := e.add(t, list, p)
				e.del(t, a)
				if err := e.cni.Del(list, a.rt); err != nil {
					t.Fatalf("second DEL: %v", err)
				}
				e.assertGone(t, a)
				e.assertNothingLeft(t, list.Name, p)
			})
		}
	})
}

func TestDelAfterNetnsGone(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		for _, mode := range modes {
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, pl, false)
				list := e.list(t, netw{mode: mode})
				p := e.pod(t)
				a := e.add(t, list, p)
				ip := a.ip(t, 4).Address.IP.String()
				if !e.reserved(t, list.Name, ip) {
					t.Fatalf("host-local holds no %s after ADD: %v", ip, e.reservations(t, list.Name))
				}
				harness.DeleteNS(t, p)
				e.del(t, a)
				e.assertGone(t, a)
				if err := e.cni.Del(list, a.rt); err != nil {
					t.Fatalf("second DEL with the netns gone: %v", err)
				}
				// The address can be had again.
				p2 := e.pod(t)
				a2 := e.add(t, list, p2)
				ping(t, e.host, a2.ip(t, 4).Address.IP.String())
			})
		}
	})
}

// TestGC: GC with a list of valid attachments removes the pairs and
// addresses of this network's other attachments and nothing else.
func TestGC(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		for _, mode := range modes {
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, pl, false)
				gcnet := e.list(t, netw{name: "gcnet", mode: mode, subnets: []string{"10.22.1.0/24"}})
				other := e.list(t, netw{name: "othernet", mode: "routed", subnets: []string{"10.22.2.0/24"}})
				if mode == "bridge" {
					other = e.list(t, netw{name: "othernet", mode: "bridge", subnets: []string{"10.22.2.0/24"}, epair: map[string]any{"bridge": "epair-br1"}})
				}
				pk, ps, po := e.pod(t), e.pod(t), e.pod(t)
				keep, stale, oth := e.add(t, gcnet, pk), e.add(t, gcnet, ps), e.add(t, other, po)

				// A runner with an empty cache: libcni has no attachment to DEL
				// by itself, so what goes is what the plugin's GC removes.
				gc := harness.NewCNIWithPlugins(t, e.host, e.cni.PluginDir)
				if err := gc.GC(gcnet, []types.GCAttachment{{ContainerID: keep.id, IfName: "eth0"}}); err != nil {
					t.Fatalf("GC: %v", err)
				}
				e.assertGone(t, stale)
				if _, err := link(t, ps, "eth0"); err == nil {
					t.Errorf("GC left the stale attachment's a end in its pod")
				}
				checkAttachment(t, e, oth, mode, 1500)
				for _, a := range []*attachment{keep, oth} {
					if e.pairOf(t, a) == nil {
						t.Errorf("GC removed the pair of %s (network %s)", a.id, a.list.Name)
					}
					ip := a.ip(t, 4).Address.IP.String()
					if !e.reserved(t, a.list.Name, ip) {
						t.Errorf("GC freed %s of %s (network %s)", ip, a.id, a.list.Name)
					}
					ping(t, e.host, ip)
				}
				if err := e.cni.Check(gcnet, keep.rt); err != nil {
					t.Errorf("CHECK of the kept attachment after GC: %v", err)
				}
				// DEL of what GC already removed still succeeds.
				e.del(t, stale)
			})
		}
	})
}

func TestStatus(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		list := e.list(t, netw{})
		if err := e.cni.Status(list); err != nil {
			t.Fatalf("STATUS with the daemon up: %v", err)
		}
		e.d.Kill()
		err := e.cni.Status(list)
		if code, ok := harness.ErrorCode(err); !ok || code != types.ErrPluginNotAvailable {
			t.Fatalf("STATUS with the daemon down: %v (code %d), want code 50", err, code)
		}
		if !strings.Contains(err.Error(), e.d.Socket) {
			t.Errorf("STATUS error %q does not name the socket %s", err, e.d.Socket)
		}
		e.d.Start()
		if err := e.cni.Status(list); err != nil {
			t.Fatalf("STATUS with the daemon back: %v", err)
		}
	})
}

func TestDualStack(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		for _, mode := range modes {
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, pl, true)
				list := e.list(t, netw{mode: mode, subnets: []string{"10.22.0.0/24", "fd00:22::/64"}})
				p1, p2 := e.pod(t), e.pod(t)
				a1, a2 := e.add(t, list, p1), e.add(t, list, p2)
				checkAttachment(t, e, a1, mode, 1500)
				checkAttachment(t, e, a2, mode, 1500)
				if mode == "routed" {
					if v := readSysctl(t, e.host, "net.ipv6.conf.all.forwarding"); v != "1" {
						t.Errorf("host net.ipv6.conf.all.forwarding = %s, want 1", v)
					}
				}
				for _, fam := range []int{4, 6} {
					c1, c2 := a1.ip(t, fam), a2.ip(t, fam)
					ping(t, p1, c2.Address.IP.String())
					ping(t, p2, c1.Address.IP.String())
					ping(t, p1, c1.Gateway.String())
					ping(t, p2, c2.Gateway.String())
					ping(t, e.host, c1.Address.IP.String())
					ping(t, e.host, c2.Address.IP.String())
				}
				if g := a1.ip(t, 6).Gateway.String(); g != "fd00:22::1" {
					t.Errorf("IPv6 gateway %s, want fd00:22::1", g)
				}
				for _, a := range []*attachment{a1, a2} {
					if err := e.cni.Check(list, a.rt); err != nil {
						t.Errorf("CHECK: %v", err)
					}
					e.del(t, a)
					e.assertGone(t, a)
				}
				e.assertNothingLeft(t, list.Name, p1, p2)
			})
		}
	})
}

// TestResultVersions: ADD answers in the config's cniVersion.
func TestResultVersions(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
			t.Run(v, func(t *testing.T) {
				list := e.list(t, netw{version: v})
				p := e.pod(t)
				rt := harness.RuntimeConf(newID(t), p, "eth0")
				res, err := e.cni.AddRaw(list, rt)
				if err != nil {
					t.Fatalf("ADD %s: %v", v, err)
				}
				a := &attachment{id: rt.ContainerID, ifName: "eth0", pod: p, list: list, rt: rt}
				t.Cleanup(func() {
					if !a.deleted {
						e.cni.Del(list, rt)
					}
				})
				if res.Version() != v {
					t.Errorf("result version %s, want %s", res.Version(), v)
				}
				switch r := res.(type) {
				case *types040.Result:
					if strings.HasPrefix(v, "1.") {
						t.Errorf("a %s ADD returned a 0.4.0-type result", v)
					}
					if len(r.IPs) != 1 {
						t.Errorf("IPs %+v, want one", r.IPs)
					}
				case *types100.Result:
					if !strings.HasPrefix(v, "1.") {
						t.Errorf("a %s ADD returned a 1.x-type result", v)
					}
					if len(r.IPs) != 1 {
						t.Errorf("IPs %+v, want one", r.IPs)
					}
				default:
					t.Errorf("result of type %T", res)
				}
				if a.res, err = types100.NewResultFromResult(res); err != nil {
					t.Fatalf("convert: %v", err)
				}
				checkAttachment(t, e, a, "routed", 1500)
				ping(t, e.host, a.ip(t, 4).Address.IP.String())
				e.del(t, a)
				e.assertGone(t, a)
			})
		}
	})
}

func TestVersion(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		var got []string
		err := e.host.Do(func(ns.NetNS) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			info, err := e.cni.Config.GetVersionInfo(ctx, "epair")
			if err == nil {
				got = info.SupportedVersions()
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
			found := false
			for _, g := range got {
				found = found || g == v
			}
			if !found {
				t.Errorf("VERSION lists %v, lacks %s", got, v)
			}
		}
	})
}

// TestMTUAndMAC: the mtu key, runtimeConfig mac and CNI_ARGS MAC.
func TestMTUAndMAC(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		list := e.list(t, netw{epair: map[string]any{"mtu": 9000, "capabilities": map[string]any{"mac": true}}})
		p1, p2 := e.pod(t), e.pod(t)
		const mac1, mac2 = "02:00:00:aa:bb:01", "02:00:00:aa:bb:02"
		rt1 := harness.RuntimeConf(newID(t), p1, "eth0")
		rt1.CapabilityArgs = map[string]any{"mac": mac1}
		a1, err := e.tryAdd(t, list, rt1, p1)
		if err != nil {
			t.Fatalf("ADD with runtimeConfig mac: %v", err)
		}
		rt2 := harness.RuntimeConf(newID(t), p2, "eth0")
		rt2.Args = [][2]string{{"IgnoreUnknown", "1"}, {"MAC", mac2}}
		a2, err := e.tryAdd(t, list, rt2, p2)
		if err != nil {
			t.Fatalf("ADD with CNI_ARGS MAC: %v", err)
		}
		for _, c := range []struct {
			a   *attachment
			mac string
		}{{a1, mac1}, {a2, mac2}} {
			checkAttachment(t, e, c.a, "routed", 9000)
			if got := mustLink(t, c.a.pod, "eth0").mac; got != c.mac {
				t.Errorf("pod eth0 MAC %s, want %s", got, c.mac)
			}
		}
		// A jumbo frame crosses without fragmentation.
		harness.MustRun(t, e.host, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "8000", a1.ip(t, 4).Address.IP.String())
		ping(t, p1, a2.ip(t, 4).Address.IP.String())
	})
}

// TestDNS: the config's dns reaches the result.
func TestDNS(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		list := e.list(t, netw{epair: map[string]any{"dns": map[string]any{"nameservers": []string{"10.22.0.53"}, "search": []string{"pods.example.test"}}}})
		a := e.add(t, list, e.pod(t))
		if d := a.res.DNS; len(d.Nameservers) != 1 || d.Nameservers[0] != "10.22.0.53" || len(d.Search) != 1 || d.Search[0] != "pods.example.test" {
			t.Errorf("result dns %+v, want the config's", d)
		}
	})
}

// TestIPMasq: with ipMasq a pod reaches a network that has no route back to
// the pod subnet (an "outside" namespace behind the host).
func TestIPMasq(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		out := track(t, harness.NewNS(t))
		// host 198.51.100.1/24 <-veth-> 198.51.100.2/24 outside, no route back.
		veth := fmt.Sprintf("vo%d", ids.Add(1))
		harness.MustRun(t, e.host, "ip", "link", "add", veth, "type", "veth", "peer", "name", "ext0", "netns", out.Path())
		harness.MustRun(t, e.host, "ip", "addr", "add", "198.51.100.1/24", "dev", veth)
		harness.MustRun(t, e.host, "ip", "link", "set", veth, "up")
		harness.MustRun(t, out, "ip", "addr", "add", "198.51.100.2/24", "dev", "ext0")
		harness.MustRun(t, out, "ip", "link", "set", "ext0", "up")

		for _, masq := range []bool{false, true} {
			t.Run(fmt.Sprintf("ipMasq=%v", masq), func(t *testing.T) {
				list := e.list(t, netw{name: fmt.Sprintf("masq%v", masq), epair: map[string]any{"ipMasq": masq}})
				p := e.pod(t)
				a := e.add(t, list, p)
				o, err := harness.Run(t, p, "ping", "-c", "2", "-i", "0.2", "-W", "1", "198.51.100.2")
				if masq && err != nil {
					t.Errorf("with ipMasq the pod cannot reach the outside: %v\n%s", err, o)
				}
				if !masq && err == nil {
					t.Errorf("without ipMasq the pod reached an outside with no route back: masquerading where none was asked for")
				}
				e.del(t, a)
				e.assertGone(t, a)
				ip := a.ip(t, 4).Address.IP.String()
				rules, _ := harness.Run(t, e.host, "iptables-save")
				nft, _ := harness.Run(t, e.host, "nft", "list", "ruleset")
				for _, r := range strings.Split(rules+nft, "\n") {
					if strings.Contains(r, ip+"/32") || strings.Contains(r, ip+" ") {
						t.Errorf("a rule for %s survived DEL: %s", ip, r)
					}
				}
			})
		}
	})
}

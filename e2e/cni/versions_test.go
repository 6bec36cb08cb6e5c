package cni_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/epair-cni/epair/e2e/harness"
)

// resultSchema is what the CNI spec of one version lets an ADD result
// (Section 5 "Result Types" of SPEC.md at tags spec-v0.3.0, spec-v0.3.1,
// spec-v0.4.0, spec-v1.0.0 and of the 1.1.0 spec) hold: the keys allowed
// at each level. 0.3.x and 0.4.0 have one result shape, with ips[].version
// ("4" or "6") required and no MTU anywhere (the 0.3.0 text calls the list
// "ip", a typo 0.3.1 fixed: every implementation, libcni's types040 too,
// says "ips"). 1.0.0 drops ips[].version. 1.1.0 adds interfaces[].mtu,
// socketPath and pciID and routes[].mtu, advmss, priority, table and scope.
type resultSchema struct {
	top, iface, ip, route, dns []string
	// ipVersion: ips[].version is required (and must match the address).
	ipVersion bool
}

var resultVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

func schemaFor(t *testing.T, v string) resultSchema {
	t.Helper()
	s := resultSchema{
		top:   []string{"cniVersion", "interfaces", "ips", "routes", "dns"},
		iface: []string{"name", "mac", "sandbox"},
		ip:    []string{"address", "gateway", "interface"},
		route: []string{"dst", "gw"},
		dns:   []string{"nameservers", "domain", "search", "options"},
	}
	switch v {
	case "0.3.0", "0.3.1", "0.4.0":
		s.ip = append(s.ip, "version")
		s.ipVersion = true
	case "1.0.0":
	case "1.1.0":
		s.iface = append(s.iface, "mtu", "socketPath", "pciID")
		s.route = append(s.route, "mtu", "advmss", "priority", "table", "scope")
	default:
		t.Fatalf("no result schema for cniVersion %s", v)
	}
	return s
}

// schemaProblems lists every way raw (an ADD result as printed) breaks the
// result schema of cniVersion v: a key the version does not have, a
// required key missing, cniVersion not v, a malformed value, an ips[]
// entry not on the pod's interface (sandbox podNetns).
func schemaProblems(t *testing.T, raw []byte, v, podNetns string) []string {
	t.Helper()
	s := schemaFor(t, v)
	var probs []string
	bad := func(f string, a ...any) { probs = append(probs, fmt.Sprintf(f, a...)) }

	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		bad("not a JSON object: %v", err)
		return probs
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		bad("more than one JSON value on stdout")
	}
	onlyKeys(bad, "result", top, s.top)
	for _, k := range []string{"cniVersion", "interfaces", "ips"} {
		if _, ok := top[k]; !ok {
			bad("result lacks %q", k)
		}
	}
	if cv, ok := top["cniVersion"].(string); !ok || cv != v {
		bad("cniVersion %#v, want %q (the config's)", top["cniVersion"], v)
	}

	ifaces := objects(bad, "interfaces", top["interfaces"])
	for i, o := range ifaces {
		w := fmt.Sprintf("interfaces[%d]", i)
		onlyKeys(bad, w, o, s.iface)
		if n, ok := o["name"].(string); !ok || n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \t") {
			bad("%s.name %#v is not an interface name", w, o["name"])
		}
		if m, ok := o["mac"]; ok {
			if ms, ok := m.(string); !ok {
				bad("%s.mac %#v is not a string", w, m)
			} else if hw, err := net.ParseMAC(ms); err != nil || len(hw) != 6 {
				bad("%s.mac %q is not an Ethernet address", w, ms)
			}
		}
		if sb, ok := o["sandbox"]; ok {
			if _, ok := sb.(string); !ok {
				bad("%s.sandbox %#v is not a string", w, sb)
			}
		}
		if m, ok := o["mtu"]; ok {
			if n, ok := uintOf(m); !ok || n < 68 || n > 65535 {
				bad("%s.mtu %#v is not an MTU", w, m)
			}
		}
		if p, ok := o["socketPath"]; ok {
			if ps, ok := p.(string); !ok || !filepath.IsAbs(ps) {
				bad("%s.socketPath %#v is not an absolute path", w, p)
			}
		}
		if p, ok := o["pciID"]; ok {
			if _, ok := p.(string); !ok {
				bad("%s.pciID %#v is not a string", w, p)
			}
		}
	}

	ips := objects(bad, "ips", top["ips"])
	if len(ips) == 0 {
		bad("ips is empty")
	}
	for i, o := range ips {
		w := fmt.Sprintf("ips[%d]", i)
		onlyKeys(bad, w, o, s.ip)
		as, _ := o["address"].(string)
		ip, _, err := net.ParseCIDR(as)
		if err != nil {
			bad("%s.address %#v is not an address in CIDR notation", w, o["address"])
			continue
		}
		fam := "6"
		if ip.To4() != nil {
			fam = "4"
		}
		if s.ipVersion {
			if ver, ok := o["version"].(string); !ok || ver != fam {
				bad("%s.version %#v, want %q for %s", w, o["version"], fam, as)
			}
		}
		if g, ok := o["gateway"]; ok {
			gs, _ := g.(string)
			if gw := net.ParseIP(gs); gw == nil || (gw.To4() != nil) != (fam == "4") {
				bad("%s.gateway %#v is not an IPv%s address", w, g, fam)
			}
		}
		idx, ok := uintOf(o["interface"])
		switch {
		case !ok:
			bad("%s.interface %#v is not an index (a plugin's result must say which interface has the address)", w, o["interface"])
		case idx >= int64(len(ifaces)):
			bad("%s.interface %d is past the %d interfaces", w, idx, len(ifaces))
		case ifaces[idx]["sandbox"] != podNetns:
			bad("%s.interface %d is %v, not the pod's interface (sandbox %s)", w, idx, ifaces[idx], podNetns)
		}
	}

	for i, o := range objects(bad, "routes", top["routes"]) {
		w := fmt.Sprintf("routes[%d]", i)
		onlyKeys(bad, w, o, s.route)
		ds, _ := o["dst"].(string)
		dst, _, err := net.ParseCIDR(ds)
		if err != nil {
			bad("%s.dst %#v is not in CIDR notation", w, o["dst"])
			continue
		}
		if g, ok := o["gw"]; ok {
			gs, _ := g.(string)
			if gw := net.ParseIP(gs); gw == nil || (gw.To4() != nil) != (dst.To4() != nil) {
				bad("%s.gw %#v is not an address of %s's family", w, g, ds)
			}
		}
		for _, k := range []string{"mtu", "advmss", "priority", "table"} {
			if n, ok := o[k]; ok {
				if _, ok := uintOf(n); !ok {
					bad("%s.%s %#v is not a uint", w, k, n)
				}
			}
		}
		if n, ok := o["scope"]; ok {
			if sc, ok := uintOf(n); !ok || sc > 255 {
				bad("%s.scope %#v is not a scope", w, n)
			}
		}
	}

	if d, ok := top["dns"]; ok {
		dm, ok := d.(map[string]any)
		if !ok {
			bad("dns %#v is not an object", d)
		}
		onlyKeys(bad, "dns", dm, s.dns)
		for _, k := range []string{"nameservers", "search", "options"} {
			l, ok := dm[k]
			if !ok {
				continue
			}
			items, ok := l.([]any)
			if !ok {
				bad("dns.%s %#v is not a list", k, l)
			}
			for _, it := range items {
				is, ok := it.(string)
				if !ok || (k == "nameservers" && net.ParseIP(is) == nil) {
					bad("dns.%s holds %#v", k, it)
				}
			}
		}
		if dom, ok := dm["domain"]; ok {
			if _, ok := dom.(string); !ok {
				bad("dns.domain %#v is not a string", dom)
			}
		}
	}
	return probs
}

// onlyKeys reports the keys of o that allowed lacks.
func onlyKeys(bad func(string, ...any), where string, o map[string]any, allowed []string) {
	var unknown []string
	for k := range o {
		found := false
		for _, a := range allowed {
			found = found || a == k
		}
		if !found {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		bad("%s has key %q, which this version's result does not have (allowed: %s)", where, k, strings.Join(allowed, ", "))
	}
}

// objects is v as a list of objects (nil when absent).
func objects(bad func(string, ...any), where string, v any) []map[string]any {
	if v == nil {
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		bad("%s %#v is not a list", where, v)
		return nil
	}
	var out []map[string]any
	for i, it := range l {
		o, ok := it.(map[string]any)
		if !ok {
			bad("%s[%d] %#v is not an object", where, i, it)
			continue
		}
		out = append(out, o)
	}
	return out
}

// uintOf is a JSON number that is a non-negative integer.
func uintOf(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil && i >= 0
}

// assertSchema fails the test for every schema problem of raw.
func assertSchema(t *testing.T, what string, raw []byte, v, podNetns string) {
	t.Helper()
	probs := schemaProblems(t, raw, v, podNetns)
	for _, p := range probs {
		t.Errorf("%s at cniVersion %s: %s", what, v, p)
	}
	if len(probs) > 0 {
		t.Logf("%s:\n%s", what, raw)
	}
}

// cachedResult is the result libcni keeps for an attachment (what it hands
// the plugins as prevResult on CHECK and DEL).
func cachedResult(t *testing.T, e *env, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.cni.CacheDir, "results", fmt.Sprintf("%s-%s-%s", list.Name, rt.ContainerID, rt.IfName)))
	if err != nil {
		t.Fatalf("libcni cache: %v", err)
	}
	var c struct {
		Kind   string          `json:"kind"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.Kind != "cniCacheV1" || len(c.Result) == 0 {
		t.Fatalf("libcni cache file %s is not a cniCacheV1 with a result (%v)", b, err)
	}
	return c.Result
}

// versionNet is the network of a version's case: dual-stack, with a DNS
// section and an IPAM route carrying an MTU (a 1.1.0 route key), so that
// every part of the result schema shows.
func (e *env) versionNet(name, v string) netw {
	return netw{name: name, version: v, epair: map[string]any{
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": e.dataDir,
			"ranges":  []any{[]any{map[string]any{"subnet": "10.22.0.0/24"}}, []any{map[string]any{"subnet": "fd00:22::/64"}}},
			"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}, map[string]any{"dst": "::/0"}, map[string]any{"dst": "198.51.100.0/24", "mtu": 1400}},
		},
		"dns": map[string]any{
			"nameservers": []string{"10.22.0.53", "fd00:22::53"},
			"domain":      "pods.example.test",
			"search":      []string{"ns.pods.example.test"},
			"options":     []string{"ndots:2"},
		},
	}}
}

// TestResultSchema shows that the ADD result of every cniVersion epair
// supports is exactly that version's result schema (no key it lacks, such
// as interfaces[].mtu at 1.0.0, ips[].version at 1.x; ips[].version
// present at 0.3.x/0.4.0), as printed by the plugin and as libcni caches
// it; that the cached result works as prevResult for CHECK and DEL; and
// that the reference portmap plugin chained after epair takes it.
func TestResultSchema(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, true)
		for _, v := range resultVersions {
			t.Run(v, func(t *testing.T) {
				name := "ver-" + strings.ReplaceAll(v, ".", "-")
				n := e.versionNet(name, v)

				t.Run("plugin stdout", func(t *testing.T) {
					p := e.pod(t)
					conf := e.pluginConf(n)
					conf["cniVersion"], conf["name"] = v, name
					stdin := mustJSON(t, conf)
					env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": newID(t), "CNI_NETNS": p.Path(), "CNI_IFNAME": "eth0"}
					del := func() error {
						env["CNI_COMMAND"] = "DEL"
						_, _, err := e.cni.Exec("epair", env, stdin)
						return err
					}
					stdout, stderr, err := e.cni.Exec("epair", env, stdin)
					if err != nil {
						t.Fatalf("ADD: %v (stderr %q)", err, stderr)
					}
					deleted := false
					t.Cleanup(func() {
						if !deleted {
							del()
						}
					})
					var compact bytes.Buffer
					if json.Compact(&compact, []byte(stdout)) == nil {
						t.Logf("ADD stdout at %s: %s", v, compact.String())
					}
					assertSchema(t, "ADD stdout", []byte(stdout), v, p.Path())
					probs := len(schemaProblems(t, []byte(stdout), v, p.Path()))
					if err := del(); err != nil {
						t.Fatalf("DEL: %v", err)
					}
					deleted = true
					left := e.nothingLeft(t, name, p)
					t.Logf("INPUT ADD cniVersion %s, plugin stdout -> code 0: %d schema problems; left after DEL: %s", v, probs, left)
				})

				t.Run("libcni ADD CHECK DEL", func(t *testing.T) {
					p := e.pod(t)
					list := e.list(t, n)
					rt := harness.RuntimeConf(newID(t), p, "eth0")
					res, a := e.addRaw(t, list, rt, p)
					if res.Version() != v {
						t.Errorf("libcni decoded a %s result, want %s", res.Version(), v)
					}
					cached := cachedResult(t, e, list, rt)
					assertSchema(t, "libcni's cached result", cached, v, p.Path())
					checkAttachment(t, e, a, "routed", 1500)
					if ok, _ := version.GreaterThanOrEqualTo(v, "0.4.0"); ok {
						if err := e.cni.Check(list, rt); err != nil {
							t.Errorf("CHECK with the cached result as prevResult: %v", err)
						}
					}
					e.del(t, a)
					e.assertGone(t, a)
					left := e.nothingLeft(t, name, p)
					t.Logf("INPUT ADD/CHECK/DEL cniVersion %s via libcni -> code 0: %d schema problems in the cache; left after DEL: %s", v, len(schemaProblems(t, cached, v, p.Path())), left)
				})
			})
		}

		for _, v := range []string{"0.3.1", "1.0.0"} {
			t.Run("portmap after epair "+v, func(t *testing.T) {
				p := e.pod(t)
				list := e.list(t, netw{name: "pm-" + strings.ReplaceAll(v, ".", "-"), version: v, chain: []map[string]any{portmap}})
				rt := harness.RuntimeConf(newID(t), p, "eth0")
				rt.CapabilityArgs = map[string]any{"portMappings": portMappings}
				_, a := e.addRaw(t, list, rt, p)
				cached := cachedResult(t, e, list, rt)
				assertSchema(t, "result of the chain (portmap's)", cached, v, p.Path())
				serveOnce(t, p, "through portmap")
				if got, err := dialFromHost(t, e.host, fmt.Sprintf("%s:%d", gw4, hostPort)); err != nil || got != "through portmap" {
					t.Errorf("host port %d did not reach the pod: %q %v", hostPort, got, err)
				}
				if ok, _ := version.GreaterThanOrEqualTo(v, "0.4.0"); ok {
					if err := e.cni.Check(list, rt); err != nil {
						t.Errorf("CHECK epair+portmap: %v", err)
					}
				}
				ip := a.ip(t, 4).Address.IP.String()
				e.del(t, a)
				e.assertGone(t, a)
				if r := rulesMentioning(t, e.host, ip); len(r) != 0 {
					t.Errorf("portmap rules for %s left after DEL:\n%s", ip, strings.Join(r, "\n"))
				}
				left := e.nothingLeft(t, list.Name, p)
				t.Logf("INPUT epair+portmap cniVersion %s -> code 0: %d schema problems in the chain's result; left after DEL: %s", v, len(schemaProblems(t, cached, v, p.Path())), left)
			})
		}
	})
}

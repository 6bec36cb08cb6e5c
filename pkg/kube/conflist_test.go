package kube

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// epairConf is the part of the written conflist the test looks at.
type epairConf struct {
	Type, Mode, Socket string
	MTU                int
	IPAM               struct {
		Type    string
		DataDir string
		Ranges  [][]struct{ Subnet string }
		Routes  []struct{ Dst string }
	}
}

func TestRenderConflist(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cidrs   []string
		subnets []string
		routes  []string
	}{
		{"ipv4", []string{"10.244.1.0/24"}, []string{"10.244.1.0/24"}, []string{"0.0.0.0/0"}},
		{"ipv6", []string{"fd00:10:244:1::/64"}, []string{"fd00:10:244:1::/64"}, []string{"::/0"}},
		{"dual-stack", []string{"10.244.1.0/24", "fd00:10:244:1::/64"},
			[]string{"10.244.1.0/24", "fd00:10:244:1::/64"}, []string{"0.0.0.0/0", "::/0"}},
		{"ipv6 first", []string{"fd00::/64", "10.0.0.0/24"}, []string{"fd00::/64", "10.0.0.0/24"}, []string{"::/0", "0.0.0.0/0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := RenderConflist(ConflistParams{PodCIDRs: prefixes(t, tc.cidrs...), MTU: 1450, Socket: "/run/epair/epair.sock"})
			if err != nil {
				t.Fatal(err)
			}
			list, err := libcni.ConfListFromBytes(b)
			if err != nil {
				t.Fatalf("libcni rejects the conflist: %v\n%s", err, b)
			}
			// libcni picks the highest of cniVersions it knows (1.1.0);
			// cniVersion 1.0.0 is there for runtimes older than that.
			if list.Name != NetworkName || list.CNIVersion != "1.1.0" || len(list.Plugins) != 2 {
				t.Fatalf("name %q version %q plugins %d", list.Name, list.CNIVersion, len(list.Plugins))
			}
			checkPortmap(t, list.Plugins[1])
			var top struct {
				CNIVersion  string
				CNIVersions []string
			}
			json.Unmarshal(b, &top)
			if top.CNIVersion != "1.0.0" || !reflect.DeepEqual(top.CNIVersions, []string{"1.0.0", "1.1.0"}) {
				t.Errorf("cniVersion %q cniVersions %v", top.CNIVersion, top.CNIVersions)
			}
			var c epairConf
			if err := json.Unmarshal(list.Plugins[0].Bytes, &c); err != nil {
				t.Fatal(err)
			}
			if c.Type != "epair" || c.Mode != "routed" || c.MTU != 1450 || c.Socket != "/run/epair/epair.sock" || c.IPAM.Type != "host-local" {
				t.Errorf("plugin %+v", c)
			}
			// libcni hands a pod's bandwidth annotations only to a plugin
			// declaring the capability; epair shapes them itself.
			if caps := list.Plugins[0].Network.Capabilities; !reflect.DeepEqual(caps, map[string]bool{"bandwidth": true}) {
				t.Errorf("epair capabilities %v, want bandwidth", caps)
			}
			var subnets, routes []string
			for _, r := range c.IPAM.Ranges {
				if len(r) != 1 {
					t.Fatalf("range set %v: want one range", r)
				}
				subnets = append(subnets, r[0].Subnet)
			}
			for _, r := range c.IPAM.Routes {
				routes = append(routes, r.Dst)
			}
			if !reflect.DeepEqual(subnets, tc.subnets) || !reflect.DeepEqual(routes, tc.routes) {
				t.Errorf("subnets %v routes %v, want %v %v", subnets, routes, tc.subnets, tc.routes)
			}
			if strings.Contains(string(b), "loopback") || strings.Contains(string(b), "dataDir") {
				t.Errorf("unexpected loopback or dataDir:\n%s", b)
			}
		})
	}
}

// checkPortmap: the second plugin is portmap with the portMappings
// capability (libcni hands a pod's hostPorts only to a plugin declaring it)
// and nothing else: snat left at portmap's default (true), no bandwidth.
func checkPortmap(t *testing.T, pm *libcni.PluginConfig) {
	t.Helper()
	if pm.Network.Type != "portmap" || !reflect.DeepEqual(pm.Network.Capabilities, map[string]bool{"portMappings": true}) {
		t.Errorf("second plugin: type %q capabilities %v, want portmap with portMappings", pm.Network.Type, pm.Network.Capabilities)
	}
	var all map[string]any
	if err := json.Unmarshal(pm.Bytes, &all); err != nil {
		t.Fatal(err)
	}
	// libcni adds name and cniVersion to each plugin it parses from a list.
	delete(all, "name")
	delete(all, "cniVersion")
	want := map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}}
	if !reflect.DeepEqual(all, want) {
		t.Errorf("portmap conf %v, want %v", all, want)
	}
}

func TestRenderConflistRefusesBrokenInput(t *testing.T) {
	ok := ConflistParams{PodCIDRs: prefixes(t, "10.0.0.0/24"), MTU: 1500, Socket: "/run/epair/epair.sock"}
	for name, mod := range map[string]func(*ConflistParams){
		"no podCIDR":      func(p *ConflistParams) { p.PodCIDRs = nil },
		"two IPv4":        func(p *ConflistParams) { p.PodCIDRs = prefixes(t, "10.0.0.0/24", "10.0.1.0/24") },
		"host bits set":   func(p *ConflistParams) { p.PodCIDRs = prefixes(t, "10.0.0.1/24") },
		"mtu too small":   func(p *ConflistParams) { p.MTU = 67 },
		"mtu too large":   func(p *ConflistParams) { p.MTU = 65536 },
		"relative socket": func(p *ConflistParams) { p.Socket = "epair.sock" },
		"invalid prefix":  func(p *ConflistParams) { p.PodCIDRs = []netip.Prefix{{}} },
	} {
		p := ok
		mod(&p)
		if b, err := RenderConflist(p); err == nil {
			t.Errorf("%s: rendered\n%s", name, b)
		}
	}
	if _, err := RenderConflist(ok); err != nil {
		t.Fatalf("valid params: %v", err)
	}
}

func TestRenderConflistDataDir(t *testing.T) {
	b, err := RenderConflist(ConflistParams{PodCIDRs: prefixes(t, "10.0.0.0/24"), MTU: 1500, Socket: "/s", DataDir: "/tmp/x"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"dataDir": "/tmp/x"`) {
		t.Errorf("no dataDir:\n%s", b)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "10-epair.conflist")
	wrote, err := WriteFileAtomic(path, []byte("one\n"), 0o644)
	if err != nil || !wrote {
		t.Fatalf("first write: %v %v", wrote, err)
	}
	before, _ := os.Stat(path)
	wrote, err = WriteFileAtomic(path, []byte("one\n"), 0o644)
	if err != nil || wrote {
		t.Fatalf("same content: wrote %v err %v, want no write", wrote, err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("same content replaced the file")
	}
	if wrote, err = WriteFileAtomic(path, []byte("two\n"), 0o644); err != nil || !wrote {
		t.Fatalf("new content: %v %v", wrote, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "two\n" {
		t.Errorf("content %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

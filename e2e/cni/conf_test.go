package cni_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/epair-cni/epair/e2e/harness"
)

func confFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(harness.RepoRoot(t), "conf", "*.conflist"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files in conf/: %v", err)
	}
	return files
}

// TestConfExamplesParse: every file in conf/ is a conflist libcni loads,
// with epair first.
func TestConfExamplesParse(t *testing.T) {
	for _, f := range confFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if !strings.HasSuffix(f, ".conflist") {
				t.Fatalf("%s is not a .conflist", f)
			}
			l, err := libcni.ConfListFromFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if l.CNIVersion != "1.1.0" || len(l.Plugins) == 0 || l.Plugins[0].Network.Type != "epair" {
				t.Fatalf("version %q, plugins %d, first %+v", l.CNIVersion, len(l.Plugins), l.Plugins[0].Network)
			}
			var c struct {
				Socket string `json:"socket"`
				Mode   string `json:"mode"`
			}
			if err := json.Unmarshal(l.Plugins[0].Bytes, &c); err != nil {
				t.Fatal(err)
			}
			if c.Socket != "/run/epair/epair.sock" || (c.Mode != "routed" && c.Mode != "bridge") {
				t.Fatalf("socket %q mode %q", c.Socket, c.Mode)
			}
		})
	}
}

// TestConfExamplesWork runs ADD, CHECK and DEL of every example, pointed at
// the test daemon and a private IPAM data dir.
func TestConfExamplesWork(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		for _, f := range confFiles(t) {
			t.Run(filepath.Base(f), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, pl, true)
				l, err := libcni.ConfListFromFile(f)
				if err != nil {
					t.Fatal(err)
				}
				var raw map[string]any
				if err := json.Unmarshal(l.Bytes, &raw); err != nil {
					t.Fatal(err)
				}
				first := raw["plugins"].([]any)[0].(map[string]any)
				first["socket"] = e.d.Socket
				first["ipam"].(map[string]any)["dataDir"] = e.dataDir
				b, _ := json.Marshal(raw)
				list, err := libcni.ConfListFromBytes(b)
				if err != nil {
					t.Fatal(err)
				}
				p := e.pod(t)
				rt := harness.RuntimeConf(newID(t), p, "eth0")
				rt.CapabilityArgs = map[string]any{"portMappings": portMappings, "mac": "02:00:00:00:22:01"}
				a, err := e.tryAdd(t, list, rt, p)
				if err != nil {
					t.Fatalf("ADD: %v", err)
				}
				for _, c := range a.res.IPs {
					ping(t, e.host, c.Address.IP.String())
				}
				if err := e.cni.Check(list, rt); err != nil {
					t.Errorf("CHECK: %v", err)
				}
				if err := e.cni.Status(list); err != nil {
					t.Errorf("STATUS: %v", err)
				}
				gc := harness.NewCNIWithPlugins(t, e.host, e.cni.PluginDir)
				if err := gc.GC(list, []types.GCAttachment{{ContainerID: a.id, IfName: "eth0"}}); err != nil {
					t.Errorf("GC keeping the one attachment: %v", err)
				}
				if e.pairOf(t, a) == nil {
					t.Errorf("GC removed a valid attachment")
				}
				e.del(t, a)
				e.assertGone(t, a)
			})
		}
	})
}

package cni_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
)

func isCode(want uint) func(uint) bool { return func(c uint) bool { return c == want } }

// TestBadInput: every bad ADD fails with its CNI error code and leaves
// nothing behind: no pair, no device, no reservation, no route.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	pod := e.pod(t)
	notNS := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(notNS, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const name = "badnet"
	ranges := []any{[]any{map[string]any{"subnet": "10.22.0.0/24"}}}
	decodeOrConfig := func(c uint) bool { return c == types.ErrDecodingFailure || c == types.ErrInvalidNetworkConfig }
	orIPAM := func(c uint) bool { return c == types.ErrInvalidNetworkConfig || c >= 100 }

	// Through libcni, as a runtime calls it.
	cases := []struct {
		name  string
		n     netw
		netns string
		want  func(uint) bool
		desc  string
	}{
		{"cniVersion 0.2.0", netw{version: "0.2.0"}, "", isCode(types.ErrIncompatibleCNIVersion), "1"},
		{"cniVersion 9.9.9", netw{version: "9.9.9"}, "", isCode(types.ErrIncompatibleCNIVersion), "1"},
		{"netns is a plain file", netw{}, notNS, isCode(types.ErrInvalidEnvironmentVariables), "4"},
		{"netns does not exist", netw{}, "/var/run/netns/epair-e2e-no-such-netns", isCode(types.ErrInvalidEnvironmentVariables), "4"},
		{"ipam without type", netw{epair: map[string]any{"ipam": map[string]any{"dataDir": e.dataDir, "ranges": ranges}}}, "", isCode(types.ErrInvalidNetworkConfig), "7"},
		{"unknown ipam type", netw{epair: map[string]any{"ipam": map[string]any{"type": "nope", "dataDir": e.dataDir, "ranges": ranges}}}, "", isCode(types.ErrInvalidNetworkConfig), "7"},
		{"mode weird", netw{mode: "weird"}, "", isCode(types.ErrInvalidNetworkConfig), "7"},
		{"mtu 10", netw{epair: map[string]any{"mtu": 10}}, "", isCode(types.ErrInvalidNetworkConfig), "7"},
		{"mtu 65536", netw{epair: map[string]any{"mtu": 65536}}, "", isCode(types.ErrInvalidNetworkConfig), "7"},
		{"mtu a string", netw{epair: map[string]any{"mtu": "big"}}, "", decodeOrConfig, "6 or 7"},
		{"ipam gives no address", netw{epair: map[string]any{"ipam": map[string]any{"type": "static"}}}, "", orIPAM, "7 or >= 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.n.name = name
			list := e.list(t, tc.n)
			rt := harness.RuntimeConf(newID(t), pod, "eth0")
			if tc.netns != "" {
				rt.NetNS = tc.netns
			}
			a, err := e.tryAdd(t, list, rt, pod)
			if err == nil {
				t.Fatalf("ADD succeeded: %+v", a.res)
			}
			code, ok := harness.ErrorCode(err)
			if !ok || !tc.want(code) {
				t.Errorf("ADD failed with %v (code %d, CNI error %v), want code %s", err, code, ok, tc.desc)
			} else {
				t.Logf("code %d: %v", code, err)
			}
			e.assertNothingLeft(t, name, pod)
		})
	}

	t.Run("daemon down", func(t *testing.T) {
		list := e.list(t, netw{name: name})
		e.d.Kill()
		a, err := e.tryAdd(t, list, harness.RuntimeConf(newID(t), pod, "eth0"), pod)
		if err == nil {
			t.Fatalf("ADD succeeded with the daemon down: %+v", a.res)
		}
		if code, ok := harness.ErrorCode(err); !ok || code != types.ErrTryAgainLater {
			t.Errorf("ADD with the daemon down: %v (code %d), want code 11", err, code)
		}
		e.d.Start()
		e.assertNothingLeft(t, name, pod)
	})

	// Directly, for what libcni would refuse before running the plugin.
	conf := e.pluginConf(netw{})
	conf["cniVersion"], conf["name"] = "1.1.0", name
	good, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	direct := []struct {
		name   string
		ifName string
		stdin  []byte
		want   uint
	}{
		{"ifName with slash", "a/b", good, types.ErrInvalidEnvironmentVariables},
		{"ifName of 16 chars", "eth0123456789abc", good, types.ErrInvalidEnvironmentVariables},
		{"ifName empty", "", good, types.ErrInvalidEnvironmentVariables},
		{"malformed JSON", "eth0", []byte(`{"cniVersion": "1.1.0", "name": `), types.ErrDecodingFailure},
		{"not JSON at all", "eth0", []byte("\x00\x01garbage"), types.ErrDecodingFailure},
	}
	for _, tc := range direct {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := e.cni.Exec("epair", map[string]string{
				"CNI_COMMAND":     "ADD",
				"CNI_CONTAINERID": newID(t),
				"CNI_NETNS":       pod.Path(),
				"CNI_IFNAME":      tc.ifName,
			}, tc.stdin)
			if err == nil {
				t.Fatalf("ADD succeeded: %s", stdout)
			}
			if code, ok := harness.ErrorCode(err); !ok || code != tc.want {
				t.Errorf("ADD: %v (stderr %q), want code %d", err, stderr, tc.want)
			}
			e.assertNothingLeft(t, name, pod)
		})
	}

	// Failures after IPAM ran, or after the pair was made: every step is
	// undone. The contract names no code for these: any CNI error will do.
	rollback := []struct {
		name  string
		setup func(t *testing.T, p ns.NetNS) (n netw, rt func(*libcni.RuntimeConf), undo func())
	}{
		{"ifName taken in the pod", func(t *testing.T, p ns.NetNS) (netw, func(*libcni.RuntimeConf), func()) {
			harness.MustRun(t, p, "ip", "link", "add", "eth0", "type", "bridge")
			return netw{}, nil, func() { harness.MustRun(t, p, "ip", "link", "del", "eth0") }
		}},
		{"bridge name taken by a non-bridge", func(t *testing.T, p ns.NetNS) (netw, func(*libcni.RuntimeConf), func()) {
			harness.MustRun(t, e.host, "ip", "link", "add", "brtaken0", "type", "veth", "peer", "name", "brtaken0p")
			return netw{mode: "bridge", epair: map[string]any{"bridge": "brtaken0"}}, nil, func() { harness.MustRun(t, e.host, "ip", "link", "del", "brtaken0") }
		}},
		{"multicast MAC", func(t *testing.T, p ns.NetNS) (netw, func(*libcni.RuntimeConf), func()) {
			return netw{epair: map[string]any{"capabilities": map[string]any{"mac": true}}},
				func(rt *libcni.RuntimeConf) { rt.CapabilityArgs = map[string]any{"mac": "01:00:5e:00:00:01"} }, func() {}
		}},
	}
	for _, tc := range rollback {
		t.Run(tc.name, func(t *testing.T) {
			p := e.pod(t)
			n, mod, undo := tc.setup(t, p)
			n.name = name
			rt := harness.RuntimeConf(newID(t), p, "eth0")
			if mod != nil {
				mod(rt)
			}
			a, err := e.tryAdd(t, e.list(t, n), rt, p)
			if err == nil {
				t.Fatalf("ADD succeeded: %+v", a.res)
			}
			if code, ok := harness.ErrorCode(err); !ok {
				t.Errorf("ADD failed with a non-CNI error: %v", err)
			} else {
				t.Logf("code %d: %v", code, err)
			}
			undo()
			e.assertNothingLeft(t, name, p, pod)
		})
	}
}

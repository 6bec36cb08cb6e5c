package cni_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
)

func isCode(want uint) func(uint) bool { return func(c uint) bool { return c == want } }

// cniCodeMsg is the CNI code and message in err ("0", "ok" for no error).
func cniCodeMsg(err error) (code, msg string) {
	if err == nil {
		return "0", "ok"
	}
	var te *types.Error
	if errors.As(err, &te) {
		msg = te.Msg
		if te.Details != "" {
			msg += "; " + te.Details
		}
		return fmt.Sprint(te.Code), msg
	}
	return "none (not a CNI error)", err.Error()
}

// nothingLeft runs assertNothingLeft as a subtest, so that its verdict is
// known, and says what was left, for the INPUT line.
func (e *env) nothingLeft(t *testing.T, netName string, pods ...ns.NetNS) string {
	t.Helper()
	if !t.Run("nothing left", func(t *testing.T) { e.assertNothingLeft(t, netName, pods...) }) {
		return "SOMETHING (see the failures of \"nothing left\")"
	}
	return "none"
}

// logInput checks that nothing is left of a failed ADD and logs the line
// of the input table (`go test -v | grep INPUT`): the input, the CNI code
// and message it got, and what was left.
func (e *env) logInput(t *testing.T, what string, err error, netName string, pods ...ns.NetNS) {
	t.Helper()
	code, msg := cniCodeMsg(err)
	left := e.nothingLeft(t, netName, pods...)
	t.Logf("INPUT %s -> code %s: %s; left: %s", what, code, msg, left)
}

// wantCNIError fails the test unless err is a CNI error with code want and
// a message holding every one of parts.
func wantCNIError(t *testing.T, what string, err error, want uint, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want code %d", what, want)
		return
	}
	code, ok := harness.ErrorCode(err)
	if !ok || code != want {
		t.Errorf("%s: %v (code %d, CNI error %v), want code %d", what, err, code, ok, want)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: message %q does not say %q", what, err.Error(), p)
		}
	}
}

// TestBadInput: every bad ADD fails with its CNI error code and leaves
// nothing behind: no pair, no device, no reservation, no route.
func TestBadInput(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
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
			// msg, when set, must be in the error message.
			msg string
		}{
			{"cniVersion 0.2.0", netw{version: "0.2.0"}, "", isCode(types.ErrIncompatibleCNIVersion), "1", ""},
			{"cniVersion 9.9.9", netw{version: "9.9.9"}, "", isCode(types.ErrIncompatibleCNIVersion), "1", ""},
			{"netns is a plain file", netw{}, notNS, isCode(types.ErrInvalidEnvironmentVariables), "4", ""},
			{"netns does not exist", netw{}, "/var/run/netns/epair-e2e-no-such-netns", isCode(types.ErrInvalidEnvironmentVariables), "4", ""},
			// Namespaces of other kinds, and a procfs file: ns.GetNS takes
			// them all, so the plugin must tell them apart itself.
			{"netns is a mount namespace", netw{}, "/proc/self/ns/mnt", isCode(types.ErrInvalidEnvironmentVariables), "4", "mount namespace"},
			{"netns is a user namespace", netw{}, "/proc/self/ns/user", isCode(types.ErrInvalidEnvironmentVariables), "4", "user namespace"},
			{"netns is a pid namespace", netw{}, "/proc/self/ns/pid", isCode(types.ErrInvalidEnvironmentVariables), "4", "pid namespace"},
			{"netns is a procfs file", netw{}, "/proc/self/status", isCode(types.ErrInvalidEnvironmentVariables), "4", "procfs"},
			{"ipam without type", netw{epair: map[string]any{"ipam": map[string]any{"dataDir": e.dataDir, "ranges": ranges}}}, "", isCode(types.ErrInvalidNetworkConfig), "7", ""},
			{"unknown ipam type", netw{epair: map[string]any{"ipam": map[string]any{"type": "nope", "dataDir": e.dataDir, "ranges": ranges}}}, "", isCode(types.ErrInvalidNetworkConfig), "7", ""},
			{"mode weird", netw{mode: "weird"}, "", isCode(types.ErrInvalidNetworkConfig), "7", ""},
			{"mtu 10", netw{epair: map[string]any{"mtu": 10}}, "", isCode(types.ErrInvalidNetworkConfig), "7", ""},
			{"mtu 65536", netw{epair: map[string]any{"mtu": 65536}}, "", isCode(types.ErrInvalidNetworkConfig), "7", ""},
			{"mtu a string", netw{epair: map[string]any{"mtu": "big"}}, "", decodeOrConfig, "6 or 7", ""},
			{"ipam gives no address", netw{epair: map[string]any{"ipam": map[string]any{"type": "static"}}}, "", orIPAM, "7 or >= 100", ""},
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
				}
				if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("ADD failed with %q, which does not say %q", err.Error(), tc.msg)
				}
				what := tc.name
				if tc.netns != "" {
					what = fmt.Sprintf("CNI_NETNS=%s (%s)", tc.netns, tc.name)
				}
				e.logInput(t, what, err, name, pod)
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
			e.logInput(t, "ADD with the daemon down", err, name, pod)
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
				e.logInput(t, fmt.Sprintf("direct ADD, %s (CNI_IFNAME %q)", tc.name, tc.ifName), err, name, pod)
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
				if _, ok := harness.ErrorCode(err); !ok {
					t.Errorf("ADD failed with a non-CNI error: %v", err)
				}
				undo()
				e.logInput(t, tc.name, err, name, p, pod)
			})
		}
	})
}

// TestMaxMTU shows that the largest MTU a TAP can have, 65521, is the
// plugin's maximum: an ADD with it gives both ends that MTU and traffic
// crosses (a 65000-byte ping without fragmentation too); one more is a
// config error (code 7) that names the range and leaves nothing behind.
func TestMaxMTU(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		const name = "maxmtu"
		t.Run("mtu 65521", func(t *testing.T) {
			p := e.pod(t)
			list := e.list(t, netw{name: name, epair: map[string]any{"mtu": 65521}})
			a, err := e.tryAdd(t, list, harness.RuntimeConf(newID(t), p, "eth0"), p)
			if err != nil {
				t.Fatalf("ADD with mtu 65521: %v", err)
			}
			checkAttachment(t, e, a, "routed", 65521)
			for _, c := range []struct {
				n   ns.NetNS
				dev string
			}{{p, "eth0"}, {e.host, a.bEnd(t)}} {
				if out := harness.MustRun(t, c.n, "ip", "-o", "link", "show", c.dev); !strings.Contains(out, " mtu 65521 ") {
					t.Errorf("ip link: %s is not at mtu 65521: %s", c.dev, out)
				}
			}
			ip := a.ip(t, 4).Address.IP.String()
			ping(t, e.host, ip)
			harness.MustRun(t, e.host, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "65000", ip)
			e.del(t, a)
			e.assertGone(t, a)
			t.Logf("INPUT mtu 65521 -> code 0: ok, both ends at mtu 65521, 65000-byte ping crosses; left after DEL: %s", e.nothingLeft(t, name, p))
		})
		t.Run("mtu 65522", func(t *testing.T) {
			p := e.pod(t)
			list := e.list(t, netw{name: name, epair: map[string]any{"mtu": 65522}})
			a, err := e.tryAdd(t, list, harness.RuntimeConf(newID(t), p, "eth0"), p)
			if err == nil {
				t.Fatalf("ADD with mtu 65522 succeeded: %+v", a.res)
			}
			wantCNIError(t, "ADD with mtu 65522", err, types.ErrInvalidNetworkConfig, "65522", "68..65521")
			e.logInput(t, "mtu 65522", err, name, p)
		})
	})
}

// TestIPAMExhausted shows that an IPAM failure is epair's code 101 (not
// host-local's own 999) with host-local's message in it: with a one-address
// range taken by a first pod, a second ADD fails, leaves nothing of itself
// (no pair, no device in its pod, no reservation) and the first pod still
// has its address and works.
func TestIPAMExhausted(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		const name, only = "oneaddr", "10.22.0.10"
		list := e.oneAddressList(t, name, only)
		pa, pb := e.pod(t), e.pod(t)
		a := e.add(t, list, pa)
		if got := a.ip(t, 4).Address.IP.String(); got != only {
			t.Fatalf("first pod got %s, want the range's one address %s", got, only)
		}

		b, err := e.tryAdd(t, list, harness.RuntimeConf(newID(t), pb, "eth0"), pb)
		if err == nil {
			t.Fatalf("second ADD in a one-address range succeeded: %+v", b.res)
		}
		wantCNIError(t, "second ADD", err, 101, "no IP addresses available")

		// Nothing of the second attempt; the first pod's pair, address and
		// reservation are all there.
		left := "none"
		if ps := e.pairs(t); len(ps) != 1 || e.pairOf(t, a) == nil {
			t.Errorf("daemon pairs %+v, want only the first pod's", ps)
			left = "a pair"
		}
		if out := harness.MustRun(t, pb, "ip", "-o", "link"); len(strings.Split(strings.TrimSpace(out), "\n")) != 1 {
			t.Errorf("second pod has more than lo:\n%s", out)
			left = "a device in the pod"
		}
		if r := e.reservations(t, name); len(r) != 1 || r[0] != only {
			t.Errorf("host-local holds %v, want only %s (the first pod's)", r, only)
			left = "a reservation"
		}
		code, msg := cniCodeMsg(err)
		t.Logf("INPUT host-local range %s-%s already taken -> code %s: %s; left: %s", only, only, code, msg, left)

		checkAttachment(t, e, a, "routed", 1500)
		ping(t, e.host, only)
		if err := e.cni.Check(list, a.rt); err != nil {
			t.Errorf("CHECK of the first pod after the failed ADD: %v", err)
		}
	})
}

// TestBadMAC shows that a MAC address no Ethernet interface can have, asked
// for through runtimeConfig.mac or CNI_ARGS MAC, is a config error (code 7)
// whose message names it and where it came from, and leaves nothing.
func TestBadMAC(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		const name = "badmac"
		list := e.list(t, netw{name: name, epair: map[string]any{"capabilities": map[string]any{"mac": true}}})
		for _, mac := range []string{"00:00:00:00:00:00", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "not-a-mac"} {
			for _, via := range []string{"runtimeConfig.mac", "CNI_ARGS MAC"} {
				t.Run(via+" "+mac, func(t *testing.T) {
					p := e.pod(t)
					rt := harness.RuntimeConf(newID(t), p, "eth0")
					if via == "CNI_ARGS MAC" {
						rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"MAC", mac}}
					} else {
						rt.CapabilityArgs = map[string]any{"mac": mac}
					}
					a, err := e.tryAdd(t, list, rt, p)
					if err == nil {
						t.Fatalf("ADD with %s %s succeeded: %+v", via, mac, a.res)
					}
					wantCNIError(t, "ADD with "+via+" "+mac, err, types.ErrInvalidNetworkConfig, via, mac)
					e.logInput(t, via+" "+mac, err, name, p)
				})
			}
		}
	})
}

package datapath_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/client"
)

// TestBadInputChangesNothing: every bad request is a one-line error and a
// non-zero exit, and leaves no pair, no state and no interface behind.
func TestBadInputChangesNothing(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.StartDaemon(t)
	na, nb := harness.NewNS(t), harness.NewNS(t)
	notNS := filepath.Join(t.TempDir(), "plain-file")
	os.WriteFile(notNS, nil, 0o600)
	harness.MustRun(t, na, "ip", "link", "add", "taken0", "type", "bridge")

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing a netns", []string{"pair", "add"}, "needs --a-netns"},
		{"netns does not exist", []string{"pair", "add", "--a-netns", "/var/run/netns/no-such-ns"}, "no such file"},
		{"netns is not a netns", []string{"pair", "add", "--a-netns", notNS}, "not a network namespace"},
		{"relative netns", []string{"pair", "add", "--a-netns", "var/run/netns/x"}, "absolute"},
		{"name taken", []string{"pair", "add", "--a-netns", na.Path(), "--b-netns", nb.Path(), "--a-name", "taken0"}, "already exists"},
		{"name too long", []string{"pair", "add", "--a-netns", na.Path(), "--a-name", "averyveryverylongname"}, "at most 15"},
		{"name with slash", []string{"pair", "add", "--a-netns", na.Path(), "--a-name", "a/b"}, "'/'"},
		{"mtu too small", []string{"pair", "add", "--a-netns", na.Path(), "--mtu", "67"}, "out of range 68..65521"},
		{"mtu too large", []string{"pair", "add", "--a-netns", na.Path(), "--mtu", "65536"}, "out of range 68..65521"},
		{"unit too large", []string{"pair", "add", "--a-netns", na.Path(), "--b-netns", nb.Path(), "--unit", "1234567890"}, "IFNAMSIZ"},
		{"bad MAC", []string{"pair", "add", "--a-netns", na.Path(), "--a-mac", "01:00:5e:00:00:01"}, "multicast"},
		{"unknown pair del", []string{"pair", "del", "epair77b"}, "no such pair"},
		{"unknown pair stats", []string{"stats", "42"}, "no such pair"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := d.Epair(tc.args...)
			if err == nil {
				t.Fatalf("exit 0 for bad input; output:\n%s", out)
			}
			first := strings.SplitN(out, "\n", 2)[0]
			if !strings.HasPrefix(first, "epair: ") || !strings.Contains(first, tc.want) {
				t.Fatalf("first line %q, want an 'epair: ...%s...' error", first, tc.want)
			}
		})
	}
	ps, err := d.Client.ListPairs(context.Background())
	if err != nil || len(ps) != 0 {
		t.Fatalf("pairs after bad input: %v %v", ps, err)
	}
	if out := harness.MustRun(t, nb, "ip", "-o", "link"); strings.Contains(out, "epair") {
		t.Fatalf("an interface was left behind:\n%s", out)
	}
	if out := harness.MustRun(t, na, "ip", "-o", "link"); strings.Contains(out, "epair") || strings.Contains(out, "tun") {
		t.Fatalf("an interface was left behind:\n%s", out)
	}
}

func TestDaemonDownIsAClearError(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.StartDaemon(t)
	d.Kill()
	out, err := d.Epair("pair", "list")
	if err == nil || !strings.Contains(out, "not reachable at "+d.Socket) || !strings.Contains(out, "epair daemon") {
		t.Fatalf("with the daemon down: %v %q", err, out)
	}
}

func TestDeleteAfterNetnsIsGone(t *testing.T) {
	s := newSetup(t)
	s.na.Close()
	if err := unmount(s.na.Path()); err != nil {
		t.Fatal(err)
	}
	if out, err := s.d.Epair("pair", "del", s.pair.B.Name); err != nil {
		t.Fatalf("del after the a netns was deleted: %v\n%s", err, out)
	}
	if out, err := harness.Run(t, s.nb, "ip", "link", "show", s.pair.B.Name); err == nil {
		t.Fatalf("b end left behind:\n%s", out)
	}
}

// refusedCreate asks the daemon's API directly for the pair the CLI was
// refused, and returns the HTTP status and message of its answer (0 when
// it made the pair, which it then deletes).
func refusedCreate(t *testing.T, d *harness.Daemon, req *api.CreateRequest) (int, string) {
	t.Helper()
	p, err := d.Client.CreatePair(context.Background(), req)
	if err == nil {
		d.Client.DeletePair(context.Background(), fmt.Sprint(p.Unit))
		return 0, "created"
	}
	var ae *client.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("create pair: not an answer of the daemon: %v", err)
	}
	return ae.Status, ae.Message
}

// leftAfter checks that the daemon has no pair and the namespaces no epair
// or TAP device, and says what is left, for the INPUT line.
func leftAfter(t *testing.T, d *harness.Daemon, nss ...ns.NetNS) string {
	t.Helper()
	var left []string
	if ps, err := d.Client.ListPairs(context.Background()); err != nil || len(ps) != 0 {
		t.Errorf("pairs after bad input: %v %v", ps, err)
		left = append(left, "pairs")
	}
	for _, n := range nss {
		if out := harness.MustRun(t, n, "ip", "-o", "link"); strings.Contains(out, "epair") || strings.Contains(out, "tun") {
			t.Errorf("an interface was left behind in %s:\n%s", n.Path(), out)
			left = append(left, "devices in "+n.Path())
		}
	}
	if len(left) == 0 {
		return "none"
	}
	return strings.Join(left, ", ")
}

// TestWrongNamespaceKind shows that a path that is not a network namespace
// but another kind of namespace, or a procfs file, given for either end is
// refused by the daemon as a bad request (HTTP 400), with a message saying
// what the path is, not a 500 from a failed setns; nothing is created.
func TestWrongNamespaceKind(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.StartDaemon(t)
	na, nb := harness.NewNS(t), harness.NewNS(t)
	for _, c := range []struct{ path, says string }{
		{"/proc/self/ns/mnt", "mount namespace"},
		{"/proc/self/ns/user", "user namespace"},
		{"/proc/self/ns/pid", "pid namespace"},
		{"/proc/self/status", "procfs"},
	} {
		for _, flag := range []string{"--a-netns", "--b-netns"} {
			t.Run(flag+" "+c.path, func(t *testing.T) {
				req := &api.CreateRequest{ANetns: na.Path(), BNetns: nb.Path(), MTU: 1500}
				if flag == "--a-netns" {
					req.ANetns = c.path
				} else {
					req.BNetns = c.path
				}
				out, err := d.Epair("pair", "add", "--a-netns", req.ANetns, "--b-netns", req.BNetns)
				first := strings.SplitN(out, "\n", 2)[0]
				if err == nil {
					t.Errorf("exit 0 for %s %s; output:\n%s", flag, c.path, out)
				} else if !strings.HasPrefix(first, "epair: ") || !strings.Contains(first, c.path) || !strings.Contains(first, c.says) {
					t.Errorf("first line %q, want an 'epair: ...' error naming %s and saying %q", first, c.path, c.says)
				}
				status, msg := refusedCreate(t, d, req)
				if status != 400 || !strings.Contains(msg, c.says) {
					t.Errorf("daemon answered %d %q, want 400 saying %q", status, msg, c.says)
				}
				t.Logf("INPUT pair add %s %s -> code %d: %s; left: %s", flag, c.path, status, msg, leftAfter(t, d, na, nb))
			})
		}
	}
}

// TestMTULimit shows that a pair's MTU goes up to 65521, the largest a TAP
// can have: --mtu 65521 gives both ends that MTU; --mtu 65522 is a bad
// request (HTTP 400) that names the range, not a 500 from the kernel, and
// creates nothing.
func TestMTULimit(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.StartDaemon(t)
	na, nb := harness.NewNS(t), harness.NewNS(t)

	t.Run("65521", func(t *testing.T) {
		out, err := d.Epair("pair", "add", "--a-netns", na.Path(), "--b-netns", nb.Path(), "--mtu", "65521")
		if err != nil {
			t.Fatalf("pair add --mtu 65521: %v\n%s", err, out)
		}
		var p api.Pair
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("pair add printed %q: %v", out, err)
		}
		for _, e := range []struct {
			n   ns.NetNS
			dev string
		}{{na, p.A.Name}, {nb, p.B.Name}} {
			if l := harness.MustRun(t, e.n, "ip", "-o", "link", "show", e.dev); !strings.Contains(l, " mtu 65521 ") {
				t.Errorf("%s is not at mtu 65521: %s", e.dev, l)
			}
		}
		if out, err := d.Epair("pair", "del", p.B.Name); err != nil {
			t.Fatalf("pair del: %v\n%s", err, out)
		}
		t.Logf("INPUT pair add --mtu 65521 -> code 200: both ends at mtu 65521; left: %s after pair del", leftAfter(t, d, na, nb))
	})

	t.Run("65522", func(t *testing.T) {
		out, err := d.Epair("pair", "add", "--a-netns", na.Path(), "--b-netns", nb.Path(), "--mtu", "65522")
		first := strings.SplitN(out, "\n", 2)[0]
		if err == nil {
			t.Errorf("exit 0 for --mtu 65522; output:\n%s", out)
		} else if !strings.HasPrefix(first, "epair: ") || !strings.Contains(first, "out of range 68..65521") {
			t.Errorf("first line %q, want an 'epair: ...out of range 68..65521' error", first)
		}
		status, msg := refusedCreate(t, d, &api.CreateRequest{ANetns: na.Path(), BNetns: nb.Path(), MTU: 65522})
		if status != 400 || !strings.Contains(msg, "68..65521") {
			t.Errorf("daemon answered %d %q, want 400 naming the range 68..65521", status, msg)
		}
		t.Logf("INPUT pair add --mtu 65522 -> code %d: %s; left: %s", status, msg, leftAfter(t, d, na, nb))
	})
}

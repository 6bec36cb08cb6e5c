package datapath_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/epair-cni/epair/e2e/harness"
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
		{"netns is not a netns", []string{"pair", "add", "--a-netns", notNS}, "unknown FS magic"},
		{"relative netns", []string{"pair", "add", "--a-netns", "var/run/netns/x"}, "absolute"},
		{"name taken", []string{"pair", "add", "--a-netns", na.Path(), "--b-netns", nb.Path(), "--a-name", "taken0"}, "already exists"},
		{"name too long", []string{"pair", "add", "--a-netns", na.Path(), "--a-name", "averyveryverylongname"}, "at most 15"},
		{"name with slash", []string{"pair", "add", "--a-netns", na.Path(), "--a-name", "a/b"}, "'/'"},
		{"mtu too small", []string{"pair", "add", "--a-netns", na.Path(), "--mtu", "67"}, "out of range 68..65535"},
		{"mtu too large", []string{"pair", "add", "--a-netns", na.Path(), "--mtu", "65536"}, "out of range 68..65535"},
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

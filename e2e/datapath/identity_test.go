package datapath_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// foreignSetup is a pair whose a end's namespace was deleted and made again
// at the same path, where somebody else then made a TAP with the a end's
// name — and, the namespace being fresh, its ifindex.
type foreignSetup struct {
	d    *harness.Daemon
	nb   ns.NetNS
	pair api.Pair
	pod  ns.NetNS // the new namespace at the old path
	mac  string   // the foreign TAP's
}

// newForeignSetup makes the pair, then, between stop and start when kill is
// set (the old namespace dies with the daemon's descriptors) or under the
// running daemon (which keeps the old one alive through them), swaps the
// namespace. ipArgs are extra `ip tuntap add` arguments of the foreign TAP.
func newForeignSetup(t *testing.T, kill bool, ipArgs ...string) *foreignSetup {
	harness.RequireRoot(t)
	s := &foreignSetup{d: harness.StartDaemon(t), nb: harness.NewNS(t)}
	old := harness.NewNS(t)
	out, err := s.d.Epair("pair", "add", "--a-netns", old.Path(), "--b-netns", s.nb.Path(), "--a-name", "eth0")
	if err != nil {
		t.Fatalf("pair add: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &s.pair); err != nil {
		t.Fatalf("pair add printed %q: %v", out, err)
	}
	if kill {
		s.d.Kill()
	}
	path := old.Path()
	harness.DeleteNS(t, old) // the harness's cleanup removes the new one at the path
	harness.MustRun(t, s.nb, "ip", "netns", "add", filepath.Base(path))
	if s.pod, err = ns.GetNS(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.pod.Close() })
	harness.MustRun(t, s.pod, append([]string{"ip", "tuntap", "add", "mode", "tap", "name", "eth0"}, ipArgs...)...)
	if got := ifindex(t, s.pod, "eth0"); got != s.pair.A.Index {
		t.Fatalf("the foreign TAP got ifindex %d, not the a end's %d: the test needs them equal", got, s.pair.A.Index)
	}
	s.mac = macOf(t, s.pod, "eth0")
	if kill {
		s.d.Start()
	}
	return s
}

// assertUntouched checks that the foreign TAP is still there as it was
// made: same ifindex and MAC, and no descriptor attached (a TAP without
// one has no carrier).
func (s *foreignSetup) assertUntouched(t *testing.T) {
	t.Helper()
	var l netlink.Link
	err := s.pod.Do(func(ns.NetNS) (err error) {
		l, err = netlink.LinkByName("eth0")
		return err
	})
	if err != nil {
		t.Fatalf("the foreign TAP is gone: %v", err)
	}
	a := l.Attrs()
	if a.Index != s.pair.A.Index || a.HardwareAddr.String() != s.mac {
		t.Errorf("the foreign TAP changed: ifindex %d MAC %s, was %d %s", a.Index, a.HardwareAddr, s.pair.A.Index, s.mac)
	}
	if a.RawFlags&unix.IFF_LOWER_UP != 0 {
		t.Errorf("the foreign TAP has a carrier: somebody attached to it")
	}
}

// del deletes the pair and checks that it is gone, with its b end.
func (s *foreignSetup) del(t *testing.T) {
	t.Helper()
	if out, err := s.d.Epair("pair", "del", strconv.Itoa(s.pair.Unit)); err != nil {
		t.Fatalf("pair del: %v\n%s", err, out)
	}
	if ps, err := s.d.Client.ListPairs(context.Background()); err != nil || len(ps) != 0 {
		t.Fatalf("pairs after pair del: %+v %v, want none", ps, err)
	}
	if out, err := harness.Run(t, s.nb, "ip", "link", "show", s.pair.B.Name); err == nil {
		t.Errorf("the b end is left after pair del:\n%s", out)
	}
}

// TestDeleteLeavesAForeignTapAlone: `pair del` of a pair whose a end's
// namespace was made again, with a TAP of the same ifindex and name in it,
// removes the pair and its own b end, and not that TAP.
func TestDeleteLeavesAForeignTapAlone(t *testing.T) {
	s := newForeignSetup(t, false)
	s.del(t)
	s.assertUntouched(t)
}

// TestRestartDoesNotAdoptAForeignTap: a restarted daemon does not re-attach
// to a TAP of the a end's ifindex and name — with vnet headers, as the
// daemon's own have — in a namespace made again at the same path: the pair
// is kept, not forwarding, with a problem that says so, and its DEL leaves
// the TAP alone.
func TestRestartDoesNotAdoptAForeignTap(t *testing.T) {
	s := newForeignSetup(t, true, "vnet_hdr")
	p, err := s.d.Client.GetPair(context.Background(), strconv.Itoa(s.pair.Unit))
	if err != nil {
		t.Fatal(err)
	}
	if p.Forwarding || !strings.Contains(p.Problem, "not this pair's device") || !strings.Contains(p.Problem, "MAC") {
		t.Fatalf("after the restart: forwarding %v, problem %q; want not forwarding, the MAC not this pair's", p.Forwarding, p.Problem)
	}
	s.assertUntouched(t)
	s.del(t)
	s.assertUntouched(t)
}

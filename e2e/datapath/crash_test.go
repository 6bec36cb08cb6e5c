package datapath_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/state"
	"github.com/vishvananda/netlink"
)

// TestRestartFinishesInterruptedChanges: a daemon killed in the middle of a
// create (pair written as creating, devices half made) or of a delete (pair
// written as deleting, devices still there) rolls the create back and
// finishes the delete when it starts again — and touches nothing else: not
// the ready pair, not a TAP that is not in its state.
func TestRestartFinishesInterruptedChanges(t *testing.T) {
	s := newSetup(t)
	ping(t, s.na, ipB)
	s.d.Kill()

	// What the killed daemon would have left: a creating pair whose b TAP
	// exists (its a TAP was never made), a deleting pair with both TAPs,
	// each a TAP as the daemon makes them (vnet headers, persistent).
	ourTapAdd(t, s.nb, "epair7b")
	ourTapAdd(t, s.na, "eth2")
	ourTapAdd(t, s.nb, "epair8b")
	tapAdd(t, s.nb, "foreign0") // not ours: must survive
	path := filepath.Join(s.d.StateDir, "state.json")
	st := readState(t, path)
	st.Pairs[7] = &state.Pair{Unit: 7, Phase: state.Creating, MTU: 1500, Queues: 1,
		A: state.End{Name: "eth1", Netns: s.na.Path()}, B: state.End{Name: "epair7b", Netns: s.nb.Path()}}
	st.Pairs[8] = &state.Pair{Unit: 8, Phase: state.Deleting, MTU: 1500, Queues: 1,
		A: state.End{Name: "eth2", Index: ifindex(t, s.na, "eth2"), MAC: macOf(t, s.na, "eth2"), Netns: s.na.Path()},
		B: state.End{Name: "epair8b", Index: ifindex(t, s.nb, "epair8b"), MAC: macOf(t, s.nb, "epair8b"), Netns: s.nb.Path()}}
	writeState(t, path, st)

	s.d.Start()
	for _, c := range []struct {
		n    ns.NetNS
		name string
	}{{s.nb, "epair7b"}, {s.na, "eth2"}, {s.nb, "epair8b"}} {
		if out, err := harness.Run(t, c.n, "ip", "link", "show", c.name); err == nil {
			t.Errorf("%s left after restart:\n%s", c.name, out)
		}
	}
	harness.MustRun(t, s.nb, "ip", "link", "show", "foreign0")
	ps, err := s.d.Client.ListPairs(context.Background())
	if err != nil || len(ps) != 1 || ps[0].Unit != s.pair.Unit {
		t.Fatalf("pairs after restart: %+v %v, want only unit %d", ps, err, s.pair.Unit)
	}
	if after := readState(t, path); len(after.Pairs) != 1 {
		t.Fatalf("state after restart holds %d pairs, want 1", len(after.Pairs))
	}
	ping(t, s.na, ipB)
	// Unit 7 is free again: the rolled-back create gave it back.
	out, err := s.d.Epair("pair", "add", "--unit", "7", "--a-netns", s.na.Path(), "--b-netns", s.nb.Path())
	if err != nil {
		t.Fatalf("pair add --unit 7 after the rollback: %v\n%s", err, out)
	}
}

func tapAdd(t *testing.T, n ns.NetNS, name string) {
	t.Helper()
	harness.MustRun(t, n, "ip", "tuntap", "add", "mode", "tap", "name", name)
}

// ourTapAdd makes a TAP with the flags of the daemon's own (tap.Create),
// which is what a daemon killed mid-change leaves.
func ourTapAdd(t *testing.T, n ns.NetNS, name string) {
	t.Helper()
	harness.MustRun(t, n, "ip", "tuntap", "add", "mode", "tap", "vnet_hdr", "name", name)
}

func macOf(t *testing.T, n ns.NetNS, name string) string {
	t.Helper()
	var mac string
	err := n.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(name)
		if err == nil {
			mac = l.Attrs().HardwareAddr.String()
		}
		return err
	})
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return mac
}

func readState(t *testing.T, path string) *state.State {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st state.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &st
}

func writeState(t *testing.T, path string, st *state.State) {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

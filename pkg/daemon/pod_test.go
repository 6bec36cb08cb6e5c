package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/datapath"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/state"
)

// podPairs are pairs of pods as a state file keeps them: web-0 in two
// namespaces, db-0 with two interfaces, and a pair made by hand. Their
// namespaces do not exist, so the restore leaves them not forwarding,
// without root.
var podPairs = []struct {
	unit      int
	ifName    string
	namespace string
	name      string
}{
	{0, "eth0", "default", "web-0"},
	{1, "eth0", "prod", "web-0"},
	{2, "eth0", "prod", "db-0"},
	{3, "net1", "prod", "db-0"},
	{4, "eth0", "", ""},
}

// podManager starts a Manager on a state holding podPairs (written by the
// json of an older daemon, without pod or start count, when old is set);
// it returns the manager and the state dir.
func podManager(t *testing.T, dir string, old bool) *Manager {
	t.Helper()
	store, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := os.Stat(filepath.Join(dir, "state.json")); os.IsNotExist(err) {
		writePodState(t, store, dir, old)
	}
	core := epair.New(epair.Config{})
	t.Cleanup(core.Close)
	m, err := NewManager(store, core, 1, datapath.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func writePodState(t *testing.T, store *state.Store, dir string, old bool) {
	t.Helper()
	gone := filepath.Join(dir, "gone-netns")
	st := &state.State{Pairs: map[int]*state.Pair{}, NextMACIndex: uint32(len(podPairs))}
	for _, pp := range podPairs {
		p := &state.Pair{Unit: pp.unit, Phase: state.Ready, MTU: 1500, Queues: 1, MACIndex: uint32(pp.unit),
			A: state.End{Name: pp.ifName, Index: 2, MAC: "02:00:00:00:00:0a", Netns: gone},
			B: state.End{Name: fmt.Sprintf("epair%db", pp.unit), Index: 3 + pp.unit, MAC: "02:00:00:00:00:0b", Netns: gone}}
		if pp.name != "" {
			p.Owner = &api.Owner{ContainerID: fmt.Sprintf("ctr%d", pp.unit), IfName: pp.ifName, Network: "n"}
			if !old {
				p.Owner.Pod = &api.Pod{Namespace: pp.namespace, Name: pp.name, UID: "0c8f5e1c-5b8e-4d0e-9a0e-3f1f0b0a0c0d"}
			}
		}
		st.Pairs[pp.unit] = p
	}
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
}

// TestFindByPod: every verb takes a pod as namespace/name, or by its name
// when only one pair answers to it; a name several pairs answer to is an
// error listing them, and the pod shows in Get, List and Stats.
func TestFindByPod(t *testing.T) {
	m := podManager(t, t.TempDir(), false)
	for id, unit := range map[string]int{"default/web-0": 0, "prod/web-0": 1, "2": 2, "epair3b": 3} {
		p, err := m.Get(id)
		if err != nil || p.Unit != unit {
			t.Errorf("Get(%q) = %+v, %v; want unit %d", id, p, err, unit)
		}
	}
	s, err := m.Stats("default/web-0")
	if err != nil || s.Unit != 0 || s.Pod != "default/web-0" {
		t.Errorf("Stats(default/web-0) = %+v, %v", s, err)
	}
	for id, want := range map[string]string{
		"web-0":        "pair 0 (eth0, pod default/web-0), pair 1 (eth0, pod prod/web-0)",
		"prod/db-0":    "pair 2 (eth0, pod prod/db-0), pair 3 (net1, pod prod/db-0)",
		"eth0":         "pair 0 (eth0, pod default/web-0), pair 1 (eth0, pod prod/web-0), pair 2 (eth0, pod prod/db-0), pair 4 (eth0)",
		"default/db-0": "",
	} {
		_, err := m.Stats(id)
		switch {
		case want == "" && !errors.Is(err, errNotFound):
			t.Errorf("Stats(%q): %v, want not found", id, err)
		case want != "" && (!errors.Is(err, errInvalid) || !strings.Contains(err.Error(), want)):
			t.Errorf("Stats(%q): %v, want ambiguous listing %s", id, err, want)
		}
	}
	if err := m.Delete("web-0"); !errors.Is(err, errInvalid) || m.Len() != len(podPairs) {
		t.Errorf("Delete of an ambiguous pod: %v, %d pairs left", err, m.Len())
	}
	if err := m.Delete("prod/web-0"); err != nil {
		t.Fatalf("Delete(prod/web-0): %v", err)
	}
	if p, err := m.Get("web-0"); err != nil || p.Unit != 0 || p.Pod != "default/web-0" || p.Owner.Pod.UID == "" {
		t.Errorf("web-0 once prod's is gone: %+v, %v", p, err)
	}
	for _, p := range m.List() {
		if want := p.Owner.PodName(); p.Pod != want {
			t.Errorf("List: pair %d shows pod %q, want %q", p.Unit, p.Pod, want)
		}
	}
}

// TestOldStateLoadsWithoutPodsAndStartsAreCounted: a state written before
// pods and the start count were kept loads; its pairs have no pod; each
// start adds one to the count, kept in the file.
func TestOldStateLoadsWithoutPodsAndStartsAreCounted(t *testing.T) {
	dir := t.TempDir()
	m := podManager(t, dir, true)
	if p, err := m.Get("epair0b"); err != nil || p.Pod != "" || p.Owner.Pod != nil {
		t.Fatalf("pair of an old state: %+v, %v", p, err)
	}
	if _, err := m.Get("default/web-0"); !errors.Is(err, errNotFound) {
		t.Errorf("a pod the old state does not know found: %v", err)
	}
	if got := m.MetricDaemon().Starts; got != 1 {
		t.Errorf("starts %d after the first start, want 1", got)
	}
	m.Close()
	m.store.Close()
	m2 := podManager(t, dir, true)
	if got := m2.MetricDaemon().Starts; got != 2 {
		t.Errorf("starts %d after the second start, want 2", got)
	}
}

// TestMetricPairsCarryThePod: the metrics' view of each pair has its pod,
// container ID and interface, and no core End while it is not attached.
func TestMetricPairsCarryThePod(t *testing.T) {
	m := podManager(t, t.TempDir(), false)
	ps := m.MetricPairs()
	if len(ps) != len(podPairs) {
		t.Fatalf("%d pairs, want %d", len(ps), len(podPairs))
	}
	for _, p := range ps {
		pp := podPairs[p.Unit]
		if p.PodNamespace != pp.namespace || p.PodName != pp.name || p.Interface != map[bool]string{true: pp.ifName}[pp.name != ""] {
			t.Errorf("pair %d: %+v, want %+v", p.Unit, p, pp)
		}
		if p.A.End != nil || p.B.Device != fmt.Sprintf("epair%db", p.Unit) {
			t.Errorf("pair %d not attached but %+v", p.Unit, p)
		}
	}
}

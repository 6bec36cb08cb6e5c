package daemon

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/epair-cni/epair/pkg/datapath"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/state"
)

func TestForEachBoundsTheWorkers(t *testing.T) {
	const n, workers = 100, 3
	var running, most atomic.Int32
	var mu sync.Mutex
	seen := map[int]bool{}
	forEach(n, workers, func(i int) {
		r := running.Add(1)
		for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
		}
		mu.Lock()
		seen[i] = true
		mu.Unlock()
		running.Add(-1)
	})
	if len(seen) != n {
		t.Fatalf("fn ran for %d of %d", len(seen), n)
	}
	if most.Load() > workers {
		t.Fatalf("%d at once, want at most %d", most.Load(), workers)
	}
}

// TestRestoreWhileServing: a restore of many pairs (here all failing: their
// namespaces are gone, which needs no privileges) runs beside Get, Stats,
// List and Delete calls without a race, and each call sees the pair's
// outcome, not a half-made restore.
func TestRestoreWhileServing(t *testing.T) {
	const n = 64
	dir := t.TempDir()
	store, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	st := &state.State{Pairs: map[int]*state.Pair{}, NextMACIndex: n}
	gone := filepath.Join(dir, "gone-netns")
	for u := range n {
		st.Pairs[u] = &state.Pair{Unit: u, Phase: state.Ready, MTU: 1500, Queues: 1, MACIndex: uint32(u),
			A: state.End{Name: fmt.Sprintf("p%d", u), Index: 2, MAC: "02:00:00:00:00:0a", Netns: gone},
			B: state.End{Name: fmt.Sprintf("epair%db", u), Index: 3 + u, MAC: "02:00:00:00:00:0b", Netns: gone}}
	}
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
	core := epair.New(epair.Config{})
	defer core.Close()
	m, err := NewManager(store, core, 1, datapath.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var wg sync.WaitGroup
	for u := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := strconv.Itoa(u)
			switch u % 4 {
			case 0:
				if p, err := m.Get(id); err != nil || p.Forwarding || !strings.Contains(p.Problem, "no such file") {
					t.Errorf("unit %d: %+v %v, want its namespace's problem", u, p, err)
				}
			case 1:
				if _, err := m.Stats(id); err != nil {
					t.Errorf("stats of unit %d: %v", u, err)
				}
			case 2:
				if err := m.Delete(id); err != nil {
					t.Errorf("delete unit %d: %v", u, err)
				}
			case 3:
				for _, p := range m.List() {
					if strings.Contains(p.Problem, "being re-attached") {
						t.Errorf("List during the restore: unit %d %s", p.Unit, p.Problem)
					}
				}
			}
		}()
	}
	wg.Wait()
	if got := m.Len(); got != n-n/4 {
		t.Fatalf("%d pairs left, want %d", got, n-n/4)
	}
}

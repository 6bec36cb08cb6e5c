package daemon

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/datapath"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/state"
	"github.com/epair-cni/epair/pkg/tap"
	"github.com/epair-cni/epair/pkg/tap/taptest"
)

// ownNetns is a network namespace file any user may open: the test's own.
const ownNetns = "/proc/self/ns/net"

// fakeDevices stands in for the kernel's TAPs: persistent devices by
// namespace and name, which outlive a Manager as real ones outlive a
// daemon.
type fakeDevices struct {
	mu      sync.Mutex
	next    int
	byKey   map[string]int             // netns/name -> ifindex
	open    map[string]*taptest.Device // netns/name -> the device last opened
	removed []string
}

func newFakeDevices() *fakeDevices {
	return &fakeDevices{next: 10, byKey: map[string]int{}, open: map[string]*taptest.Device{}}
}

func devKey(netns, name string) string { return netns + "/" + name }

func (f *fakeDevices) exists(netns, name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.byKey[devKey(netns, name)]
	return ok, nil
}

func (f *fakeDevices) create(e *state.End, queues, _ int) (tap.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := devKey(e.Netns, e.Name)
	if _, ok := f.byKey[k]; ok {
		return nil, fmt.Errorf("create %s: exists", e.Name)
	}
	f.next++
	f.byKey[k], e.Index = f.next, f.next
	d := taptest.NewDevice(e.Name, queues)
	f.open[k] = d
	return d, nil
}

func (f *fakeDevices) attach(e *state.End, queues int, _ *nsCache) (tap.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := devKey(e.Netns, e.Name)
	if f.byKey[k] != e.Index {
		return nil, fmt.Errorf("end %s (ifindex %d) no longer exists", e.Name, e.Index)
	}
	d := taptest.NewDevice(e.Name, queues)
	f.open[k] = d
	return d, nil
}

func (f *fakeDevices) destroy(d tap.Endpoint) error {
	d.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, o := range f.open {
		if o == d {
			delete(f.byKey, k)
			f.removed = append(f.removed, k)
		}
	}
	return nil
}

func (f *fakeDevices) remove(e *state.End, _ int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := devKey(e.Netns, e.Name)
	if i, ok := f.byKey[k]; ok && (e.Index == 0 || i == e.Index) {
		delete(f.byKey, k)
		f.removed = append(f.removed, k)
	}
	return nil
}

func (f *fakeDevices) device(netns, name string) *taptest.Device {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open[devKey(netns, name)]
}

func (f *fakeDevices) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.byKey)
}

// testDaemon is the state dir, core and fake kernel a Manager runs on; a
// "crash" keeps all but the Manager.
type testDaemon struct {
	t    *testing.T
	dir  string
	core *epair.Core
	devs *fakeDevices
}

func newTestDaemon(t *testing.T) *testDaemon {
	core := epair.New(epair.Config{})
	t.Cleanup(core.Close)
	return &testDaemon{t: t, dir: filepath.Join(t.TempDir(), "state"), core: core, devs: newFakeDevices()}
}

// start opens the state and starts a Manager on it; stop (returned) is
// what the process's death does to it: its links stop and its lock goes,
// its devices stay.
func (d *testDaemon) start() (m *Manager, stop func()) {
	d.t.Helper()
	store, err := state.Open(d.dir)
	if err != nil {
		d.t.Fatal(err)
	}
	m, err = newManager(store, d.core, 1, datapath.Options{}, "", d.devs, newFakeNetlink().watch())
	if err != nil {
		store.Close()
		d.t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			m.Close()
			store.Close()
		})
	}
	d.t.Cleanup(stop)
	return m, stop
}

// crosses sends a frame out of the a end of p and reports whether it came
// out of the b end.
func (d *testDaemon) crosses(p *api.Pair, id uint16) bool {
	d.t.Helper()
	a, b := d.devs.device(ownNetns, p.A.Name), d.devs.device("", p.B.Name)
	if a == nil || b == nil {
		d.t.Fatalf("pair %d: no open device", p.Unit)
	}
	fr := make([]byte, epair.VnetHdrLen+60)
	binary.BigEndian.PutUint16(fr[epair.VnetHdrLen+12:], 0x88b5)
	binary.BigEndian.PutUint16(fr[epair.VnetHdrLen+14:], id)
	a.Queues[0].Send(fr)
	got, ok := b.Queues[0].Recv(5 * time.Second)
	return ok && binary.BigEndian.Uint16(got[epair.VnetHdrLen+14:]) == id
}

func TestManagerCreateForwardsAndDeleteRemoves(t *testing.T) {
	d := newTestDaemon(t)
	m, _ := d.start()
	p, err := m.Create(&api.CreateRequest{ANetns: ownNetns, AName: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Unit != 0 || p.A.Name != "eth0" || p.B.Name != "epair0b" || !p.Forwarding {
		t.Fatalf("created %+v, want unit 0, eth0/epair0b, forwarding", p)
	}
	if !d.crosses(p, 1) {
		t.Fatal("a frame sent out of eth0 did not come out of epair0b")
	}
	// The a name is taken in its namespace: a second create fails and
	// leaves nothing behind.
	if _, err := m.Create(&api.CreateRequest{ANetns: ownNetns, AName: "eth0"}); err == nil {
		t.Fatal("second eth0 in one namespace: no error")
	}
	if m.Len() != 1 || d.devs.count() != 2 {
		t.Fatalf("after a failed create: %d pairs, %d devices, want 1 and 2", m.Len(), d.devs.count())
	}
	if err := m.Delete("epair0b"); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 0 || d.devs.count() != 0 {
		t.Fatalf("after delete: %d pairs, %d devices, want none", m.Len(), d.devs.count())
	}
	if err := m.Delete("0"); err == nil {
		t.Fatal("deleting a deleted pair: no error")
	}
}

// Bad input gets an error and changes nothing: no device, no state.
func TestManagerCreateRejectsBadInput(t *testing.T) {
	d := newTestDaemon(t)
	m, _ := d.start()
	for _, req := range []api.CreateRequest{
		{ANetns: ownNetns, MTU: 10},
		{ANetns: ownNetns, Queues: MaxQueues + 1},
		{ANetns: ownNetns, AName: "a/b"},
		{ANetns: "relative/netns"},
		{ANetns: ownNetns, AMAC: "zz"},
	} {
		if _, err := m.Create(&req); err == nil {
			t.Errorf("create %+v: no error", req)
		}
	}
	if m.Len() != 0 || d.devs.count() != 0 {
		t.Fatalf("%d pairs, %d devices after bad input, want none", m.Len(), d.devs.count())
	}
}

// After a crash the next Manager re-attaches every pair from the state on
// disk (same units, names and ifindexes) and forwards again; a pair whose
// device went meanwhile is kept with its problem, not recreated.
func TestManagerRestoresAfterCrash(t *testing.T) {
	d := newTestDaemon(t)
	m, crash := d.start()
	var made []*api.Pair
	for i := range 3 {
		p, err := m.Create(&api.CreateRequest{ANetns: ownNetns, AName: fmt.Sprintf("eth%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, p)
	}
	crash()
	d.devs.remove(&state.End{Netns: "", Name: "epair2b"}, 1) // deleted by hand while down

	m2, _ := d.start()
	for _, want := range made[:2] {
		got, err := m2.Get(want.B.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Forwarding || got.A.Index != want.A.Index || got.B.Index != want.B.Index {
			t.Fatalf("restored %+v, want %+v forwarding", got, want)
		}
		if !d.crosses(got, uint16(got.Unit)+100) {
			t.Fatalf("pair %d does not forward after the restore", got.Unit)
		}
	}
	gone, err := m2.Get("2")
	if err != nil {
		t.Fatal(err)
	}
	if gone.Forwarding || gone.Problem == "" {
		t.Fatalf("pair with a deleted device: %+v, want not forwarding, with a problem", gone)
	}
	if ok, _ := d.devs.exists("", "epair2b"); ok {
		t.Fatal("the restore recreated a deleted device")
	}
}

// A crash in the middle of a create leaves the pair Creating on disk; the
// next Manager deletes what was made of it and frees the unit.
func TestManagerRollsBackInterruptedCreate(t *testing.T) {
	d := newTestDaemon(t)
	m, crash := d.start()
	p, err := m.Create(&api.CreateRequest{ANetns: ownNetns, AName: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.st.Pairs[p.Unit].Phase = state.Creating
	err = m.store.Save(m.st)
	m.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	crash()

	m2, _ := d.start()
	if n := m2.Len(); n != 0 {
		t.Fatalf("%d pairs after rolling back, want 0", n)
	}
	if n := d.devs.count(); n != 0 {
		t.Fatalf("%d devices left of the interrupted create, want 0", n)
	}
	again, err := m2.Create(&api.CreateRequest{ANetns: ownNetns, AName: "eth0"})
	if err != nil || again.Unit != 0 {
		t.Fatalf("create after the rollback: %+v, %v; want unit 0 again", again, err)
	}
}

// Package daemon is the epair node agent: it owns every pair's TAP devices,
// runs the queue core between them, keeps its state on disk and serves the
// local API.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/datapath"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/nsfile"
	"github.com/epair-cni/epair/pkg/state"
	"github.com/epair-cni/epair/pkg/tap"
)

var (
	errInvalid  = errors.New("invalid request")
	errNotFound = errors.New("no such pair")
)

// MaxQueues bounds the TAP queues per end.
const MaxQueues = 16

// Manager creates, restores and deletes pairs. One mutex serialises changes
// so that the state on disk always matches the devices.
type Manager struct {
	mu       sync.Mutex
	core     *epair.Core
	store    *state.Store
	st       *state.State
	links    map[int]*datapath.Link
	problems map[int]string
	hostID   uint64
	queues   int
	watch    *linkWatch
	devs     devices
	dp       datapath.Options
	// selfNetns is the inode of the daemon's own network namespace, read
	// once at start (a thread of ours may be in another one later).
	selfNetns uint64
	// pinDir holds bind mounts of the namespaces that b ends were put in
	// by callers in other namespaces (see hostNetns); "" pins none.
	pinDir string
	// restoring holds, by unit, a channel closed once the pair is
	// re-attached or known not to be (see restore); attached is closed
	// when no pair is left in it. The API waits for them until
	// restoreDeadline. unfollowed holds the links that settle has yet
	// to follow, until it has (settled). closed is set by Close.
	restoring       map[int]chan struct{}
	attached        chan struct{}
	restoreDeadline time.Time
	unfollowed      map[int]*datapath.Link
	settled         bool
	closed          bool
	// restoreTook is how long the restore took to re-attach every pair,
	// in nanoseconds; -1 while it runs (for the metrics).
	restoreTook atomic.Int64
}

// NewManager loads the state, finishes the changes a crash interrupted and
// starts re-attaching to every other pair in it; it returns before they
// are all forwarding (see restore). pinDir is where it pins callers'
// namespaces ("" for none).
func NewManager(store *state.Store, core *epair.Core, hostID uint64, dp datapath.Options, pinDir string) (*Manager, error) {
	return newManager(store, core, hostID, dp, pinDir, kernelDevices{}, newLinkWatch())
}

// newManager is NewManager with the kernel's side given: the devices and
// the link watch (tests pass fakes, which need no root).
func newManager(store *state.Store, core *epair.Core, hostID uint64, dp datapath.Options, pinDir string,
	devs devices, watch *linkWatch) (*Manager, error) {
	self, err := nsfile.Inode("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("the daemon's own network namespace: %w", err)
	}
	st, err := store.Load()
	if err != nil {
		return nil, err
	}
	m := &Manager{
		core: core, store: store, st: st, hostID: hostID,
		queues:     core.Config().Queues,
		links:      map[int]*datapath.Link{},
		problems:   map[int]string{},
		watch:      watch,
		devs:       devs,
		dp:         dp,
		selfNetns:  self,
		pinDir:     pinDir,
		restoring:  map[int]chan struct{}{},
		attached:   make(chan struct{}),
		unfollowed: map[int]*datapath.Link{},
	}
	m.countStart()
	m.restore()
	return m, nil
}

// Create makes a new pair as asked. On any failure nothing is left: no
// device, no state.
func (m *Manager) Create(req *api.CreateRequest) (*api.Pair, error) {
	if err := m.validate(req); err != nil {
		return nil, err
	}
	p, err := m.reserve(req)
	if err != nil {
		return nil, err
	}
	// The devices are made without the lock, so that creates and deletes
	// of other pairs overlap with this one's kernel work. They are built
	// on a copy: the state being saved meanwhile must not change under
	// the encoder.
	work := *p
	link, err := m.build(&work)

	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		work.Phase = state.Ready
		*p = work
		if err = m.store.Save(m.st); err != nil {
			link.Stop()
		}
	}
	if err != nil {
		m.removeDevices(&work, nil, false)
		delete(m.st.Pairs, p.Unit)
		m.unpinUnused()
		if serr := m.store.Save(m.st); serr != nil {
			slog.Error("saving state after failed create", "err", serr)
		}
		return nil, err
	}
	m.links[p.Unit] = link
	m.follow(p, link)
	slog.Info("pair created", "unit", p.Unit, "a", p.A.Name, "b", p.B.Name)
	return m.describe(p), nil
}

// reserve plans the pair and writes it, in the Creating phase, to the
// state: its unit and names are taken from then on.
func (m *Manager) reserve(req *api.CreateRequest) (*state.Pair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	if req.BNetns, err = m.hostNetns(req); err != nil {
		return nil, err
	}
	p, err := m.plan(req)
	if err == nil {
		m.st.Pairs[p.Unit] = p
		if err = m.store.Save(m.st); err != nil {
			delete(m.st.Pairs, p.Unit)
		}
	}
	if err != nil {
		m.unpinUnused()
		return nil, err
	}
	return p, nil
}

func (m *Manager) validate(r *api.CreateRequest) error {
	if r.MTU == 0 {
		r.MTU = 1500
	}
	if r.MTU < api.MinMTU || r.MTU > api.MaxMTU {
		return fmt.Errorf("%w: mtu %d out of range %d..%d", errInvalid, r.MTU, api.MinMTU, api.MaxMTU)
	}
	if r.Queues == 0 {
		r.Queues = m.queues
	}
	if r.Queues < 1 || r.Queues > MaxQueues {
		return fmt.Errorf("%w: queues %d out of range 1..%d", errInvalid, r.Queues, MaxQueues)
	}
	if r.AName != "" {
		if err := epair.ValidIfName(r.AName); err != nil {
			return fmt.Errorf("%w: a name: %w", errInvalid, err)
		}
	}
	if r.AMAC != "" {
		if _, err := parseMAC(r.AMAC); err != nil {
			return err
		}
	}
	if r.Owner != nil {
		if _, err := ownerAddrs(r.Owner); err != nil {
			return fmt.Errorf("%w: %w", errInvalid, err)
		}
		if pod := r.Owner.Pod; pod != nil {
			if err := pod.Validate(); err != nil {
				return fmt.Errorf("%w: owner pod: %w", errInvalid, err)
			}
		}
	}
	if r.Bandwidth != nil {
		if err := r.Bandwidth.Validate(); err != nil {
			return fmt.Errorf("%w: bandwidth: %w", errInvalid, err)
		}
		if r.Bandwidth.IsZero() {
			r.Bandwidth = nil
		}
	}
	if r.Unit != nil && *r.Unit < 0 {
		return fmt.Errorf("%w: unit %d is negative", errInvalid, *r.Unit)
	}
	return checkNetns(r.ANetns)
}

// plan picks the unit, names and MACs of a new pair (the if_epair naming and
// MAC rules) and returns it in the Creating phase.
func (m *Manager) plan(r *api.CreateRequest) (*state.Pair, error) {
	want := -1
	if r.Unit != nil {
		want = *r.Unit
	}
	var lookErr error
	exists := func(name string) bool {
		ok, err := m.devs.exists(r.BNetns, name)
		if err == nil && !ok && r.AName == "" {
			ok, err = m.devs.exists(r.ANetns, name)
		}
		if err != nil {
			lookErr = err
		}
		return ok
	}
	inUse := func(u int) bool { return m.st.Pairs[u] != nil }
	unit, err := epair.AllocUnit(want, inUse, exists)
	if lookErr != nil {
		return nil, lookErr
	}
	if err != nil {
		return nil, err
	}
	aName, bName, _ := epair.UnitNames(unit)
	if r.AName != "" {
		aName = r.AName
		ok, err := m.devs.exists(r.ANetns, aName)
		if err != nil {
			return nil, err
		}
		if ok {
			return nil, fmt.Errorf("%w: interface %s already exists in %s", errExists, aName, tap.NetnsName(r.ANetns))
		}
	}
	idx := m.st.NextMACIndex
	m.st.NextMACIndex++
	amac, bmac := epair.MACs(idx, m.hostID)
	aMAC := amac.String()
	if r.AMAC != "" {
		aMAC = r.AMAC
	}
	return &state.Pair{
		Unit: unit, Phase: state.Creating, MTU: r.MTU, Queues: r.Queues, MACIndex: idx, Owner: r.Owner,
		AntiSpoofing: r.AntiSpoofing, Bandwidth: r.Bandwidth,
		A: state.End{Name: aName, MAC: aMAC, Netns: r.ANetns},
		B: state.End{Name: bName, MAC: bmac.String(), Netns: r.BNetns},
	}, nil
}

// build creates and configures both TAPs and starts forwarding.
func (m *Manager) build(p *state.Pair) (*datapath.Link, error) {
	opts, err := m.startOptions(p)
	if err != nil {
		return nil, err
	}
	b, err := m.devs.create(&p.B, p.Queues, p.MTU)
	if err != nil {
		return nil, err
	}
	a, err := m.devs.create(&p.A, p.Queues, p.MTU)
	if err != nil {
		if derr := m.devs.destroy(b); derr != nil {
			slog.Warn("deleting tap after failed create", "name", p.B.Name, "err", derr)
		}
		return nil, err
	}
	return datapath.Start(m.core, p.MTU, a, b, opts), nil
}

func createEnd(e *state.End, queues, mtu int) (*tap.Device, error) {
	hw, err := parseMAC(e.MAC)
	if err != nil {
		return nil, err
	}
	var d *tap.Device
	err = inNetns(e.Netns, func() error {
		var err error
		d, err = tap.Create(e.Name, queues)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create %s in %s: %w", e.Name, tap.NetnsName(e.Netns), err)
	}
	e.Index = d.Index
	if err := tap.Configure(e.Netns, d.Index, hw, mtu); err != nil {
		d.Destroy()
		return nil, err
	}
	return d, nil
}

// follow keeps the pair's Ends' IFF_UP and MTU in step with the kernel's.
// Without it the link rule would only see what the daemon itself set.
func (m *Manager) follow(p *state.Pair, l *datapath.Link) {
	if err := m.watch.add(p.A.Netns, p.A.Index, l.Pair.A); err != nil {
		slog.Warn("not following link state", "name", p.A.Name, "err", err)
	}
	if err := m.watch.add(p.B.Netns, p.B.Index, l.Pair.B); err != nil {
		slog.Warn("not following link state", "name", p.B.Name, "err", err)
	}
}

// removeDevices stops forwarding (if link is not nil) and deletes both TAPs
// if they still exist. An end with no ifindex yet is looked up by name only
// when byName: after a crash in the middle of a create, where the name was
// reserved for us; never after a failed create, where the name may belong
// to whatever made the create fail. It touches no Manager state, so it runs
// unlocked.
func (m *Manager) removeDevices(p *state.Pair, link *datapath.Link, byName bool) {
	if link != nil {
		link.Stop()
	}
	for _, e := range []state.End{p.A, p.B} {
		if e.Index == 0 && !byName {
			continue
		}
		if err := m.devs.remove(&e, p.Queues); err != nil {
			slog.Warn("deleting tap", "name", e.Name, "err", err)
		}
	}
}

// Delete removes a pair: stop forwarding, drain, delete both TAPs, free the
// unit (epair_clone_destroy). The kernel work runs without the lock, so
// deletions of several pairs overlap.
func (m *Manager) Delete(id string) error {
	if !m.awaitRestore(id) {
		return fmt.Errorf("%w: pair %s is still being re-attached after a restart; try again", errBusy, id)
	}
	p, link, err := m.startDelete(id)
	if err != nil {
		return err
	}
	m.removeDevices(p, link, true)
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.st.Pairs, p.Unit)
	delete(m.problems, p.Unit)
	m.unpinUnused()
	slog.Info("pair deleted", "unit", p.Unit)
	return m.store.Save(m.st)
}

// startDelete marks the pair Deleting (on disk too) and takes its link.
func (m *Manager) startDelete(id string) (*state.Pair, *datapath.Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.find(id)
	if err != nil {
		return nil, nil, err
	}
	switch p.Phase {
	case state.Creating:
		return nil, nil, fmt.Errorf("%w: pair %d is being created; try again", errBusy, p.Unit)
	case state.Deleting:
		return nil, nil, fmt.Errorf("%w: pair %d is already being deleted", errNotFound, p.Unit)
	}
	p.Phase = state.Deleting
	if err := m.store.Save(m.st); err != nil {
		p.Phase = state.Ready
		return nil, nil, err
	}
	link := m.links[p.Unit]
	delete(m.links, p.Unit)
	m.watch.remove(p.A.Netns, p.A.Index)
	m.watch.remove(p.B.Netns, p.B.Index)
	snapshot := *p
	return &snapshot, link, nil
}

// Get describes one pair.
func (m *Manager) Get(id string) (out *api.Pair, err error) {
	err = m.withPair(id, func(p *state.Pair) error {
		out = m.describe(p)
		return nil
	})
	return out, err
}

// withPair runs fn on the pair id names (see find) with m.mu held, once a
// restart's re-attachment of it is over (or has given up on it), so that
// fn sees the pair's link if it has one.
func (m *Manager) withPair(id string, fn func(p *state.Pair) error) error {
	m.awaitRestore(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.find(id)
	if err != nil {
		return err
	}
	return fn(p)
}

// List describes every pair, by unit. After a restart it waits until
// every pair is re-attached or known not to be (see waitRestore): a pair
// listed as not forwarding only because the restore had not got to it yet
// would fail a CNI CHECK.
func (m *Manager) List() []api.Pair {
	m.waitRestore(m.attached)
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]api.Pair, 0, len(m.st.Pairs))
	for _, p := range m.st.Pairs {
		if p.Phase != state.Ready {
			continue // half made or half gone: not an attachment yet, or any more
		}
		out = append(out, *m.describe(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Unit < out[j].Unit })
	return out
}

// Stats returns a pair's counters.
func (m *Manager) Stats(id string) (s *api.Stats, err error) {
	err = m.withPair(id, func(p *state.Pair) error {
		s = &api.Stats{Unit: p.Unit, Pod: p.Owner.PodName(), A: api.EndStats{Name: p.A.Name}, B: api.EndStats{Name: p.B.Name}}
		if l := m.links[p.Unit]; l != nil {
			s.A.Stats, s.B.Stats = l.Pair.A.Stats(), l.Pair.B.Stats()
		}
		return nil
	})
	return s, err
}

// Len returns the number of pairs.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.st.Pairs)
}

// Close stops forwarding for every pair; the persistent TAPs stay, so a
// restarted daemon re-attaches to them and pods keep their interfaces. A
// restore still running stops each pair it re-attaches from now on.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.watch.close()
	for unit, l := range m.links {
		l.Stop()
		delete(m.links, unit)
	}
}

// find resolves what a caller names a pair by, for every verb: a unit
// number, the name of either end, or the pod of its owner, as
// namespace/name or as a name alone (so every verb, present and future,
// takes a pod). The host (b) name is unique; an a name (eth0) and a pod's
// name may repeat: one that several pairs answer to is an error listing
// them, never a guess.
func (m *Manager) find(id string) (*state.Pair, error) {
	if u, err := strconv.Atoi(id); err == nil {
		if p := m.st.Pairs[u]; p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("%w: unit %d", errNotFound, u)
	}
	var found []*state.Pair
	for _, p := range m.st.Pairs {
		if p.B.Name == id {
			return p, nil
		}
		if p.A.Name == id || podIs(p.Owner, id) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: %q (give a unit number, an end name, or a pod as namespace/name or name)", errNotFound, id)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%w: %q names %d pairs: %s; give the unit number (or the pod as namespace/name, if it has one pair)",
		errInvalid, id, len(found), describeMatches(found))
}

// podIs reports whether id is the owner's pod as namespace/name or as its
// name alone.
func podIs(o *api.Owner, id string) bool {
	if o == nil || o.Pod == nil {
		return false
	}
	return id == o.Pod.Name || id == o.Pod.String()
}

// describeMatches lists pairs, by unit, as "pair 3 (eth0, pod default/web-0)".
func describeMatches(ps []*state.Pair) string {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Unit < ps[j].Unit })
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		d := fmt.Sprintf("pair %d (%s", p.Unit, p.A.Name)
		if pod := p.Owner.PodName(); pod != "" {
			d += ", pod " + pod
		}
		out = append(out, d+")")
	}
	return strings.Join(out, ", ")
}

func (m *Manager) describe(p *state.Pair) *api.Pair {
	out := &api.Pair{
		Unit: p.Unit, Pod: p.Owner.PodName(), MTU: p.MTU, Queues: p.Queues, Owner: p.Owner, Problem: m.problems[p.Unit],
		AntiSpoofing: antiSpoofing(p), Bandwidth: p.Bandwidth,
		A: api.End{Name: p.A.Name, Index: p.A.Index, MAC: p.A.MAC, Netns: p.A.Netns},
		B: api.End{Name: p.B.Name, Index: p.B.Index, MAC: p.B.MAC, Netns: p.B.Netns},
	}
	if l := m.links[p.Unit]; l != nil {
		a, b := l.Pair.A, l.Pair.B
		out.A.Up, out.A.Running, out.A.MTU = a.Up(), a.Running(), a.MTU()
		out.B.Up, out.B.Running, out.B.MTU = b.Up(), b.Running(), b.MTU()
		out.Forwarding = a.Running() && b.Running()
	}
	switch {
	case out.Forwarding || out.Problem != "":
	case m.restoring[p.Unit] != nil:
		out.Problem = "not forwarding yet: being re-attached after a daemon restart"
	default:
		out.Problem = "not forwarding: an end's device is gone"
	}
	return out
}

var (
	errExists = errors.New("name in use")
	errBusy   = errors.New("busy")
)

func parseMAC(s string) (net.HardwareAddr, error) {
	hw, err := epair.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalid, err)
	}
	return hw, nil
}

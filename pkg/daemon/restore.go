package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/epair-cni/epair/pkg/datapath"
	"github.com/epair-cni/epair/pkg/state"
	"github.com/epair-cni/epair/pkg/tap"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// restoreWorkers is how many pairs are re-attached at once. Re-attaching
// is kernel work (setns, netlink, TUNSETIFF) with waits in it, so a few
// workers per CPU keep the CPUs busy, and one stuck pair (a namespace file
// on a hung filesystem) holds up only its worker; the bound keeps 1000
// pairs from becoming 1000 threads locked in namespaces. (Measured with
// 1000 pairs on 2 CPUs: 1 to 4 workers per CPU all take about as long;
// the CPUs are the limit.)
func restoreWorkers() int { return runtime.GOMAXPROCS(0) * 4 }

// restoreWait bounds how long the API waits for a pair's restore, and how
// long the restore waits for its slowest pair before it does the rest (a
// namespace file on a hung filesystem must not hold everything up).
const restoreWait = 5 * time.Second

// restore finishes what a crash interrupted, then re-attaches every other
// pair in the background, in unit order, several at once, each forwarding
// as soon as both its TAPs are open. It returns before they are: the API
// serves meanwhile (see waitRestore). Link watches, unpinning and saving
// the state come once every pair forwards (or after restoreWait). It never
// recreates an interface: a pair whose devices are gone, or are somebody
// else's, stays in the state, not forwarding, with its problem, until it
// is deleted.
func (m *Manager) restore() {
	start := time.Now()
	m.restoreDeadline = start.Add(restoreWait)
	dirty := m.finishInterrupted()
	var pairs []state.Pair // copies: the workers read them while Create adds pairs to m.st
	for _, p := range m.st.Pairs {
		pairs = append(pairs, *p)
		m.restoring[p.Unit] = make(chan struct{})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].Unit < pairs[j].Unit })
	m.restoreTook.Store(-1)
	go func() {
		ok := m.reattach(pairs)
		took := time.Since(start)
		m.restoreTook.Store(int64(took))
		slog.Info("restore: pairs re-attached", "pairs", len(pairs), "forwarding", ok, "took", took)
		close(m.attached)
	}()
	go func() {
		if !m.waitRestore(m.attached) {
			slog.Warn("restore: pairs still being re-attached; going on without them", "after", restoreWait)
		}
		m.settle(dirty)
	}()
}

// finishInterrupted rolls back creates and finishes deletes that a crash
// interrupted, before anything else is done, so that no name or device of
// theirs is in the way; it reports whether it changed the state.
func (m *Manager) finishInterrupted() bool {
	dirty := false
	for unit, p := range m.st.Pairs {
		if p.Phase == state.Ready {
			continue
		}
		slog.Info("finishing interrupted change", "unit", unit, "phase", p.Phase)
		m.removeDevices(p, nil, true)
		delete(m.st.Pairs, unit)
		dirty = true
	}
	return dirty
}

// reattach re-opens the pairs' TAPs with a bounded pool of workers and
// returns how many pairs forward.
func (m *Manager) reattach(pairs []state.Pair) int {
	nss := newNSCache()
	defer nss.close()
	var ok atomic.Int64
	forEach(len(pairs), restoreWorkers(), func(i int) {
		link, err := m.attach(&pairs[i], nss)
		if err == nil {
			ok.Add(1)
		}
		m.reattached(&pairs[i], link, err)
	})
	return int(ok.Load())
}

// reattached records how re-attaching a pair went and wakes whoever waits
// for it. Its link state is followed by settle, or at once if settle has
// been.
func (m *Manager) reattached(p *state.Pair, link *datapath.Link, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	close(m.restoring[p.Unit])
	delete(m.restoring, p.Unit)
	switch {
	case err != nil:
		slog.Warn("pair not re-attached", "unit", p.Unit, "err", err)
		m.problems[p.Unit] = err.Error()
	case m.closed:
		link.Stop()
	default:
		m.links[p.Unit] = link
		if sp := m.st.Pairs[p.Unit]; m.settled && sp != nil {
			m.follow(sp, link)
		} else {
			m.unfollowed[p.Unit] = link
		}
		slog.Debug("pair re-attached", "unit", p.Unit, "a", p.A.Name, "b", p.B.Name)
	}
}

// settle does what forwarding does not wait for: follow each re-attached
// pair's link state (one netlink subscription per namespace), drop pins no
// pair uses, and save the state once if finishing interrupted changes
// altered it. Pairs deleted meanwhile are skipped. The lock is taken per
// pair, so that the API is not held up behind all of them.
func (m *Manager) settle(dirty bool) {
	m.mu.Lock()
	units := make([]int, 0, len(m.unfollowed))
	for u := range m.unfollowed {
		units = append(units, u)
	}
	m.mu.Unlock()
	sort.Ints(units)
	for _, u := range units {
		m.mu.Lock()
		if l := m.unfollowed[u]; !m.closed && m.links[u] == l {
			m.follow(m.st.Pairs[u], l)
		}
		delete(m.unfollowed, u)
		m.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for u, l := range m.unfollowed { // re-attached since the list was taken
		if !m.closed && m.links[u] == l {
			m.follow(m.st.Pairs[u], l)
		}
		delete(m.unfollowed, u)
	}
	m.settled = true
	if m.closed {
		return
	}
	m.unpinUnused()
	if dirty {
		if err := m.store.Save(m.st); err != nil {
			slog.Error("saving state after restore", "err", err)
		}
	}
}

// waitRestore waits for ch (closed when a pair, or all of them, is
// re-attached or known not to be), but not past the restore's deadline;
// it reports whether ch was closed.
func (m *Manager) waitRestore(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
	}
	t := time.NewTimer(time.Until(m.restoreDeadline))
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// awaitRestore waits (see waitRestore) until the pair id names is
// re-attached, or known not to be, if a restore is still at it: what Get,
// Stats and Delete say or do should not depend on how far it got. It
// reports false if the pair is still being re-attached.
func (m *Manager) awaitRestore(id string) bool {
	m.mu.Lock()
	var ch chan struct{}
	if p, err := m.find(id); err == nil {
		ch = m.restoring[p.Unit]
	}
	m.mu.Unlock()
	return ch == nil || m.waitRestore(ch)
}

// attach re-opens both persistent TAPs of a pair and starts forwarding.
func (m *Manager) attach(p *state.Pair, nss *nsCache) (*datapath.Link, error) {
	b, err := m.devs.attach(&p.B, p.Queues, nss)
	if err != nil {
		return nil, err
	}
	a, err := m.devs.attach(&p.A, p.Queues, nss)
	if err != nil {
		b.Close()
		return nil, err
	}
	// The pair's anti-spoofing filter and shapers, set before its
	// readers read a frame.
	opts, err := m.startOptions(p)
	if err != nil {
		a.Close()
		b.Close()
		return nil, err
	}
	return datapath.Start(m.core, p.MTU, a, b, opts), nil
}

// attachEnd re-opens an end's TAP if the device at its ifindex is its own
// (tap.Find); somebody else's is neither opened nor touched. Both happen on
// one trip into the end's namespace.
func attachEnd(e *state.End, queues int, nss *nsCache) (*tap.Device, error) {
	n, err := nss.get(e.Netns)
	if err != nil {
		return nil, fmt.Errorf("end %s: %w", e.Name, err)
	}
	var d *tap.Device
	err = n.do(func(h *netlink.Handle) error {
		l, err := tap.Find(h, identity(e, queues))
		if err != nil {
			return err
		}
		if l == nil {
			return fmt.Errorf("end %s (ifindex %d) no longer exists", e.Name, e.Index)
		}
		if d, err = tap.Attach(e.Name, queues); err != nil {
			return fmt.Errorf("re-attach %s: %w", e.Name, err)
		}
		return nil
	})
	var fe *tap.ForeignError
	if errors.As(err, &fe) {
		fe.Warn("not re-attaching")
	}
	if err != nil {
		return nil, err
	}
	if d.Index != e.Index { // replaced between the match and the attach
		d.Close()
		return nil, fmt.Errorf("re-attach %s: ifindex %d, want %d: %w", e.Name, d.Index, e.Index, tap.ErrForeign)
	}
	return d, nil
}

// forEach calls fn(0..n-1) on at most workers goroutines at once, in
// order of i as far as the workers take them, and returns when all are
// done.
func forEach(n, workers int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// nsCache opens each namespace a restore needs once: its check, file and
// netlink socket serve every end in it (all of a node's b ends share the
// host's), instead of one of each per end.
type nsCache struct {
	mu  sync.Mutex
	nss map[string]*nsEntry
}

type nsEntry struct {
	path string
	once sync.Once
	fd   netns.NsHandle // for a path other than ""
	err  error
	// h is made on the first trip into the namespace (do), where a
	// socket is born in it without a setns of its own.
	hOnce sync.Once
	h     *netlink.Handle
	hErr  error
}

func newNSCache() *nsCache { return &nsCache{nss: map[string]*nsEntry{}} }

// get returns the namespace at path ("" is the daemon's), checked and open.
func (c *nsCache) get(path string) (*nsEntry, error) {
	c.mu.Lock()
	n := c.nss[path]
	if n == nil {
		n = &nsEntry{path: path, fd: -1}
		c.nss[path] = n
	}
	c.mu.Unlock()
	n.once.Do(n.open)
	return n, n.err
}

func (n *nsEntry) open() {
	if n.err = checkNetns(n.path); n.err != nil || n.path == "" {
		return
	}
	if n.fd, n.err = netns.GetFromPath(n.path); n.err != nil {
		n.err = fmt.Errorf("open netns %s: %w", n.path, n.err)
	}
}

// do runs fn on a thread in the namespace, as inNetns does but through
// the file opened once, with a netlink handle in the namespace.
func (n *nsEntry) do(fn func(h *netlink.Handle) error) error {
	call := func() error {
		n.hOnce.Do(func() {
			if n.h, n.hErr = netlink.NewHandle(); n.hErr != nil {
				n.hErr = fmt.Errorf("netlink in %s: %w", tap.NetnsName(n.path), n.hErr)
			}
		})
		if n.hErr != nil {
			return n.hErr
		}
		return fn(n.h)
	}
	if n.path == "" {
		return call()
	}
	errc := make(chan error, 1)
	// A goroutine of its own: if the thread cannot be put back in the
	// daemon's namespace, it stays locked and dies with the goroutine
	// instead of running other goroutines in the wrong namespace.
	go func() {
		runtime.LockOSThread()
		self, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("the thread's netns: %w", err)
			return
		}
		defer self.Close()
		if err := netns.Set(n.fd); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", n.path, err)
			return
		}
		err = call()
		if netns.Set(self) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func (c *nsCache) close() {
	for _, n := range c.nss {
		if n.h != nil {
			n.h.Close()
		}
		if n.fd >= 0 {
			n.fd.Close()
		}
	}
}

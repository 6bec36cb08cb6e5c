package daemon

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/tap"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// linkWatch keeps each End's IFF_UP and MTU equal to its kernel interface's,
// as if_epair reads if_flags and if_mtu: `ip link set eth0 down` in a pod
// makes the link rule drop frames towards it, and an MTU set by hand is the
// one the MTU rule checks. One netlink subscription per namespace in use;
// nothing polls.
//
// netlink closes a subscription on any receive error, ENOBUFS above all:
// the kernel drops notifications when links change faster than the daemon
// reads them. A watch then subscribes again (waiting longer after each
// failure, so that it never spins) and reads every followed link once, as
// the changes in the gap are lost for good.
type linkWatch struct {
	mu    sync.Mutex
	perNS map[string]*nsWatch
	wg    sync.WaitGroup // the goroutine of every nsWatch

	// Set by newLinkWatch; tests replace them before the first add.
	subscribe subscribeFunc
	link      func(path string, index int) (netlink.Link, error)
	minDelay  time.Duration // before the first resubscription
	maxDelay  time.Duration // between attempts at the most
}

// subscribeFunc opens a link subscription in the namespace at path ("" is
// the daemon's own). Updates arrive on ch until done is closed or the
// subscription fails; then ch is closed. onErr hears every error on the way.
type subscribeFunc func(path string, ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error

type nsWatch struct {
	lw   *linkWatch
	path string
	mu   sync.Mutex
	ends map[int]*epair.End // by ifindex
	done chan struct{}      // closed by remove or close
	wait backoff            // used by run's goroutine only
}

func newLinkWatch() *linkWatch {
	return &linkWatch{
		perNS:     map[string]*nsWatch{},
		subscribe: netlinkSubscribe(0),
		link:      tap.LinkAt,
		minDelay:  100 * time.Millisecond,
		maxDelay:  30 * time.Second,
	}
}

// add starts following the interface index in the namespace at path.
func (lw *linkWatch) add(path string, index int, e *epair.End) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	w := lw.perNS[path]
	if w == nil {
		w = &nsWatch{lw: lw, path: path, ends: map[int]*epair.End{}, done: make(chan struct{}),
			wait: backoff{min: lw.minDelay, max: lw.maxDelay}}
		s, err := w.open()
		if err != nil {
			return fmt.Errorf("watch links in %s: %w", tap.NetnsName(path), err)
		}
		lw.perNS[path] = w
		lw.wg.Add(1)
		go w.run(s)
	}
	w.mu.Lock()
	w.ends[index] = e
	w.mu.Unlock()
	// The kernel only reports changes: read the state once now.
	if l, err := lw.link(path, index); err == nil {
		w.update(l)
	}
	return nil
}

// remove stops following an interface; the last one closes the namespace's
// subscription.
func (lw *linkWatch) remove(path string, index int) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	w := lw.perNS[path]
	if w == nil {
		return
	}
	w.mu.Lock()
	delete(w.ends, index)
	empty := len(w.ends) == 0
	w.mu.Unlock()
	if empty {
		close(w.done)
		delete(lw.perNS, path)
	}
}

// close ends every subscription and waits until none is read any more.
func (lw *linkWatch) close() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	for path, w := range lw.perNS {
		close(w.done)
		delete(lw.perNS, path)
	}
	lw.wg.Wait()
}

// subscription is one netlink link subscription of a namespace.
type subscription struct {
	ch   chan netlink.LinkUpdate
	stop chan struct{} // closing it closes the socket
}

// open subscribes to the namespace's link changes.
func (w *nsWatch) open() (*subscription, error) {
	s := &subscription{ch: make(chan netlink.LinkUpdate, 16), stop: make(chan struct{})}
	onErr := func(err error) {
		select {
		case <-s.stop: // closing the socket fails the pending read
		default:
			slog.Warn("link updates", "netns", tap.NetnsName(w.path), "err", err)
		}
	}
	if err := w.lw.subscribe(w.path, s.ch, s.stop, onErr); err != nil {
		close(s.stop) // a socket netlink left open is closed on stop
		return nil, err
	}
	return s, nil
}

// run applies link updates until the watch is closed, subscribing again
// whenever netlink ends the subscription.
func (w *nsWatch) run(s *subscription) {
	defer w.lw.wg.Done()
	for s != nil {
		start := time.Now()
		if !w.follow(s) {
			return
		}
		if time.Since(start) > w.wait.max {
			w.wait.reset() // it was healthy for a while: not a failure streak
		}
		slog.Warn("link subscription ended; subscribing again", "netns", tap.NetnsName(w.path))
		s = w.renew()
	}
}

// follow applies s's updates. It reports false when the watch was closed,
// true when netlink ended s.
func (w *nsWatch) follow(s *subscription) bool {
	for {
		select {
		case u, ok := <-s.ch:
			if !ok {
				close(s.stop) // netlink's goroutine then closes the dead socket
				return !w.closed()
			}
			w.update(u.Link)
		case <-w.done:
			close(s.stop)
			for range s.ch { // netlink's reader may be blocked sending
			}
			return false
		}
	}
}

// renew subscribes again once the backoff delay has passed, as often as it
// takes, and then reads every followed link. It returns nil if the watch is
// closed first.
func (w *nsWatch) renew() *subscription {
	for {
		if !w.sleep(w.wait.next()) {
			return nil
		}
		s, err := w.open()
		if err != nil {
			slog.Warn("link subscription", "netns", tap.NetnsName(w.path), "err", err)
			continue
		}
		n := w.resync()
		slog.Info("link subscription renewed", "netns", tap.NetnsName(w.path), "links read", n)
		return s
	}
}

// resync reads the state of every followed link, which changes while
// unsubscribed did not report. It returns how many it read.
func (w *nsWatch) resync() int {
	w.mu.Lock()
	indexes := slices.Collect(maps.Keys(w.ends))
	w.mu.Unlock()
	n := 0
	for _, i := range indexes {
		l, err := w.lw.link(w.path, i)
		if err != nil {
			slog.Warn("reading link after resubscribing", "netns", tap.NetnsName(w.path), "index", i, "err", err)
			continue
		}
		w.update(l)
		n++
	}
	return n
}

// sleep waits d; false if the watch was closed meanwhile.
func (w *nsWatch) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.done:
		return false
	}
}

func (w *nsWatch) closed() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *nsWatch) update(l netlink.Link) {
	a := l.Attrs()
	w.mu.Lock()
	e := w.ends[a.Index]
	w.mu.Unlock()
	if e == nil {
		return
	}
	e.SetUp(a.RawFlags&unix.IFF_UP != 0)
	if a.MTU > 0 {
		e.SetMTU(a.MTU)
	}
}

// backoff doubles a delay from min up to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	b.cur = min(max(2*b.cur, b.min), b.max)
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// netlinkSubscribe is the daemon's subscribeFunc. rcvbuf, if not 0, sets the
// socket's receive buffer: tests make it tiny to provoke ENOBUFS.
func netlinkSubscribe(rcvbuf int) subscribeFunc {
	return func(path string, ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
		opts := netlink.LinkSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: rcvbuf}
		if path != "" {
			h, err := netns.GetFromPath(path)
			if err != nil {
				return fmt.Errorf("open netns %s: %w", path, err)
			}
			defer h.Close()
			opts.Namespace = &h
		}
		return netlink.LinkSubscribeWithOptions(ch, done, opts)
	}
}

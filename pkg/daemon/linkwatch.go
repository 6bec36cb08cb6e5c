package daemon

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/epair-cni/epair/pkg/epair"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// linkWatch keeps each End's IFF_UP and MTU equal to its kernel interface's,
// as if_epair reads if_flags and if_mtu: `ip link set eth0 down` in a pod
// makes the link rule drop frames towards it, and an MTU set by hand is the
// one the MTU rule checks. One netlink subscription per namespace in use;
// nothing polls.
type linkWatch struct {
	mu    sync.Mutex
	perNS map[string]*nsWatch
}

type nsWatch struct {
	mu   sync.Mutex
	ends map[int]*epair.End // by ifindex
	done chan struct{}
}

func newLinkWatch() *linkWatch { return &linkWatch{perNS: map[string]*nsWatch{}} }

// add starts following the interface index in the namespace at path.
func (lw *linkWatch) add(path string, index int, e *epair.End) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	w := lw.perNS[path]
	if w == nil {
		var err error
		if w, err = subscribe(path); err != nil {
			return err
		}
		lw.perNS[path] = w
	}
	w.mu.Lock()
	w.ends[index] = e
	w.mu.Unlock()
	// The kernel only reports changes: read the state once now.
	if l, err := linkAt(path, index); err == nil {
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

// close ends every subscription.
func (lw *linkWatch) close() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	for path, w := range lw.perNS {
		close(w.done)
		delete(lw.perNS, path)
	}
}

func subscribe(path string) (*nsWatch, error) {
	w := &nsWatch{ends: map[int]*epair.End{}, done: make(chan struct{})}
	ch := make(chan netlink.LinkUpdate, 16)
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case <-w.done: // closing the socket fails the pending read
			default:
				slog.Warn("link updates", "netns", nsName(path), "err", err)
			}
		},
	}
	if path != "" {
		h, err := netns.GetFromPath(path)
		if err != nil {
			return nil, fmt.Errorf("watch links in %s: %w", path, err)
		}
		defer h.Close()
		opts.Namespace = &h
	}
	if err := netlink.LinkSubscribeWithOptions(ch, w.done, opts); err != nil {
		return nil, fmt.Errorf("watch links in %s: %w", nsName(path), err)
	}
	go func() {
		for u := range ch {
			w.update(u.Link)
		}
	}()
	return w, nil
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

func linkAt(path string, index int) (netlink.Link, error) {
	h, err := netlinkAt(path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return h.LinkByIndex(index)
}

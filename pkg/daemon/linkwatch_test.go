package daemon

import (
	"errors"
	"github.com/epair-cni/epair/internal/eventually"
	"sync"
	"testing"
	"time"

	"github.com/epair-cni/epair/pkg/epair"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeSub is one subscription handed out by fakeNetlink.
type fakeSub struct {
	ch    chan<- netlink.LinkUpdate
	done  <-chan struct{}
	onErr func(error)
	end   sync.Once
}

// fail ends the subscription as netlink does on a receive error.
func (s *fakeSub) fail(err error) {
	s.onErr(err)
	s.end.Do(func() { close(s.ch) })
}

// fakeNetlink stands in for the kernel: links by index, and subscriptions
// that the test ends at will.
type fakeNetlink struct {
	mu    sync.Mutex
	links map[int]netlink.LinkAttrs
	fails int // how many of the next subscribe calls fail
	calls int
	subs  chan *fakeSub
}

func newFakeNetlink() *fakeNetlink {
	return &fakeNetlink{links: map[int]netlink.LinkAttrs{}, subs: make(chan *fakeSub, 8)}
}

func (f *fakeNetlink) set(index, mtu int, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links[index] = attrs(index, mtu, up)
}

func attrs(index, mtu int, up bool) netlink.LinkAttrs {
	a := netlink.LinkAttrs{Index: index, MTU: mtu}
	if up {
		a.RawFlags = unix.IFF_UP
	}
	return a
}

func (f *fakeNetlink) subscribe(_ string, ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fails > 0 {
		f.fails--
		return errors.New("netns busy")
	}
	s := &fakeSub{ch: ch, done: done, onErr: onErr}
	go func() { // as netlink: closing done ends the subscription
		<-done
		s.end.Do(func() { close(ch) })
	}()
	f.subs <- s
	return nil
}

func (f *fakeNetlink) link(_ string, index int) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.links[index]
	if !ok {
		return nil, netlink.LinkNotFoundError{}
	}
	return &netlink.Dummy{LinkAttrs: a}, nil
}

func (f *fakeNetlink) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeNetlink) watch() *linkWatch {
	lw := newLinkWatch()
	lw.subscribe, lw.link = f.subscribe, f.link
	lw.minDelay, lw.maxDelay = time.Millisecond, 4*time.Millisecond
	return lw
}

func testEnd(t *testing.T) *epair.End {
	t.Helper()
	c := epair.New(epair.Config{})
	t.Cleanup(c.Close)
	return c.NewPair(1500, discard{}, discard{}).A
}

type discard struct{}

func (discard) Deliver(int, []byte) error { return nil }

func nextSub(t *testing.T, f *fakeNetlink) *fakeSub {
	t.Helper()
	select {
	case s := <-f.subs:
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("no subscription after %d subscribe calls", f.callCount())
		return nil
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestLinkWatchRenewsDeadSubscription: when netlink ends the subscription
// (ENOBUFS), the watch subscribes again, retrying a failing subscribe, and
// reads the link changed in the gap; updates on the new subscription apply.
func TestLinkWatchRenewsDeadSubscription(t *testing.T) {
	f := newFakeNetlink()
	lw := f.watch()
	e := testEnd(t)
	f.set(7, 1500, true)
	if err := lw.add("/run/netns/pod", 7, e); err != nil {
		t.Fatal(err)
	}
	s1 := nextSub(t, f)
	if e.MTU() != 1500 || !e.Up() {
		t.Fatalf("after add: mtu %d up %v, want 1500 up", e.MTU(), e.Up())
	}
	s1.ch <- netlink.LinkUpdate{Link: &netlink.Dummy{LinkAttrs: attrs(7, 1450, true)}}
	eventually.True(t, "the update to MTU 1450", func() bool { return e.MTU() == 1450 })

	f.mu.Lock()
	f.fails = 2
	f.mu.Unlock()
	f.set(7, 1300, false) // while unsubscribed: no update will tell
	s1.fail(errors.New("Receive failed: no buffer space available"))
	eventually.True(t, "the dead subscription's socket closed", func() bool { return isClosed(s1.done) })

	s2 := nextSub(t, f)
	eventually.True(t, "the resync to MTU 1300, down", func() bool { return e.MTU() == 1300 && !e.Up() })
	if n := f.callCount(); n != 4 {
		t.Errorf("subscribe called %d times, want 4 (first, 2 failures, renewal)", n)
	}
	s2.ch <- netlink.LinkUpdate{Link: &netlink.Dummy{LinkAttrs: attrs(7, 1280, true)}}
	eventually.True(t, "the update on the renewed subscription", func() bool { return e.MTU() == 1280 && e.Up() })

	lw.close()
	if !isClosed(s2.done) {
		t.Error("close left the subscription open")
	}
	if n := f.callCount(); n != 4 {
		t.Errorf("subscribe called %d times after close, want 4", n)
	}
}

// TestLinkWatchCloseWhileRenewing: close returns while the watch is waiting
// to subscribe again, and it stops trying.
func TestLinkWatchCloseWhileRenewing(t *testing.T) {
	f := newFakeNetlink()
	lw := f.watch()
	lw.minDelay, lw.maxDelay = time.Millisecond, time.Hour
	f.set(3, 1500, true)
	if err := lw.add("", 3, testEnd(t)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.fails = 1 << 30
	f.mu.Unlock()
	nextSub(t, f).fail(errors.New("Receive failed: no buffer space available"))
	eventually.True(t, "a failed renewal", func() bool { return f.callCount() >= 3 })
	closed := make(chan struct{})
	go func() { lw.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("close hangs while the watch renews its subscription")
	}
	n := f.callCount()
	if n > 40 {
		t.Errorf("%d subscribe calls: the renewal does not back off", n)
	}
}

// TestLinkWatchRemoveLastStops: removing the last end stops the
// namespace's subscription for good.
func TestLinkWatchRemoveLastStops(t *testing.T) {
	f := newFakeNetlink()
	lw := f.watch()
	if err := lw.add("/run/netns/pod", 9, testEnd(t)); err != nil {
		t.Fatal(err)
	}
	s := nextSub(t, f)
	lw.remove("/run/netns/pod", 9)
	eventually.True(t, "the subscription closed", func() bool { return isClosed(s.done) })
	lw.close()
	if n := f.callCount(); n != 1 {
		t.Errorf("subscribe called %d times, want 1", n)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: 500 * time.Millisecond}
	var got []time.Duration
	for range 5 {
		got = append(got, b.next())
	}
	want := []time.Duration{100, 200, 400, 500, 500}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	b.reset()
	if d := b.next(); d != b.min {
		t.Errorf("after reset: %v, want %v", d, b.min)
	}
}

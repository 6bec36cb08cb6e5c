package daemon

import (
	"fmt"
	"github.com/epair-cni/epair/internal/eventually"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epair-cni/epair/internal/testns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestLinkWatchSurvivesENOBUFS floods link changes at a subscription with a
// tiny receive buffer until the kernel reports ENOBUFS (and netlink closes
// the subscription), then changes the followed link: the watch must still
// see it.
func TestLinkWatchSurvivesENOBUFS(t *testing.T) {
	n, h := testns.New(t)
	followed := addVeth(t, h, "f0")
	if err := h.LinkSetUp(followed); err != nil {
		t.Fatal(err)
	}
	var flood []netlink.Link
	for i := range 16 {
		flood = append(flood, addVeth(t, h, fmt.Sprintf("n%d", i)))
	}

	var overruns, subs atomic.Int32
	lw := newLinkWatch()
	lw.minDelay = 10 * time.Millisecond
	tiny := netlinkSubscribe(1) // the kernel makes it its minimum
	lw.subscribe = func(path string, ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
		subs.Add(1)
		return tiny(path, ch, done, func(err error) {
			// netlink formats the errno with %v: match its text
			if strings.Contains(err.Error(), unix.ENOBUFS.Error()) {
				overruns.Add(1)
			}
			onErr(err)
		})
	}
	t.Cleanup(lw.close)
	e := testEnd(t)
	if err := lw.add(n.Path(), followed.Attrs().Index, e); err != nil {
		t.Fatal(err)
	}
	if !e.Up() || e.MTU() != 1500 {
		t.Fatalf("after add: up %v mtu %d, want up 1500", e.Up(), e.MTU())
	}

	deadline := time.Now().Add(20 * time.Second)
	for i := 0; overruns.Load() == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no ENOBUFS after %d link changes", i)
		}
		if err := h.LinkSetMTU(flood[i%len(flood)], 1280+i%200); err != nil {
			t.Fatal(err)
		}
	}

	if err := h.LinkSetMTU(followed, 1400); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(followed); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "the followed link's MTU 1400 and down", func() bool { return e.MTU() == 1400 && !e.Up() })
	t.Logf("%d overruns, %d subscriptions", overruns.Load(), subs.Load())
}

// addVeth makes a veth pair name/name+"p" through h (dummy may not be built).
func addVeth(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: 1500}, PeerName: name + "p"})
	if err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

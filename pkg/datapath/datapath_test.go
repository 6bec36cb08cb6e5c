package datapath

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/epair-cni/epair/internal/eventually"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/tap/taptest"
)

// frame returns a virtio-net header (all zero: no offload) and a 60-byte
// Ethernet frame of an experimental ethertype carrying id, so that it is
// not IP and always takes queue 0.
func frame(id uint16) []byte {
	b := make([]byte, epair.VnetHdrLen+60)
	eth := b[epair.VnetHdrLen:]
	copy(eth[0:6], []byte{0x02, 0, 0, 0, 0, 0x0b})
	copy(eth[6:12], []byte{0x02, 0, 0, 0, 0, 0x0a})
	binary.BigEndian.PutUint16(eth[12:], 0x88b5)
	binary.BigEndian.PutUint16(eth[14:], id)
	return b
}

func frameID(b []byte) uint16 { return binary.BigEndian.Uint16(b[epair.VnetHdrLen+14:]) }

func start(t *testing.T, opts Options, queues int) (*Link, *taptest.Device, *taptest.Device) {
	t.Helper()
	core := epair.New(epair.Config{Queues: queues})
	a, b := taptest.NewDevice("eth0", queues), taptest.NewDevice("epair0b", queues)
	l := Start(core, 1500, a, b, opts)
	t.Cleanup(func() {
		l.Stop()
		core.Close()
	})
	return l, a, b
}

func recv(t *testing.T, q *taptest.Queue) []byte {
	t.Helper()
	b, ok := q.Recv(5 * time.Second)
	if !ok {
		t.Fatal("no frame delivered within 5s")
	}
	return b
}

// Frames the kernel sends out of one end come out of the other, in order,
// both ways, and are counted on both ends.
func TestForwardsBothWaysInOrder(t *testing.T) {
	for _, poll := range []bool{false, true} {
		l, a, b := start(t, Options{PeerPoll: poll}, 1)
		for i := range uint16(100) {
			a.Queues[0].Send(frame(i))
		}
		for i := range uint16(100) {
			if got := frameID(recv(t, b.Queues[0])); got != i {
				t.Fatalf("peer poll %v: frame %d arrived as number %d", poll, got, i)
			}
		}
		b.Queues[0].Send(frame(7))
		if got := frameID(recv(t, a.Queues[0])); got != 7 {
			t.Fatalf("b to a: got frame %d, want 7", got)
		}
		eventually.True(t, "counters of both ends", func() bool {
			sa, sb := l.Pair.A.Stats(), l.Pair.B.Stats()
			return sa.OPackets == 100 && sb.IPackets == 100 && sb.OPackets == 1 && sa.IPackets == 1
		})
	}
}

// A frame shorter than its virtio-net header is dropped and counted, and
// the next one still crosses.
func TestDropsRuntFrame(t *testing.T) {
	l, a, b := start(t, Options{}, 1)
	a.Queues[0].Send([]byte{1, 2, 3})
	a.Queues[0].Send(frame(1))
	if got := frameID(recv(t, b.Queues[0])); got != 1 {
		t.Fatalf("got frame %d, want 1", got)
	}
	if s := l.Pair.A.Stats(); s.OErrors != 1 || s.OPackets != 1 {
		t.Fatalf("a end: oerrors %d opackets %d, want 1 and 1", s.OErrors, s.OPackets)
	}
}

// With anti-spoofing on the a end, a frame from another MAC is dropped and
// counted by reason.
func TestAntiSpoofingDrops(t *testing.T) {
	mac := []byte{0x02, 0, 0, 0, 0, 0x99}
	l, a, b := start(t, Options{AFilter: epair.NewSpoofFilter(mac, nil)}, 1)
	a.Queues[0].Send(frame(1))
	if _, ok := b.Queues[0].Recv(50 * time.Millisecond); ok {
		t.Fatal("a frame from a MAC the filter does not allow crossed")
	}
	eventually.True(t, "the drop counted", func() bool {
		s := l.Pair.A.Stats()
		return s.Spoofed() == 1 && s.OPackets == 0
	})
}

// Stop closes both devices, and every reader has returned when it does: a
// frame sent afterwards goes nowhere.
func TestStopClosesDevices(t *testing.T) {
	l, a, b := start(t, Options{PeerPoll: true}, 2)
	l.Stop()
	if !a.Closed() || !b.Closed() {
		t.Fatalf("closed: a %v b %v, want both", a.Closed(), b.Closed())
	}
	if _, err := a.Queues[0].WriteFrame(frame(1)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("write after Stop: %v, want os.ErrClosed", err)
	}
	if l.Pair.A.Running() || l.Pair.B.Running() {
		t.Fatal("an end still running after Stop")
	}
	l.Stop() // twice is fine
}

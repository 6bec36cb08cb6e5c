// Package datapath binds a pair of the epair queue core to two TAP devices:
// one reader per TAP queue transmits what the kernel sends out of an end, and
// each end's sink writes what the core delivers into that end's TAP.
package datapath

import (
	"errors"
	"log/slog"
	"os"
	"sync"

	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/tap"
)

// Link is a running pair: the core's Pair between two TAPs.
type Link struct {
	Pair *epair.Pair
	A, B *tap.Device
	wg   sync.WaitGroup
	once sync.Once
}

// tapSink writes delivered frames into a TAP: the kernel then receives them
// on that interface. Queue q of the core maps to TAP queue q, so a flow keeps
// one queue end to end.
type tapSink struct{ dev *tap.Device }

func (s tapSink) Deliver(q int, data []byte) error {
	qs := s.dev.Queues
	_, err := qs[q%len(qs)].WriteFrame(data)
	return err
}

// Start joins a and b through core and starts forwarding. Both ends start
// up and running: the caller has brought both links up.
func Start(core *epair.Core, mtu int, a, b *tap.Device) *Link {
	l := &Link{A: a, B: b, Pair: core.NewPair(mtu, tapSink{a}, tapSink{b})}
	l.Pair.A.SetUp(true)
	l.Pair.B.SetUp(true)
	for _, q := range a.Queues {
		l.startReader(q, l.Pair.A, b)
	}
	for _, q := range b.Queues {
		l.startReader(q, l.Pair.B, a)
	}
	return l
}

func (l *Link) startReader(q *tap.Queue, end *epair.End, peer *tap.Device) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if !read(q, end) {
			// This end's device is gone: the cable is cut, so the
			// peer loses its carrier, as a real NIC would.
			end.SetRunning(false)
			if err := peer.SetCarrier(false); err != nil {
				slog.Debug("peer carrier off", "peer", peer.Name, "err", err)
			}
		}
	}()
}

// read is the transmit side of one TAP queue: every frame the kernel sends
// out of the interface goes to the core. A frame buffer is taken from the
// pool only when a frame is ready, so an idle pair holds none. It returns
// false if the device failed, true if the queue was closed.
func read(q *tap.Queue, end *epair.End) bool {
	var f *epair.Frame
	get := func() []byte {
		f = epair.GetFrame()
		return f.Buf()
	}
	put := func([]byte) {
		f.Release()
		f = nil
	}
	for {
		_, n, err := q.ReadFrame(get, put)
		if errors.Is(err, tap.ErrTruncated) {
			continue // larger than any frame a TAP may carry: skip it
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return true
			}
			// The device went away under us (its namespace was
			// deleted, say): stop forwarding this end.
			slog.Warn("tap read failed, end stops forwarding", "err", err)
			return false
		}
		f.Data = f.Buf()[:n]
		end.Transmit(f) // the core owns f now; drops are counted there
		f = nil
	}
}

// Stop stops forwarding: both ends stop running, queued frames are dropped,
// the TAP descriptors are closed (persistent devices stay) and the readers
// have returned when Stop does.
func (l *Link) Stop() {
	l.once.Do(func() {
		l.Pair.Close()
		l.A.Close()
		l.B.Close()
		l.wg.Wait()
	})
}

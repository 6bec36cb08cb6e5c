// Package datapath binds a pair of the epair queue core to two TAP devices:
// one reader per TAP queue transmits what the kernel sends out of an end, and
// each end's sink writes what the core delivers into that end's TAP.
package datapath

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/tap"
)

// Options tune the datapath.
type Options struct {
	// PeerPoll makes the sink that just wrote a batch into a TAP read that
	// same TAP once without waiting: the kernel answers many frames (ARP,
	// ICMP, TCP ACKs) inside the write, so the answer crosses without a
	// reader wake-up.
	PeerPoll bool
	// BusyPoll keeps a reader polling its queue this long after its last
	// frame before it sleeps; 0 sleeps at once. It trades CPU while traffic
	// flows for fewer wake-ups; an idle pair never polls.
	BusyPoll time.Duration
	// AFilter, when not nil, is the a end's anti-spoofing filter, set
	// before the first frame is read.
	AFilter *epair.SpoofFilter
	// AShaper and BShaper, when not nil, pace the frames delivered to the a
	// end (the pod's ingress) and to the b end (its egress).
	AShaper, BShaper *epair.Shaper
}

// Link is a running pair: the core's Pair between two TAPs.
type Link struct {
	Pair   *epair.Pair
	A, B   tap.Endpoint
	wg     sync.WaitGroup
	once   sync.Once
	aPorts []*port
	bPorts []*port
}

// port is one TAP queue of one end. Its mutex is held while frames are read
// and transmitted, by the queue's reader or by a peer poll, so the frames of
// a queue enter the core in the order the kernel queued them.
type port struct {
	q    tap.FrameQueue
	end  *epair.End
	busy time.Duration
	// fit moves each frame into a buffer of its size before it is queued
	// (the core bounds queues in bytes): small frames are copied out of
	// the 64 KiB read buffer, which is kept for the next read.
	fit bool
	// mu is held while reading and transmitting; it also keeps Stop from
	// closing the descriptor under a read (stopped is set under it).
	mu      sync.Mutex
	stopped bool
	// want is set when a batch was just written into this queue's TAP:
	// the kernel may have answered. peers are the other end's ports,
	// looked at once this port's reader has emptied its own queue.
	want  atomic.Bool
	peers []*port
}

// drain reads and transmits until the queue is empty. The caller holds mu.
// A 64 KiB buffer is taken from the pool for the burst and given back once
// the queue turns out empty, so an idle queue holds none.
func (p *port) drain() (int, error) {
	if p.stopped {
		return 0, os.ErrClosed
	}
	buf := epair.GetFrame()
	for n := 0; ; {
		size, err := p.q.TryRead(buf.Buf())
		if err != nil || size == 0 {
			if errors.Is(err, tap.ErrTruncated) {
				continue // larger than any frame a TAP may carry
			}
			buf.Release()
			if err == nil {
				p.pollPeers()
			}
			return n, err
		}
		f := buf
		if p.fit {
			f = buf.Fit(size)
		} else {
			f.Data = f.Buf()[:size]
		}
		if f == buf {
			buf = epair.GetFrame()
		}
		p.end.Transmit(f) // the core owns the frame now
		n++
	}
}

// pollPeers reads the answers waiting on the TAPs this port's frames were
// just written into, once per burst rather than once per frame: a read that
// finds nothing costs a syscall, which a stream of small frames feels.
func (p *port) pollPeers() {
	for _, o := range p.peers {
		if o.want.Swap(false) {
			o.poll()
		}
	}
}

// poll drains the queue if nobody else is reading it right now.
func (p *port) poll() {
	if p.mu.TryLock() {
		p.drain()
		p.mu.Unlock()
	}
}

// stop makes every later drain fail with os.ErrClosed.
func (p *port) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
}

// tapSink writes delivered frames into a TAP: the kernel then receives them
// on that interface. Queue q of the core maps to TAP queue q, so a flow keeps
// one queue end to end.
type tapSink struct {
	qs []tap.FrameQueue
	// ports are the ports of the same TAP, by queue number, for Flushed
	// to mark; nil without peer poll. Start sets them once they exist.
	ports []*port
}

func (s *tapSink) Deliver(q int, data []byte) error {
	_, err := s.qs[q%len(s.qs)].WriteFrame(data)
	return err
}

// Flushed marks the TAP just written to for a peer poll (see
// Options.PeerPoll), which the reader that sent the batch does once its own
// queue is empty.
func (s *tapSink) Flushed(q int) {
	if s.ports != nil {
		s.ports[q%len(s.ports)].want.Store(true)
	}
}

// Start joins a and b through core and starts forwarding. Both ends start
// up and running: the caller has brought both links up.
func Start(core *epair.Core, mtu int, a, b tap.Endpoint, opts Options) *Link {
	l := &Link{A: a, B: b}
	aqs, bqs := a.FrameQueues(), b.FrameQueues()
	sa, sb := &tapSink{qs: aqs}, &tapSink{qs: bqs}
	l.Pair = core.NewPair(mtu, sa, sb)
	l.Pair.A.SetUp(true)
	l.Pair.B.SetUp(true)
	l.Pair.A.SetSpoofFilter(opts.AFilter)
	l.Pair.A.SetShaper(opts.AShaper)
	l.Pair.B.SetShaper(opts.BShaper)
	for _, q := range aqs {
		l.aPorts = append(l.aPorts, &port{q: q, end: l.Pair.A, busy: opts.BusyPoll, fit: core.FitsFrames()})
	}
	for _, q := range bqs {
		l.bPorts = append(l.bPorts, &port{q: q, end: l.Pair.B, busy: opts.BusyPoll, fit: core.FitsFrames()})
	}
	if opts.PeerPoll { // before the first reader starts
		sa.ports, sb.ports = l.aPorts, l.bPorts
	}
	for _, p := range l.aPorts {
		p.peers = l.bPorts
	}
	for _, p := range l.bPorts {
		p.peers = l.aPorts
	}
	for _, p := range l.aPorts {
		l.startReader(p, b)
	}
	for _, p := range l.bPorts {
		l.startReader(p, a)
	}
	return l
}

func (l *Link) startReader(p *port, peer tap.Endpoint) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		err := p.read()
		if errors.Is(err, os.ErrClosed) {
			return
		}
		// The device went away under us (deleted by hand, say): the
		// cable is cut, so this end stops and the peer loses its
		// carrier, as a real NIC would.
		slog.Warn("tap read failed, end stops forwarding", "err", err)
		p.end.SetRunning(false)
		if err := peer.SetCarrier(false); err != nil {
			slog.Debug("peer carrier off", "peer", peer.String(), "err", err)
		}
	}()
}

// read is the transmit side of one TAP queue: every frame the kernel sends
// out of the interface goes to the core. It sleeps in the poller without a
// buffer, so an idle pair holds none and costs no CPU.
func (p *port) read() error {
	for {
		if err := p.q.Wait(); err != nil {
			return err
		}
		p.mu.Lock()
		err := p.drainAndSpin()
		p.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// drainAndSpin drains the queue, then with busy polling keeps draining until
// BusyPoll has passed without a frame.
func (p *port) drainAndSpin() error {
	if _, err := p.drain(); err != nil || p.busy <= 0 {
		return err
	}
	deadline := time.Now().Add(p.busy)
	for time.Now().Before(deadline) {
		n, err := p.drain()
		if err != nil {
			return err
		}
		if n > 0 {
			deadline = time.Now().Add(p.busy)
		}
	}
	return nil
}

// Stop stops forwarding: both ends stop running, queued frames are dropped,
// the TAP descriptors are closed (persistent devices stay) and the readers
// have returned when Stop does.
func (l *Link) Stop() {
	l.once.Do(func() {
		l.Pair.Close()
		for _, p := range append(l.aPorts, l.bPorts...) {
			p.stop()
		}
		l.A.Close()
		l.B.Close()
		l.wg.Wait()
	})
}

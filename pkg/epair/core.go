package epair

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// DefaultQueueLen is if_epair's RXRSIZE: the bound of each receive queue.
const DefaultQueueLen = 4096

// DefaultQueueBytes bounds the buffer bytes one receive queue holds: 4096
// frames of MTU 1500 (2 KiB buffers, as if_epair's mbuf clusters), or 128
// GSO super-frames.
const DefaultQueueBytes = 8 << 20

// DefaultMaxQueuedBytes bounds the buffer bytes all queues of the daemon
// hold together, far below the DaemonSet's memory limit (512 MiB): a flood
// into stalled queues cannot get the daemon, and every pod with it, killed.
const DefaultMaxQueuedBytes = 64 << 20

// FrameSize is the capacity of a pooled frame buffer: a virtio-net header
// and the largest GSO super-frame a TAP hands over, with an 802.1Q header.
const FrameSize = VnetHdrLen + 65535 + EtherVLANHdrLen

// Errors returned by End.Transmit, as epair_transmit's return values.
var (
	// ErrTooBig is E2BIG: the frame exceeds the sender's MTU + 18.
	ErrTooBig = errors.New("frame longer than MTU + Ethernet/VLAN header")
	// ErrNotRunning is ENXIO: the sending End is not running.
	ErrNotRunning = errors.New("interface not running")
	// ErrDown is ENETDOWN: the sending End is not up.
	ErrDown = errors.New("interface down")
	// ErrShort means the buffer does not even hold a virtio-net header.
	ErrShort = errors.New("frame shorter than its virtio-net header")
)

// Policy chooses who runs a queue's flush once it has been woken.
type Policy int

const (
	// Direct lets the goroutine that wakes an IDLE queue run the first flush
	// itself. Measured here, a goroutine handoff per frame cut the TCP
	// request/response rate to 0.24x of a veth, so this is the default.
	Direct Policy = iota
	// Deferred always hands the flush to the worker of the queue id, as
	// if_epair's taskqueues do.
	Deferred
)

// String returns the policy's configuration name.
func (p Policy) String() string {
	if p == Deferred {
		return "deferred"
	}
	return "direct"
}

// ParsePolicy parses "direct" or "deferred".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "", "direct":
		return Direct, nil
	case "deferred":
		return Deferred, nil
	}
	return 0, fmt.Errorf("unknown dispatch policy %q: want direct or deferred", s)
}

// Config sets up a Core.
type Config struct {
	// Queues is the number of queue ids (and workers); 0 means 1.
	Queues int
	// QueueLen bounds every queue; 0 means DefaultQueueLen.
	QueueLen int
	// QueueBytes bounds the buffer bytes of every queue; 0 means
	// DefaultQueueBytes, negative means no byte bound at all (frames then
	// keep the 64 KiB buffer they were read into, as before).
	QueueBytes int
	// MaxQueuedBytes bounds the buffer bytes of all queues together; 0
	// means DefaultMaxQueuedBytes. An empty queue may always take one
	// frame, so a pair whose queue drains keeps forwarding however full
	// the others are.
	MaxQueuedBytes int64
	// Policy is the dispatch policy.
	Policy Policy
}

// Sink receives the frames delivered to an End: in the daemon it writes them
// to the End's TAP, which makes the kernel receive them.
type Sink interface {
	// Deliver hands over one frame (virtio-net header + Ethernet frame)
	// taken from receive queue id queue. data is only valid during the call.
	Deliver(queue int, data []byte) error
}

// Flusher is a Sink that wants to know when a flush has delivered its
// batch: the datapath uses it to look at once for the answer the kernel may
// already have queued on the receiving TAP.
type Flusher interface {
	Flushed(queue int)
}

// Core owns the workers shared by every pair, one per queue id, so that idle
// pairs cost nothing and the cost does not grow with the number of pairs.
type Core struct {
	cfg     Config
	queued  atomic.Int64 // buffer bytes in all queues
	workers []*worker
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// New starts a Core with one worker per queue id.
func New(cfg Config) *Core {
	if cfg.Queues <= 0 {
		cfg.Queues = 1
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	switch {
	case cfg.QueueBytes == 0:
		cfg.QueueBytes = DefaultQueueBytes
	case cfg.QueueBytes < 0:
		cfg.QueueBytes = 0
	}
	if cfg.MaxQueuedBytes <= 0 {
		cfg.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	c := &Core{cfg: cfg, done: make(chan struct{})}
	for i := 0; i < cfg.Queues; i++ {
		w := &worker{wake: make(chan struct{}, 1)}
		c.workers = append(c.workers, w)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			w.run(c.done)
		}()
	}
	return c
}

// Config returns the configuration in force. QueueBytes is 0 when there is
// no byte bound.
func (c *Core) Config() Config { return c.cfg }

// QueuedBytes returns the buffer bytes all queues hold now.
func (c *Core) QueuedBytes() int64 { return c.queued.Load() }

// FitsFrames reports whether frames should be moved into buffers of their
// size before they are queued (Frame.Fit): when queues are bounded in bytes.
func (c *Core) FitsFrames() bool { return c.cfg.QueueBytes > 0 }

// Close stops the workers. Pairs must not transmit afterwards.
func (c *Core) Close() {
	c.once.Do(func() { close(c.done) })
	c.wg.Wait()
}

// Pair is two Ends joined by the virtual crossover cable.
type Pair struct {
	A, B *End
}

// End is one interface of a pair.
type End struct {
	core   *Core
	peer   *End
	sink   Sink
	after  Flusher // sink as a Flusher, or nil
	mtu    atomic.Int32
	up     atomic.Bool
	run    atomic.Bool
	queues []queue
	spoof  atomic.Pointer[SpoofFilter] // nil: anti-spoofing off
	shaper atomic.Pointer[Shaper]      // nil: unshaped
	// captures is the pair's captures (capture.go), nil when none: the
	// one atomic load per frame a capture costs while nobody listens.
	captures atomic.Pointer[captureSet]
	c        counters
}

// NewPair joins two sinks with a cable. Both Ends start running (as after
// epair_clone_create) but not up: the caller reports the kernel's IFF_UP
// with SetUp.
func (c *Core) NewPair(mtu int, a, b Sink) *Pair {
	ea, eb := c.newEnd(mtu, a), c.newEnd(mtu, b)
	ea.peer, eb.peer = eb, ea
	return &Pair{A: ea, B: eb}
}

func (c *Core) newEnd(mtu int, s Sink) *End {
	e := &End{core: c, sink: s, queues: make([]queue, c.cfg.Queues)}
	e.after, _ = s.(Flusher)
	for i := range e.queues {
		e.queues[i] = queue{id: i, end: e, limit: c.cfg.QueueLen, byteLimit: c.cfg.QueueBytes}
	}
	e.mtu.Store(int32(mtu))
	e.run.Store(true)
	return e
}

// Close is epair_clone_destroy's part of the core: both Ends stop running,
// so nothing more is queued, and the queued frames are dropped.
func (p *Pair) Close() {
	p.A.SetRunning(false)
	p.B.SetRunning(false)
	p.A.drain()
	p.B.drain()
	p.A.closeCaptures() // capture hook: a capture of a deleted pair ends
}

// SetUp records whether the interface is administratively up (IFF_UP).
func (e *End) SetUp(up bool) { e.up.Store(up) }

// SetRunning records whether the interface is running (IFF_DRV_RUNNING):
// its TAP is attached and forwarding.
func (e *End) SetRunning(r bool) { e.run.Store(r) }

// SetMTU sets the MTU the MTU rule checks frames sent by this End against
// (and so the largest frame a shaped peer's queue must take).
func (e *End) SetMTU(mtu int) {
	e.mtu.Store(int32(mtu))
	if e.peer != nil && e.peer.shaper.Load() != nil {
		e.peer.setWireLimits()
	}
}

// SetSpoofFilter turns anti-spoofing on for the frames this End sends
// (with f) or off (nil). The daemon sets it on the a end, the pod's.
func (e *End) SetSpoofFilter(f *SpoofFilter) { e.spoof.Store(f) }

// SpoofFilter returns the End's anti-spoofing filter, nil when off.
func (e *End) SpoofFilter() *SpoofFilter { return e.spoof.Load() }

// MTU returns the End's MTU.
func (e *End) MTU() int { return int(e.mtu.Load()) }

// Up reports IFF_UP as last set.
func (e *End) Up() bool { return e.up.Load() }

// Running reports IFF_DRV_RUNNING as last set.
func (e *End) Running() bool { return e.run.Load() }

// Stats returns a snapshot of the End's counters.
func (e *End) Stats() Stats { return e.c.snapshot() }

// QueueLen returns how many frames wait in the End's receive queues.
func (e *End) QueueLen() int {
	n := 0
	for i := range e.queues {
		q := &e.queues[i]
		q.mu.Lock()
		n += len(q.frames)
		q.mu.Unlock()
	}
	return n
}

func (e *End) drain() {
	for i := range e.queues {
		q := &e.queues[i]
		q.mu.Lock()
		frames := q.frames
		q.frames = nil
		// A queue waiting for tokens has nothing left to wait for.
		if q.timer != nil && q.timer.Stop() {
			q.state = idle
		}
		if q.bytes > 0 {
			q.end.core.queued.Add(int64(-q.bytes))
			q.bytes = 0
		}
		q.wire = 0
		q.mu.Unlock()
		for _, f := range frames {
			f.Release()
		}
	}
}

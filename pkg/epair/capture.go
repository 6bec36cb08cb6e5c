package epair

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Capture limits. MaxSnaplen is tcpdump's default snapshot length, more
// than the largest GSO super-frame a TAP hands over.
const (
	MaxSnaplen        = 262144
	DefaultCaptureBuf = 4 << 20
	MinCaptureBuf     = 64 << 10
	MaxCaptureBuf     = 1 << 30
)

// ErrCaptureConfig marks a CaptureConfig out of range.
var ErrCaptureConfig = errors.New("bad capture config")

// Direction says which way a captured frame crossed the captured End, as
// tcpdump's in/out on an interface.
type Direction uint8

const (
	// Out: the End sent the frame (its TAP handed it to the core).
	Out Direction = iota
	// In: the frame was delivered to the End (written into its TAP), or,
	// for a drop, was on its way there.
	In
)

// String returns "out" or "in".
func (d Direction) String() string {
	if d == In {
		return "in"
	}
	return "out"
}

// CaptureConfig sets up a Capture.
type CaptureConfig struct {
	// Snaplen is how many bytes of each Ethernet frame are kept; 0 means
	// MaxSnaplen.
	Snaplen int
	// BufferBytes bounds the bytes of the frames waiting for the reader;
	// 0 means DefaultCaptureBuf. A frame that does not fit is lost and
	// counted, never waited for.
	BufferBytes int
	// Drops also captures the frames the core drops, with their reason.
	Drops bool
}

// Validate checks the config, with 0 meaning a default.
func (c CaptureConfig) Validate() error {
	if c.Snaplen < 0 || c.Snaplen > MaxSnaplen {
		return fmt.Errorf("%w: snaplen %d out of 1..%d", ErrCaptureConfig, c.Snaplen, MaxSnaplen)
	}
	if c.BufferBytes != 0 && (c.BufferBytes < MinCaptureBuf || c.BufferBytes > MaxCaptureBuf) {
		return fmt.Errorf("%w: buffer %d bytes out of %d..%d", ErrCaptureConfig, c.BufferBytes, MinCaptureBuf, MaxCaptureBuf)
	}
	return nil
}

// Packet is one captured frame. Data is valid until Release.
type Packet struct {
	Time time.Time
	Dir  Direction
	// Length is the frame's length (Ethernet, without the virtio-net
	// header; a GSO super-frame's whole length), Data its first Snaplen
	// bytes.
	Length int
	Data   []byte
	// Dropped is set for a frame the core dropped, Reason says why.
	Dropped bool
	Reason  DropReason
	f       *Frame
}

// Release gives the packet's buffer back to the core's pools.
func (p *Packet) Release() {
	if p.f != nil {
		p.f.Release()
		p.f, p.Data = nil, nil
	}
}

// Capture receives copies of the frames crossing one End, both ways, like
// tcpdump on one end of a veth. It has its own bounded buffer: the
// datapath never waits for its reader, it loses frames and counts them.
type Capture struct {
	end *End
	cfg CaptureConfig
	// mu guards buf, held by the frame path for an append and by the
	// reader for a swap, never longer.
	mu    sync.Mutex
	buf   []Packet
	spare []Packet
	// bytes is the buffer bytes of the packets in buf, reserved before
	// the copy: a frame that will not fit costs no copy.
	bytes atomic.Int64
	// wake tells a waiting reader there are packets: a send that finds
	// it full costs nothing, so the frame path wakes the reader once per
	// batch, not per frame.
	wake    chan struct{}
	lost    atomic.Uint64
	read    atomic.Uint64
	done    chan struct{}
	closeMu sync.Once
}

// batchDelay is how long a woken reader lets packets gather before it
// takes them, as libpcap's buffer timeout: one wake-up per batch, not per
// frame, however fast frames come.
const batchDelay = time.Millisecond

// captureSet is what an End's hook loads: every capture of its pair. A
// frame crossing the pair crosses both ends, so both ends hold the same
// set; it is replaced, never changed, when a capture comes or goes.
type captureSet struct{ list []*Capture }

// captureMu serialises changes of the sets; frames never take it.
var captureMu sync.Mutex

// Capture starts a capture of e. Close it when done.
func (e *End) Capture(cfg CaptureConfig) (*Capture, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Snaplen == 0 {
		cfg.Snaplen = MaxSnaplen
	}
	if cfg.BufferBytes == 0 {
		cfg.BufferBytes = DefaultCaptureBuf
	}
	c := &Capture{end: e, cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{})}
	captureMu.Lock()
	defer captureMu.Unlock()
	if !e.Running() {
		return nil, fmt.Errorf("capture: %w", ErrNotRunning)
	}
	e.setCaptures(append(e.captureList(), c))
	return c, nil
}

func (e *End) captureList() []*Capture {
	if s := e.captures.Load(); s != nil {
		return append([]*Capture(nil), s.list...)
	}
	return nil
}

// setCaptures stores list in both ends; an empty list stores nil, so the
// hook costs one nil check again. Called with captureMu held.
func (e *End) setCaptures(list []*Capture) {
	var s *captureSet
	if len(list) > 0 {
		s = &captureSet{list: list}
	}
	e.captures.Store(s)
	e.peer.captures.Store(s)
}

// closeCaptures ends every capture of e's pair: the pair is gone.
func (e *End) closeCaptures() {
	for _, c := range e.captureList() {
		c.Close()
	}
}

// Close detaches the capture. Packets already buffered can still be read;
// then Read returns ErrCaptureClosed.
func (c *Capture) Close() {
	c.closeMu.Do(func() {
		captureMu.Lock()
		list := c.end.captureList()
		for i, o := range list {
			if o == c {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		c.end.setCaptures(list)
		captureMu.Unlock()
		close(c.done)
	})
}

// ErrCaptureClosed is what Read returns once a closed capture is empty.
var ErrCaptureClosed = errors.New("capture closed")

// Read waits for packets and appends those buffered by then to dst, so a
// reader writes them out as one batch. It fails with ErrCaptureClosed once
// the capture is closed (by Close or because the pair was deleted) and
// empty, or with ctx's error.
func (c *Capture) Read(ctx context.Context, dst []Packet) ([]Packet, error) {
	select {
	case <-c.wake:
		select {
		case <-time.After(batchDelay):
		case <-c.done:
		}
	case <-c.done:
	case <-ctx.Done():
		return dst, ctx.Err()
	}
	c.mu.Lock()
	batch := c.buf
	c.buf, c.spare = c.spare[:0], nil
	c.mu.Unlock()
	if len(batch) == 0 {
		select {
		case <-c.done:
			return dst, ErrCaptureClosed
		default:
			return dst, nil // woken for packets an earlier Read took
		}
	}
	var taken int64
	for i := range batch {
		taken += int64(batch[i].f.Cap())
	}
	c.bytes.Add(-taken)
	dst = append(dst, batch...)
	clear(batch)
	c.mu.Lock()
	if c.spare == nil {
		c.spare = batch[:0]
	}
	c.mu.Unlock()
	c.read.Add(uint64(len(batch)))
	return dst, nil
}

// Done is closed when the capture is.
func (c *Capture) Done() <-chan struct{} { return c.done }

// Lost returns the frames the capture could not keep: its buffer was full.
func (c *Capture) Lost() uint64 { return c.lost.Load() }

// Captured returns the packets Read has handed over.
func (c *Capture) Captured() uint64 { return c.read.Load() }

// Snaplen returns the snapshot length in force.
func (c *Capture) Snaplen() int { return c.cfg.Snaplen }

// offer copies a frame into the capture's buffer, or counts it lost. It
// never blocks: the frame path calls it.
func (c *Capture) offer(data []byte, dir Direction, dropped bool, r DropReason) {
	if dropped && !c.cfg.Drops {
		return
	}
	if len(data) <= VnetHdrLen {
		return // not even an Ethernet header to show
	}
	eth := data[VnetHdrLen:]
	n := min(len(eth), c.cfg.Snaplen)
	class := classFor(n)
	if c.bytes.Add(int64(class.size)) > int64(c.cfg.BufferBytes) {
		c.bytes.Add(int64(-class.size))
		c.lost.Add(1)
		return
	}
	f := class.get()
	f.Data = f.buf[:copy(f.buf, eth[:n])]
	p := Packet{Time: time.Now(), Dir: dir, Length: len(eth), Data: f.Data, Dropped: dropped, Reason: r, f: f}
	c.mu.Lock()
	c.buf = append(c.buf, p)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// classFor returns the smallest frame buffer class that holds n bytes.
func classFor(n int) *sizeClass {
	for _, c := range sizeClasses {
		if n <= c.size {
			return c
		}
	}
	return largest
}

// delivered hands a frame delivered to end to — and so sent by its peer —
// to every capture: In for to's captures, Out for its peer's.
func (s *captureSet) delivered(to *End, data []byte) {
	for _, c := range s.list {
		d := Out
		if c.end == to {
			d = In
		}
		c.offer(data, d, false, 0)
	}
}

// dropped hands a frame from dropped by the core, with its reason, to
// every capture that wants drops.
func (s *captureSet) dropped(from *End, data []byte, r DropReason) {
	for _, c := range s.list {
		d := In
		if c.end == from {
			d = Out
		}
		c.offer(data, d, true, r)
	}
}

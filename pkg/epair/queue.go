package epair

import "sync"

// qstate is if_epair's EPAIR_QUEUE_* state.
type qstate int

const (
	idle    qstate = iota // empty, no flush scheduled
	waking                // a flush is scheduled but has not started
	running               // a flush is delivering frames
)

// queue is one bounded receive queue of an End (if_epair's epair_queue).
type queue struct {
	mu     sync.Mutex
	state  qstate
	frames []*Frame
	// bytes is what the queued frames' buffers hold (Frame.Cap), bounded
	// by byteLimit and counted in the core's total.
	bytes int
	// spare is the slice the last flush emptied, reused so that a flush
	// allocates nothing. Only the (single) running flush touches it.
	spare     []*Frame
	id        int
	limit     int
	byteLimit int // 0: no byte bound
	end       *End
	// wire is the frame bytes (virtio-net headers not counted) queued in a
	// shaped queue, bounded by wireLimit (Shaper.QueueBytes); both are 0
	// while unshaped.
	wire, wireLimit int
	// timer re-flushes a shaped queue once its head frame's tokens are
	// there; made on first use, armed only while the queue is WAKING.
	timer timer
}

// worker runs the flushes scheduled for one queue id, like one of
// if_epair's per-CPU taskqueues.
type worker struct {
	mu      sync.Mutex
	pending []*queue
	spare   []*queue
	wake    chan struct{}
}

// schedule is taskqueue_enqueue. The queue state machine guarantees a queue
// is pending at most once.
func (w *worker) schedule(q *queue) {
	w.mu.Lock()
	w.pending = append(w.pending, q)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) run(done <-chan struct{}) {
	for {
		select {
		case <-w.wake:
		case <-done:
			return
		}
		for w.runPending() {
		}
	}
}

// runPending flushes every queue pending now, once each, and reports whether
// there were any.
func (w *worker) runPending() bool {
	w.mu.Lock()
	batch := w.pending
	w.pending, w.spare = w.spare[:0], nil
	w.mu.Unlock()
	for i, q := range batch {
		q.flush()
		batch[i] = nil
	}
	w.mu.Lock()
	w.spare = batch[:0]
	w.mu.Unlock()
	return len(batch) > 0
}

// Frame is one frame crossing the core: Data holds a virtio-net header of
// VnetHdrLen bytes followed by the Ethernet frame. Frames come from pools,
// one per buffer size class, so the hot path allocates nothing per frame.
type Frame struct {
	Data  []byte
	buf   []byte
	class *sizeClass
}

// sizeClass is a pool of frame buffers of one size. A frame kept in a queue
// holds a buffer of the smallest class it fits, so the bytes a queue holds
// follow the bytes of its frames: a flood of 64-byte frames pins 256 bytes a
// frame (about an mbuf, as in if_epair), not a 64 KiB buffer each.
type sizeClass struct {
	size int
	pool sync.Pool
}

// sizeClasses, smallest first: small frames (ARP, ACKs, a 64-byte UDP
// flood), one frame of MTU 1500, one of MTU 9000, and the largest GSO
// super-frame a TAP hands over (FrameSize).
var sizeClasses = func() []*sizeClass {
	var cs []*sizeClass
	for _, size := range []int{256, 2048, 9216 + VnetHdrLen + EtherVLANHdrLen, FrameSize} {
		c := &sizeClass{size: size}
		c.pool.New = func() any {
			b := make([]byte, c.size)
			return &Frame{buf: b, Data: b, class: c}
		}
		cs = append(cs, c)
	}
	return cs
}()

var largest = sizeClasses[len(sizeClasses)-1]

func (c *sizeClass) get() *Frame {
	f := c.pool.Get().(*Frame)
	f.Data = f.buf
	return f
}

// GetFrame returns a pooled frame whose Data spans a whole buffer of
// FrameSize bytes: big enough for any frame a TAP reads.
func GetFrame() *Frame { return largest.get() }

// Buf returns the frame's whole buffer, to read a frame into.
func (f *Frame) Buf() []byte { return f.buf }

// Cap returns the size of the frame's buffer: what it costs a queue to keep.
func (f *Frame) Cap() int { return len(f.buf) }

// Release returns the frame to its pool.
func (f *Frame) Release() { f.class.pool.Put(f) }

// Fit returns a frame holding the first n bytes of f's buffer in the
// smallest buffer they fit. When that is f's own size, f itself is returned
// (no copy) and the caller no longer owns f; otherwise the bytes are copied
// into a smaller pooled frame and f stays the caller's, to read the next
// frame into. Data of the result is the n bytes.
func (f *Frame) Fit(n int) *Frame {
	for _, c := range sizeClasses {
		if n > c.size {
			continue
		}
		if c == f.class {
			break
		}
		g := c.get()
		g.Data = g.buf[:copy(g.buf, f.buf[:n])]
		return g
	}
	f.Data = f.buf[:n]
	return f
}

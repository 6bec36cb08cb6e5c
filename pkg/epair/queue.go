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
	// spare is the slice the last flush emptied, reused so that a flush
	// allocates nothing. Only the (single) running flush touches it.
	spare []*Frame
	id    int
	limit int
	end   *End
}

// flush is epair_tx_start_deferred: deliver everything queued at this moment,
// then, if more arrived meanwhile, schedule one more pass on the shared worker
// rather than loop here, so one busy queue cannot starve the others.
func (q *queue) flush() {
	q.mu.Lock()
	batch := q.frames
	q.frames, q.spare = q.spare[:0], nil
	q.state = running
	q.mu.Unlock()

	e := q.end
	for i, f := range batch {
		if err := e.sink.Deliver(q.id, f.Data); err != nil {
			e.c.ierrors.Add(1)
		}
		f.Release()
		batch[i] = nil
	}
	if e.after != nil {
		e.after.Flushed(q.id)
	}

	q.mu.Lock()
	if q.spare == nil {
		q.spare = batch[:0]
	}
	resched := len(q.frames) > 0
	if resched {
		q.state = waking
	} else {
		q.state = idle
	}
	q.mu.Unlock()

	if resched {
		e.core.schedule(q)
	}
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
// VnetHdrLen bytes followed by the Ethernet frame. Frames come from a pool so
// the hot path allocates nothing per frame.
type Frame struct {
	Data []byte
	buf  []byte
}

var framePool = sync.Pool{New: func() any {
	b := make([]byte, FrameSize)
	return &Frame{buf: b, Data: b}
}}

// GetFrame returns a pooled frame whose Data spans the whole buffer of
// FrameSize bytes.
func GetFrame() *Frame {
	f := framePool.Get().(*Frame)
	f.Data = f.buf
	return f
}

// Buf returns the frame's whole buffer, to read a frame into.
func (f *Frame) Buf() []byte { return f.buf }

// Release returns the frame to the pool.
func (f *Frame) Release() { framePool.Put(f) }

package epair

import "time"

// The frame path, in the order a frame takes it. Every step is a function
// of this file except where it says otherwise (the TAP side is in
// pkg/datapath/datapath.go; the frames and pools in queue.go).
//
//  1. read (datapath: port.read): a reader parks in the TAP queue's Wait
//     without a buffer, then port.drain takes one 64 KiB frame from the
//     pool and reads with TryRead until the queue is empty (port.drainAndSpin
//     keeps at it for --busy-poll). A small frame is copied into a buffer of
//     its size (Frame.Fit) when queues are bounded in bytes.
//  2. Transmit (below): the sender's rules, in if_epair's order:
//     a. check: virtio-net header present, MTU + 18 (a GSO super-frame's
//        segments), sender running and up; else drop, OErrors, an error;
//     b. the peer running and up; else drop, OErrors, no error;
//     c. anti-spoofing: one atomic load of End.spoof when off; a frame the
//        SpoofFilter rejects is dropped, counted by reason (spoof.go).
//  3. menq (below): epair_menq. The flow hash picks the peer's queue;
//     under its lock the queue is woken if IDLE, and the frame is queued
//     unless that takes it over its frame, wire (shaped) or byte bounds
//     (overWire in shaper.go, overBytes below); a frame over them is
//     dropped (OQDrops). Counters: O* on the sender, I* on the peer.
//  4. dispatch (below): whoever woke the queue runs its first flush
//     (Direct) or hands it to the worker of its queue id (Deferred,
//     worker.run in queue.go).
//  5. flush (below): epair_tx_start_deferred. The batch is everything
//     queued now, or, for a shaped End, what the token bucket lets through
//     (takeShaped in shaper.go).
//  6. deliver: for each frame, capture (one atomic load; see capture.go),
//     then Sink.Deliver, which in the daemon is tapSink.Deliver: one
//     WriteFrame into the peer's TAP queue of the same number, where the
//     kernel receives it (IErrors if the write fails).
//  7. Flushed: a Sink that is a Flusher (the datapath's, with --peer-poll)
//     marks the TAP just written to, since the kernel often answers inside
//     the write (ARP, ICMP, TCP ACKs).
//  8. finish (below): IDLE if empty; else WAKING with the shaper's timer
//     armed, or one more pass scheduled on the worker, so one busy queue
//     cannot starve the others.
//  9. peer poll (datapath: port.pollPeers/poll): once its own queue is
//     empty, the reader of step 1 drains each marked peer TAP queue it can
//     lock, so the answer crosses without a reader wake-up: back to step 2
//     for the other End.
//
// A frame leaves the core undelivered only through drop (below), which
// counts it by reason at the sender: capture (one atomic load; see
// capture.go) sees it there too.

// Transmit sends f from e to its peer, as epair_transmit. The core owns f
// from here on: it is released once delivered or dropped. The rules, in
// if_epair's order: a frame longer than MTU + 18 (for a GSO super-frame, its
// segments) is dropped with OErrors and ErrTooBig; a sender not running or
// not up drops with OErrors; a peer not running or not up drops with OErrors
// and no error. A frame that finds the peer's queue full is dropped and
// counted in OQDrops, also without error; so is one that would take the
// queue, or all queues together, over their byte bound. After these rules,
// an End with a SpoofFilter drops what the filter rejects, without error,
// counted by reason.
func (e *End) Transmit(f *Frame) error {
	if err := e.check(f.Data); err != nil {
		r := DropDown
		if err == ErrTooBig || err == ErrShort {
			r = DropMTU
		}
		e.drop(f, r)
		return err
	}
	if p := e.peer; !p.run.Load() || !p.up.Load() {
		e.drop(f, DropDown)
		return nil
	}
	// One atomic load when anti-spoofing is off.
	if sf := e.spoof.Load(); sf != nil {
		if r := sf.Check(f.Data[VnetHdrLen:]); r != SpoofNone {
			e.drop(f, dropForSpoof(r))
			return nil
		}
	}
	e.menq(f)
	return nil
}

func (e *End) check(data []byte) error {
	h, ok := ParseVnetHdr(data)
	if !ok || len(data) < VnetHdrLen {
		return ErrShort
	}
	if WireLen(data[VnetHdrLen:], h) > int(e.mtu.Load())+EtherVLANHdrLen {
		return ErrTooBig
	}
	if !e.run.Load() {
		return ErrNotRunning
	}
	if !e.up.Load() {
		return ErrDown
	}
	return nil
}

// menq is epair_menq: queue f at the peer, wake the queue if it was IDLE,
// count.
func (e *End) menq(f *Frame) {
	eth := f.Data[VnetHdrLen:]
	n, mcast := uint64(len(eth)), IsMulticast(eth)
	dst := e.peer
	q := &dst.queues[SelectQueue(eth, len(dst.queues))]

	q.mu.Lock()
	wake := q.state == idle
	if wake {
		q.state = waking
	}
	full := len(q.frames) >= q.limit || q.overWire(int(n)) || q.overBytes(f.Cap())
	shaped := q.wireLimit > 0 // under the lock: no second look at dst.shaper
	if !full {
		q.frames = append(q.frames, f)
		if q.wireLimit > 0 {
			q.wire += int(n)
		}
	}
	q.mu.Unlock()

	if full {
		r := DropQueueFull
		if shaped {
			r = DropShaped
		}
		e.drop(f, r)
	} else {
		e.c.opackets.Add(1)
		e.c.obytes.Add(n)
		if mcast {
			e.c.omcasts.Add(1)
		}
		dst.c.ipackets.Add(1)
		dst.c.ibytes.Add(n)
	}
	if wake {
		e.core.dispatch(q)
	}
}

// overBytes reports whether a frame of size more bytes would take q, or
// the core, over its byte bound; if not, it counts them. Called with q.mu
// held. An empty queue always takes one frame: a pair that keeps its queue
// drained is never starved by the floods of others.
func (q *queue) overBytes(size int) bool {
	if q.byteLimit == 0 {
		return false
	}
	if q.bytes+size > q.byteLimit {
		return true
	}
	c := q.end.core
	if q.bytes > 0 && c.queued.Load()+int64(size) > c.cfg.MaxQueuedBytes {
		return true
	}
	q.bytes += size
	c.queued.Add(int64(size))
	return false
}

// dispatch runs the flush of a freshly woken queue according to the policy.
func (c *Core) dispatch(q *queue) {
	if c.cfg.Policy == Direct {
		q.flush()
		return
	}
	c.schedule(q)
}

func (c *Core) schedule(q *queue) {
	c.workers[q.id%len(c.workers)].schedule(q)
}

// flush is epair_tx_start_deferred: deliver everything queued at this moment
// (for a shaped End, the frames whose tokens are there), then finish.
func (q *queue) flush() {
	e := q.end
	shaper := e.shaper.Load() // nil: unshaped, the one check it costs
	var wait time.Duration

	q.mu.Lock()
	var batch []*Frame
	bytes := q.bytes
	if shaper == nil {
		batch = q.frames
		q.frames, q.spare = q.spare[:0], nil
	} else {
		batch, bytes, wait = q.takeShaped(shaper)
	}
	q.state = running
	if bytes > 0 {
		e.core.queued.Add(int64(-bytes))
		q.bytes -= bytes
	}
	q.mu.Unlock()

	caps := e.captures.Load() // step 6: capture; nil while nobody captures
	for i, f := range batch {
		if caps != nil {
			caps.delivered(e, f.Data)
		}
		if err := e.sink.Deliver(q.id, f.Data); err != nil {
			e.c.ierrors.Add(1)
		}
		f.Release()
		batch[i] = nil
	}
	if e.after != nil {
		e.after.Flushed(q.id)
	}
	q.finish(batch, shaper, wait)
}

// finish ends a flush: IDLE when the queue is empty; otherwise WAKING, with
// either the timer armed (the head frame waits for tokens) or one more pass
// scheduled on the shared worker rather than looping here, so one busy
// queue cannot starve the others.
func (q *queue) finish(batch []*Frame, shaper *Shaper, wait time.Duration) {
	q.mu.Lock()
	if q.spare == nil {
		q.spare = batch[:0]
	}
	resched := false
	switch {
	case len(q.frames) == 0:
		q.state = idle
	case wait > 0:
		q.state = waking
		q.armTimer(shaper, wait)
	default:
		q.state = waking
		resched = true
	}
	q.mu.Unlock()

	if resched {
		q.end.core.schedule(q)
	}
}

// drop releases f, which e sent, and counts it under r. It is the one place
// a frame leaves the core undelivered.
func (e *End) drop(f *Frame, r DropReason) {
	// capture (one atomic load; see capture.go): a dropped frame is
	// captured too, with its reason.
	if caps := e.captures.Load(); caps != nil {
		caps.dropped(e, f.Data, r)
	}
	f.Release()
	e.c.drops[r].Add(1)
}

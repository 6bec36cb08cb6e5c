package epair

import (
	"errors"
	"sync"
	"time"
)

// maxTimerSlack bounds how long a shaped queue waits beyond the moment its
// head frame's tokens are there: waking for every frame would cost a timer
// per frame at high rates, waking a little later releases a batch. take
// caps it at half the time the bucket needs to fill up from there, so no
// tokens are wasted by a full bucket while frames wait.
const maxTimerSlack = time.Millisecond

// ShapedQueueLatency bounds how long frames wait in a shaped End's queue:
// the reference bandwidth plugin gives its tbf qdisc a latency of 25 ms
// (limit = rate × latency + burst bytes), so a slow pod's queue holds that
// much, not --queue-bytes (8 MiB are 64 s at 1 Mbit/s).
const ShapedQueueLatency = 25 * time.Millisecond

// MinShapedQueueFrames is the fewest full-size frames a shaped queue holds.
// At low rates 25 ms is less than a TCP sender's smallest window (at
// 1 Mbit/s three frames): measured with iperf3 and BBR, a queue that small
// dropped enough to lose a tenth of the rate, while 16 frames (as
// pfifo_fast-like queues of a few dozen frames, and tbf with the burst
// kubelet gives) keep it within 3 %.
const MinShapedQueueFrames = 16

// maxShapedQueueBytes keeps QueueBytes an int for any rate NewShaper takes
// (the daemon's bounds give at most 7.4e9).
const maxShapedQueueBytes = 1 << 40

// ErrShaperConfig is returned by NewShaper for a rate without a burst (or
// the reverse): the bucket would never hold a frame's tokens.
var ErrShaperConfig = errors.New("shaping needs both a rate and a burst greater than 0")

// timer is the part of *time.Timer a shaped queue uses, so tests can
// drive the clock.
type timer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

// clock is where a Shaper reads the time and arms timers.
type clock struct {
	now       func() time.Time
	afterFunc func(d time.Duration, f func()) timer
}

var realClock = clock{
	now:       time.Now,
	afterFunc: func(d time.Duration, f func()) timer { return time.AfterFunc(d, f) },
}

// Shaper is a token bucket (ALTQ's place on the frame path): set on an End
// with SetShaper, it paces the frames flushed from that End's receive
// queues to rate bits per second, with bursts of up to burst bits. Frames
// over the rate wait in the bounded queue, so a TCP sender sees delay and
// backs off, rather than losing a burst; only a full queue drops. One
// Shaper is shared by all queues of its End, so the rate is the End's.
type Shaper struct {
	rate, burst float64 // bits per second, bits
	clk         clock

	mu     sync.Mutex
	tokens float64 // bits; below 0 after a frame larger than the burst
	last   time.Time
}

// NewShaper returns a token bucket of rate bits/s and burst bits, full.
func NewShaper(rate, burst uint64) (*Shaper, error) {
	return newShaper(rate, burst, realClock)
}

func newShaper(rate, burst uint64, clk clock) (*Shaper, error) {
	if rate == 0 || burst == 0 {
		return nil, ErrShaperConfig
	}
	s := &Shaper{rate: float64(rate), burst: float64(burst), clk: clk}
	s.tokens, s.last = s.burst, clk.now()
	return s, nil
}

// Rate returns the rate in bits per second.
func (s *Shaper) Rate() uint64 { return uint64(s.rate) }

// Burst returns the burst in bits.
func (s *Shaper) Burst() uint64 { return uint64(s.burst) }

// refill adds the tokens earned since the last call. Called with s.mu held.
func (s *Shaper) refill(now time.Time) {
	if d := now.Sub(s.last); d > 0 {
		s.tokens = min(s.burst, s.tokens+d.Seconds()*s.rate)
		s.last = now
	}
}

// take charges a frame of bits if the bucket holds them, and otherwise
// says how long until it does. A frame larger than the burst goes once the
// bucket is full and leaves it in debt, so it is neither stuck forever nor
// free. Called with s.mu held, after refill.
func (s *Shaper) take(bits float64) (time.Duration, bool) {
	need := min(bits, s.burst)
	if s.tokens >= need {
		s.tokens -= bits
		return 0, true
	}
	wait := s.seconds(need - s.tokens)
	slack := min(maxTimerSlack, s.seconds(s.burst-need)/2)
	return max(wait+slack, 1), false
}

// QueueBytes returns the frame bytes a queue shaped by s may hold: rate ×
// ShapedQueueLatency + burst, as tbf's limit, but room for at least
// MinShapedQueueFrames frames of maxFrame; at most byteLimit (when not 0)
// and at least maxFrame, so that the largest frame always fits.
func (s *Shaper) QueueBytes(maxFrame, byteLimit int) int {
	lim := min(s.rate*ShapedQueueLatency.Seconds()/8+s.burst/8, maxShapedQueueBytes)
	lim = max(lim, float64(MinShapedQueueFrames*maxFrame))
	if byteLimit > 0 {
		lim = min(lim, float64(byteLimit))
	}
	return int(max(lim, float64(maxFrame)))
}

// seconds returns how long the bucket takes to earn bits.
func (s *Shaper) seconds(bits float64) time.Duration {
	return time.Duration(bits / s.rate * float64(time.Second))
}

// frameBits is what a frame costs in tokens: the bits of all the frames
// that will be on the wire for it, so a GSO super-frame pays for every
// segment's headers too.
func frameBits(data []byte) float64 {
	h, _ := ParseVnetHdr(data)
	return float64(WireBytes(data[VnetHdrLen:], h)) * 8
}

// takeShaped moves the queued frames whose tokens are there, in order, into
// a batch to deliver, and leaves the rest queued. wait > 0 says how long
// until the first one left may go. It returns the buffer bytes taken out.
// Called with q.mu held.
func (q *queue) takeShaped(s *Shaper) (batch []*Frame, bytes int, wait time.Duration) {
	n, wire := 0, 0
	s.mu.Lock()
	s.refill(s.clk.now())
	for ; n < len(q.frames); n++ {
		d, ok := s.take(frameBits(q.frames[n].Data))
		if !ok {
			wait = d
			break
		}
		bytes += q.frames[n].Cap()
		wire += len(q.frames[n].Data) - VnetHdrLen
	}
	s.mu.Unlock()
	q.wire = max(q.wire-wire, 0)
	batch = append(q.spare[:0], q.frames[:n]...)
	rest := copy(q.frames, q.frames[n:])
	clear(q.frames[rest:])
	q.frames, q.spare = q.frames[:rest], nil
	if q.byteLimit == 0 {
		bytes = 0
	}
	return batch, bytes, wait
}

// armTimer makes the queue flush again after d. The state machine keeps
// the queue WAKING meanwhile, so no sender wakes it and at most one timer
// is armed; the timer is made once and reused. Called with q.mu held.
func (q *queue) armTimer(s *Shaper, d time.Duration) {
	if q.timer == nil {
		q.timer = s.clk.afterFunc(d, q.release)
		return
	}
	q.timer.Reset(d)
}

// release is the timer's function: the waiting frames' tokens are there.
func (q *queue) release() { q.end.core.dispatch(q) }

// SetShaper paces the frames delivered to this End (nil: no shaping). The
// daemon sets the pod's egress on the b end (frames the pod sends are
// queued there) and its ingress on the a end. A shaped End's queues hold
// at most s.QueueBytes frame bytes each (beyond which frames are dropped
// as DropShaped); an empty queue still takes one frame of any size.
func (e *End) SetShaper(s *Shaper) {
	e.shaper.Store(s)
	e.setWireLimits()
}

// setWireLimits sets every queue's frame-byte bound from the End's
// shaper (0: none) and the MTU its peer sends with, and recounts the frame
// bytes already queued, which unshaped queues do not keep.
func (e *End) setWireLimits() {
	s := e.shaper.Load()
	for i := range e.queues {
		q := &e.queues[i]
		q.mu.Lock()
		q.wireLimit, q.wire = 0, 0
		if s != nil {
			q.wireLimit = s.QueueBytes(e.peer.MTU()+EtherVLANHdrLen, q.byteLimit)
			for _, f := range q.frames {
				q.wire += len(f.Data) - VnetHdrLen
			}
		}
		q.mu.Unlock()
	}
}

// overWire reports whether n more frame bytes would take a shaped queue
// over its bound; unshaped (wireLimit 0) it costs one comparison. Called
// with q.mu held.
func (q *queue) overWire(n int) bool {
	return q.wireLimit > 0 && len(q.frames) > 0 && q.wire+n > q.wireLimit
}

// Shaper returns the End's token bucket, nil when unshaped.
func (e *End) Shaper() *Shaper { return e.shaper.Load() }

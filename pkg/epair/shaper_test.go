package epair

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand; its timers fire in advance,
// on the test's goroutine.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*fakeTimer
	made   int
}

type fakeTimer struct {
	c     *fakeClock
	at    time.Time
	armed bool
	f     func()
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1000, 0)} }

func (c *fakeClock) clock() clock {
	return clock{now: c.now, afterFunc: c.afterFunc}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) afterFunc(d time.Duration, f func()) timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.t.Add(d), armed: true, f: f}
	c.timers = append(c.timers, t)
	c.made++
	return t
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.at, t.armed = t.c.t.Add(d), true
	return was
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}

// armed returns how many timers are armed.
func (c *fakeClock) armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if t.armed {
			n++
		}
	}
	return n
}

// advance moves the clock by d in steps of step, firing the timers that
// are due after each step (unlocked: a timer's flush re-arms it).
func (c *fakeClock) advance(d, step time.Duration) {
	for end := c.now().Add(d); c.now().Before(end); {
		c.mu.Lock()
		c.t = c.t.Add(step)
		var due []*fakeTimer
		for _, t := range c.timers {
			if t.armed && !t.at.After(c.t) {
				t.armed = false
				due = append(due, t)
			}
		}
		c.mu.Unlock()
		for _, t := range due {
			t.f()
		}
	}
}

// shapedPair is a test pair whose b end (the pod's egress) is shaped on a
// fake clock.
func shapedPair(t *testing.T, cfg Config, rate, burst uint64) (*Pair, *recorder, *fakeClock) {
	t.Helper()
	_, p, _, rb := newTestPair(t, cfg)
	fc := newFakeClock()
	s, err := newShaper(rate, burst, fc.clock())
	if err != nil {
		t.Fatal(err)
	}
	p.B.SetShaper(s)
	return p, rb, fc
}

// frameOfBits is a UDP frame of 1250 bytes: 10000 bits of tokens.
const frameOfBits = 10000

func send(t *testing.T, p *Pair, from, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		// The id is the source port (what the recorder reads); the pairs
		// here have one queue, so every frame takes it.
		f := udpFrame(frameOfBits/8, uint16(from+i), false)
		if err := p.A.Transmit(f); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewShaperNeedsRateAndBurst(t *testing.T) {
	for _, rb := range [][2]uint64{{0, 1}, {1, 0}, {0, 0}} {
		if _, err := NewShaper(rb[0], rb[1]); err == nil {
			t.Errorf("NewShaper(%d, %d) accepted", rb[0], rb[1])
		}
	}
}

func TestShaperHonoursRateOverASecond(t *testing.T) {
	// 10 Mbit/s: 1000 frames a second after a burst of 4, offered at twice
	// the rate; what the latency-bounded queue cannot hold is dropped.
	p, rb, fc := shapedPair(t, Config{Policy: Direct}, 10_000_000, 4*frameOfBits)
	for ms := 0; ms < 1000; ms++ {
		send(t, p, 2*ms, 2)
		fc.advance(time.Millisecond, 100*time.Microsecond)
	}
	got := len(rb.ids()) - 4
	if got < 980 || got > 1020 {
		t.Fatalf("%d frames after the burst in a second, want 1000 ±2%%", got)
	}
	st := p.A.Stats()
	if st.OQDrops != st.DropShaped || st.OQDrops+uint64(len(rb.ids())+p.B.QueueLen()) != 2000 {
		t.Fatalf("of 2000 frames %d delivered, %d queued, %d dropped (%d shaped): want them to add up, all shaped",
			len(rb.ids()), p.B.QueueLen(), st.OQDrops, st.DropShaped)
	}
}

func TestShaperHonoursBurst(t *testing.T) {
	p, rb, fc := shapedPair(t, Config{Policy: Direct}, 1_000_000, 5*frameOfBits)
	send(t, p, 0, 12)
	if n := len(rb.ids()); n != 5 {
		t.Fatalf("%d frames delivered at once, want the burst of 5", n)
	}
	if n := p.B.QueueLen(); n != 7 {
		t.Fatalf("%d frames wait, want 7", n)
	}
	if fc.armed() != 1 {
		t.Fatalf("%d timers armed, want 1", fc.armed())
	}
	// 10 ms earn one frame (plus the timer's slack).
	fc.advance(12*time.Millisecond, 100*time.Microsecond)
	if n := len(rb.ids()); n != 6 {
		t.Fatalf("%d frames after 12 ms, want 6", n)
	}
}

func TestShaperChargesGSOWireBytes(t *testing.T) {
	f := gsoFrame(10*1448, 1448)
	eth := f.Data[VnetHdrLen:]
	h, _ := ParseVnetHdr(f.Data)
	if got, want := WireBytes(eth, h), 54+10*1448+9*54; got != want {
		t.Fatalf("WireBytes = %d, want %d (10 segments with headers)", got, want)
	}
	plain := udpFrame(100, 1, false)
	h, _ = ParseVnetHdr(plain.Data)
	if got := WireBytes(plain.Data[VnetHdrLen:], h); got != 100 {
		t.Fatalf("WireBytes of a plain frame = %d, want 100", got)
	}
	plain.Release()

	// A burst of two super-frames by their length is less than two by
	// their wire bytes: only one goes.
	p, rb, _ := shapedPair(t, Config{Policy: Direct, QueueBytes: -1}, 1_000_000, uint64(2*len(eth)*8))
	f.Release()
	for i := 0; i < 2; i++ {
		if err := p.A.Transmit(gsoFrame(10*1448, 1448)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(rb.ids()); n != 1 {
		t.Fatalf("%d super-frames delivered, want 1: charged by wire bytes", n)
	}
}

func TestShapedFullQueueDrops(t *testing.T) {
	// At 100 Mbit/s the latency bound (about 250 frames) is not what
	// stops the queue: its length is.
	p, rb, _ := shapedPair(t, Config{Policy: Direct, QueueLen: 8}, 100_000_000, frameOfBits)
	send(t, p, 0, 20)
	if n := len(rb.ids()); n != 1 {
		t.Fatalf("%d delivered, want 1", n)
	}
	if st := p.A.Stats(); st.OQDrops != 11 {
		t.Fatalf("OQDrops = %d, want 11 (8 wait, 1 went)", st.OQDrops)
	}
}

func TestShapedIdlePairArmsNoTimer(t *testing.T) {
	p, rb, fc := shapedPair(t, Config{Policy: Direct}, 1_000_000, 3*frameOfBits)
	send(t, p, 0, 3)
	if fc.made != 0 {
		t.Fatalf("a timer was made for frames within the burst")
	}
	send(t, p, 3, 5)
	fc.advance(100*time.Millisecond, time.Millisecond)
	if n := len(rb.ids()); n != 8 {
		t.Fatalf("%d delivered, want 8", n)
	}
	if fc.armed() != 0 || fc.made != 1 {
		t.Fatalf("%d timers armed, %d made after the backlog drained; want 0 and 1 (reused)", fc.armed(), fc.made)
	}
	if q := &p.B.queues[0]; q.state != idle {
		t.Fatalf("queue state %d, want idle", q.state)
	}
}

func TestShaperKeepsOrder(t *testing.T) {
	p, rb, fc := shapedPair(t, Config{Policy: Direct}, 100_000_000, 2*frameOfBits)
	for i := 0; i < 10; i++ {
		send(t, p, i*30, 30)
		fc.advance(7*time.Millisecond, 100*time.Microsecond)
	}
	fc.advance(time.Second, time.Millisecond)
	got := rb.ids()
	if len(got) != 300 {
		t.Fatalf("%d delivered, want 300", len(got))
	}
	for i, id := range got {
		if int(id) != i {
			t.Fatalf("frame %d delivered as number %d", id, i)
		}
	}
}

// TestShaperRealTimer runs the real timer through both policies: 40 frames
// of 10 kbit at 8 Mbit/s with a burst of 20 take about 25 ms. They all fit
// the queue (25 ms of the rate plus the burst are 40 frames), even when
// the deferred policy queues the burst too.
func TestShaperRealTimer(t *testing.T) {
	forPolicies(t, func(t *testing.T, pol Policy) {
		_, p, _, rb := newTestPair(t, Config{Policy: pol})
		s, err := NewShaper(8_000_000, 20*frameOfBits)
		if err != nil {
			t.Fatal(err)
		}
		p.B.SetShaper(s)
		start := time.Now()
		send(t, p, 0, 40)
		rb.waitN(t, 40)
		if d := time.Since(start); d < 22*time.Millisecond || d > 75*time.Millisecond {
			t.Fatalf("took %v, want about 25 ms", d)
		}
	})
}

func TestCloseStopsShapedTimer(t *testing.T) {
	p, _, fc := shapedPair(t, Config{Policy: Direct}, 1_000_000, frameOfBits)
	send(t, p, 0, 5)
	p.Close()
	if fc.armed() != 0 {
		t.Fatal("timer still armed after Close")
	}
}

func TestShapedQueueBytes(t *testing.T) {
	for _, c := range []struct {
		rate, burst         uint64
		maxFrame, byteLimit int
		want                int
	}{
		{10_000_000, 100_000, 1518, DefaultQueueBytes, 31250 + 12500},             // tbf's limit
		{1_000_000, 10_000, 1518, DefaultQueueBytes, MinShapedQueueFrames * 1518}, // at least 16 frames
		{1_000, 8, 1518, DefaultQueueBytes, MinShapedQueueFrames * 1518},
		{1_000_000, 10_000, 1518, 10_000, 10_000},                              // --queue-bytes below 16 frames wins
		{1_000, 8, 1518, 1000, 1518},                                           // never below one frame
		{100_000_000_000, 1 << 30, 1518, DefaultQueueBytes, DefaultQueueBytes}, // never above --queue-bytes
		{100_000_000_000, 8, 1518, 0, 312_500_001},                             // no byte bound
		{1 << 62, 1 << 62, 1518, 0, 1 << 40},                                   // an int, whatever the rate
	} {
		s, _ := NewShaper(c.rate, c.burst)
		if got := s.QueueBytes(c.maxFrame, c.byteLimit); got != c.want {
			t.Errorf("QueueBytes(%d bit/s, %d bits, frame %d, bound %d) = %d, want %d",
				c.rate, c.burst, c.maxFrame, c.byteLimit, got, c.want)
		}
	}
}

// TestShapedQueueBoundedByLatency: at 10 Mbit/s with a burst of one frame
// the queue holds 25 ms of the rate plus the burst (32500 bytes: 26 frames
// of 1250), not --queue-bytes; the rest is dropped as shaped, and the last
// frame queued leaves within those 35 ms.
func TestShapedQueueBoundedByLatency(t *testing.T) {
	p, rb, fc := shapedPair(t, Config{Policy: Direct}, 10_000_000, frameOfBits)
	send(t, p, 0, 100)
	if n, q := len(rb.ids()), p.B.QueueLen(); n != 1 || q != 26 {
		t.Fatalf("%d delivered, %d queued; want the burst of 1 and 26 queued", n, q)
	}
	st := p.A.Stats()
	if st.DropShaped != 73 || st.OQDrops != 73 || st.DropQueueFull != 0 {
		t.Fatalf("drop_shaped %d, oqdrops %d, drop_queue_full %d; want 73, 73, 0", st.DropShaped, st.OQDrops, st.DropQueueFull)
	}
	fc.advance(36*time.Millisecond, 100*time.Microsecond)
	if n := len(rb.ids()); n != 27 {
		t.Fatalf("%d delivered after 36 ms, want all 27", n)
	}
	// Drained, it takes frames again.
	send(t, p, 100, 1)
	if n, q := len(rb.ids()), p.B.QueueLen(); n+q != 28 {
		t.Fatalf("%d delivered, %d queued after draining; want the new frame taken", n, q)
	}
}

// TestShapedQueueHoldsSixteenFrames: at 1 Mbit/s 25 ms is three frames,
// less than a TCP sender's smallest window; the queue holds 16 full-size
// frames (24288 bytes: 19 frames of 1250) instead.
func TestShapedQueueHoldsSixteenFrames(t *testing.T) {
	p, rb, _ := shapedPair(t, Config{Policy: Direct}, 1_000_000, frameOfBits)
	send(t, p, 0, 100)
	if n, q := len(rb.ids()), p.B.QueueLen(); n != 1 || q != 19 {
		t.Fatalf("%d delivered, %d queued; want the burst of 1 and 19 queued", n, q)
	}
	if st := p.A.Stats(); st.DropShaped != 80 {
		t.Fatalf("drop_shaped %d, want 80", st.DropShaped)
	}
}

// TestShapedQueueTakesOneLargeFrame: an empty shaped queue takes a GSO
// super-frame far above its bound; nothing more goes in behind it.
func TestShapedQueueTakesOneLargeFrame(t *testing.T) {
	p, _, _ := shapedPair(t, Config{Policy: Direct}, 1_000_000, frameOfBits)
	send(t, p, 0, 1) // spends the burst
	if err := p.A.Transmit(gsoFrame(40*1448, 1448)); err != nil {
		t.Fatal(err)
	}
	send(t, p, 1, 1)
	if q, st := p.B.QueueLen(), p.A.Stats(); q != 1 || st.DropShaped != 1 {
		t.Fatalf("%d queued, %d dropped as shaped; want the super-frame queued and the frame after it dropped", q, st.DropShaped)
	}
}

// TestShapedQueueBoundFollows: the bound follows the peer's MTU (the
// largest frame it sends), and goes with the shaper.
func TestShapedQueueBoundFollows(t *testing.T) {
	p, _, _ := shapedPair(t, Config{Policy: Direct}, 1_000, 8)
	q := &p.B.queues[0]
	if want := MinShapedQueueFrames * (1500 + EtherVLANHdrLen); q.wireLimit != want {
		t.Fatalf("bound %d, want %d: 16 frames of MTU 1500", q.wireLimit, want)
	}
	p.A.SetMTU(9000)
	if want := MinShapedQueueFrames * (9000 + EtherVLANHdrLen); q.wireLimit != want {
		t.Fatalf("bound %d after MTU 9000, want %d", q.wireLimit, want)
	}
	send(t, p, 0, 3) // one goes, two wait
	if q.wire != 2*1250 {
		t.Fatalf("%d frame bytes counted for 2 queued frames of 1250", q.wire)
	}
	p.B.SetShaper(nil)
	if q.wireLimit != 0 || q.wire != 0 {
		t.Fatalf("unshaped: bound %d, counted %d; want 0 and 0", q.wireLimit, q.wire)
	}
}

// BenchmarkTransmitFlushShaped: a 1514-byte frame through Transmit and the
// flush, unshaped and through a bucket so large it never waits: what the
// token bucket itself costs.
func BenchmarkTransmitFlushShaped(b *testing.B) {
	benchOffOn(b, "unshaped", "shaped", func(p *Pair) {
		s, _ := NewShaper(1<<62, 1<<62)
		p.B.SetShaper(s)
	})
}

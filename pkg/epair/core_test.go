package epair

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/epair-cni/epair/internal/eventually"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// udpFrame builds vnet header + Ethernet + IPv4 + UDP of ethLen bytes in all
// (at least 42), from port sport, to a unicast or broadcast MAC.
func udpFrame(ethLen int, sport uint16, bcast bool) *Frame {
	f := GetFrame()
	f.Data = f.Buf()[:VnetHdrLen+ethLen]
	clear(f.Data)
	eth := f.Data[VnetHdrLen:]
	copy(eth[0:6], []byte{0x02, 0, 0, 0, 0, 0x0b})
	if bcast {
		copy(eth[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	copy(eth[6:12], []byte{0x02, 0, 0, 0, 0, 0x0a})
	binary.BigEndian.PutUint16(eth[12:], 0x0800)
	ip := eth[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(ethLen-14))
	ip[8], ip[9] = 64, 17
	copy(ip[12:16], []byte{10, 0, 0, 1})
	copy(ip[16:20], []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[20:], sport)
	binary.BigEndian.PutUint16(ip[22:], 9)
	binary.BigEndian.PutUint16(ip[24:], uint16(ethLen-34))
	return fit(f)
}

// fit moves f into a buffer of its size, as the datapath does.
func fit(f *Frame) *Frame {
	g := f.Fit(len(f.Data))
	if g != f {
		f.Release()
	}
	return g
}

// recorder is a Sink that keeps the source port (frame id) of every frame
// delivered, and can block deliveries until released.
type recorder struct {
	mu      sync.Mutex
	got     []uint16
	gate    chan struct{} // when non-nil, every Deliver waits on it
	entered chan struct{}
	onFrame func(n int)
	fail    bool
}

func (r *recorder) Deliver(q int, data []byte) error {
	if r.entered != nil {
		select {
		case r.entered <- struct{}{}:
		default:
		}
	}
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	r.got = append(r.got, binary.BigEndian.Uint16(data[VnetHdrLen+34:]))
	n := len(r.got)
	r.mu.Unlock()
	if r.onFrame != nil {
		r.onFrame(n)
	}
	if r.fail {
		return errors.New("sink failed")
	}
	return nil
}

func (r *recorder) ids() []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint16(nil), r.got...)
}

func (r *recorder) waitN(t *testing.T, n int) []uint16 {
	t.Helper()
	eventually.True(t, fmt.Sprintf("%d frames delivered", n), func() bool { return len(r.ids()) >= n })
	return r.ids()
}

func newTestPair(t *testing.T, cfg Config) (*Core, *Pair, *recorder, *recorder) {
	t.Helper()
	c := New(cfg)
	t.Cleanup(c.Close)
	ra, rb := &recorder{}, &recorder{}
	p := c.NewPair(1500, ra, rb)
	p.A.SetUp(true)
	p.B.SetUp(true)
	return c, p, ra, rb
}

func forPolicies(t *testing.T, fn func(t *testing.T, p Policy)) {
	for _, p := range []Policy{Direct, Deferred} {
		t.Run(p.String(), func(t *testing.T) { fn(t, p) })
	}
}

func TestCountersOnDelivery(t *testing.T) {
	forPolicies(t, func(t *testing.T, pol Policy) {
		_, p, ra, rb := newTestPair(t, Config{Policy: pol})
		for i := 0; i < 10; i++ {
			if err := p.A.Transmit(udpFrame(100, uint16(i), i%5 == 0)); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.B.Transmit(udpFrame(60, 1000, false)); err != nil {
			t.Fatal(err)
		}
		rb.waitN(t, 10)
		ra.waitN(t, 1)
		a, b := p.A.Stats(), p.B.Stats()
		wantA := Stats{OPackets: 10, OBytes: 1000, OMcasts: 2, IPackets: 1, IBytes: 60}
		wantB := Stats{IPackets: 10, IBytes: 1000, OPackets: 1, OBytes: 60}
		if a != wantA || b != wantB {
			t.Fatalf("stats a=%+v b=%+v, want a=%+v b=%+v", a, b, wantA, wantB)
		}
	})
}

func TestFullQueueDropsAndCountsOQDrops(t *testing.T) {
	forPolicies(t, func(t *testing.T, pol Policy) {
		c := New(Config{Policy: pol, QueueLen: 8})
		defer c.Close()
		rb := &recorder{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
		p := c.NewPair(1500, &recorder{}, rb)
		p.A.SetUp(true)
		p.B.SetUp(true)
		// The first frame wakes the queue and its flush blocks in Deliver
		// (in the direct policy, on this goroutine, hence the go).
		go p.A.Transmit(udpFrame(64, 0, false))
		<-rb.entered
		for i := 1; i <= 9; i++ {
			if err := p.A.Transmit(udpFrame(64, uint16(i), false)); err != nil {
				t.Fatalf("a full queue is not an error to the sender: %v", err)
			}
		}
		if got := p.A.Stats().OQDrops; got != 1 {
			t.Fatalf("oqdrops = %d, want 1 (8 queued, 1 dropped)", got)
		}
		if got := p.B.QueueLen(); got != 8 {
			t.Fatalf("queued = %d, want 8", got)
		}
		close(rb.gate)
		got := rb.waitN(t, 9)
		for i, id := range got {
			if id != uint16(i) {
				t.Fatalf("delivery order %v", got)
			}
		}
		if s := p.A.Stats(); s.OPackets != 9 || p.B.Stats().IPackets != 9 {
			t.Fatalf("opackets=%d ipackets=%d, want 9", s.OPackets, p.B.Stats().IPackets)
		}
	})
}

func TestArrivalsDuringFlushTakeOneMorePass(t *testing.T) {
	forPolicies(t, func(t *testing.T, pol Policy) {
		c := New(Config{Policy: pol})
		defer c.Close()
		rb := &recorder{}
		p := c.NewPair(1500, &recorder{}, rb)
		p.A.SetUp(true)
		p.B.SetUp(true)
		q := &p.B.queues[0]
		var smu sync.Mutex // states is appended by the flush, read here
		var states []qstate
		rb.onFrame = func(n int) {
			// Runs inside the flush: the queue is RUNNING, so these
			// frames only enqueue; the flush must not take them.
			q.mu.Lock()
			st := q.state
			q.mu.Unlock()
			smu.Lock()
			states = append(states, st)
			smu.Unlock()
			if n == 1 {
				for i := 1; i <= 3; i++ {
					p.A.Transmit(udpFrame(64, uint16(i), false))
				}
				if got := p.B.QueueLen(); got != 3 {
					t.Errorf("queued during flush = %d, want 3", got)
				}
			}
		}
		p.A.Transmit(udpFrame(64, 0, false))
		got := rb.waitN(t, 4)
		for i, id := range got {
			if id != uint16(i) {
				t.Fatalf("order %v", got)
			}
		}
		waitState(t, q, idle) // the last onFrame has returned by then
		smu.Lock()
		defer smu.Unlock()
		for _, s := range states {
			if s != running {
				t.Fatalf("state during delivery %v, want running", s)
			}
		}
	})
}

func waitState(t *testing.T, q *queue, want qstate) {
	t.Helper()
	eventually.True(t, fmt.Sprintf("queue state %v", want), func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.state == want
	})
}

func TestStateMachineWaking(t *testing.T) {
	// With the deferred policy and the only worker busy, a woken queue
	// sits in WAKING: a second frame neither reschedules nor flushes.
	c := New(Config{Policy: Deferred})
	defer c.Close()
	blocker := &recorder{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	busy := c.NewPair(1500, &recorder{}, blocker)
	busy.A.SetUp(true)
	busy.B.SetUp(true)
	busy.A.Transmit(udpFrame(64, 0, false))
	<-blocker.entered // the worker is now stuck in busy's flush

	rb := &recorder{}
	p2 := c.NewPair(1500, &recorder{}, rb)
	p2.A.SetUp(true)
	p2.B.SetUp(true)
	q := &p2.B.queues[0]
	if q.state != idle {
		t.Fatalf("new queue state %v, want idle", q.state)
	}
	p2.A.Transmit(udpFrame(64, 1, false))
	p2.A.Transmit(udpFrame(64, 2, false))
	if q.state != waking || len(c.workers[0].pending) != 1 {
		t.Fatalf("state %v pending %d, want waking and scheduled once", q.state, len(c.workers[0].pending))
	}
	close(blocker.gate)
	if got := rb.waitN(t, 2); got[0] != 1 || got[1] != 2 {
		t.Fatalf("order %v", got)
	}
	waitState(t, q, idle)
}

func TestBusyQueueDoesNotStarveOthers(t *testing.T) {
	forPolicies(t, func(t *testing.T, pol Policy) {
		c := New(Config{Policy: pol, Queues: 1})
		defer c.Close()
		const loops = 200000
		var yAt atomic.Int64
		var xCount atomic.Int64
		yAt.Store(-1)
		// Pair x re-sends a frame from every delivery: its queue is never
		// empty at the end of a flush, for `loops` frames.
		xb := &recorder{}
		x := c.NewPair(1500, &recorder{}, xb)
		xb.onFrame = func(n int) {
			xCount.Store(int64(n))
			if n < loops {
				x.A.Transmit(udpFrame(64, uint16(n), false))
			}
		}
		yb := &recorder{}
		yb.onFrame = func(int) { yAt.Store(xCount.Load()) }
		y := c.NewPair(1500, &recorder{}, yb)
		for _, e := range []*End{x.A, x.B, y.A, y.B} {
			e.SetUp(true)
		}
		go x.A.Transmit(udpFrame(64, 0, false))
		eventually.True(t, "x's first frame", func() bool { return xCount.Load() > 0 })
		y.A.Transmit(udpFrame(64, 7, false))
		yb.waitN(t, 1)
		if at := yAt.Load(); at < 0 || at >= loops {
			t.Fatalf("y delivered after %d of x's %d frames: starved", at, loops)
		}
	})
}

func TestDirectRunsFlushOnCaller(t *testing.T) {
	_, p, _, rb := newTestPair(t, Config{Policy: Direct})
	p.A.Transmit(udpFrame(64, 5, false))
	// No waiting: the direct policy delivered before Transmit returned.
	if got := rb.ids(); len(got) != 1 || got[0] != 5 {
		t.Fatalf("delivered %v right after Transmit, want [5]", got)
	}
}

func TestDirectOthersOnlyEnqueueWhileFlushRuns(t *testing.T) {
	c := New(Config{Policy: Direct})
	defer c.Close()
	rb := &recorder{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	p := c.NewPair(1500, &recorder{}, rb)
	p.A.SetUp(true)
	p.B.SetUp(true)
	go p.A.Transmit(udpFrame(64, 0, false))
	<-rb.entered
	done := make(chan struct{})
	go func() {
		p.A.Transmit(udpFrame(64, 1, false))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a second sender blocked behind the running flush")
	}
	if p.B.QueueLen() != 1 {
		t.Fatalf("second frame not queued")
	}
	close(rb.gate)
	if got := rb.waitN(t, 2); got[1] != 1 {
		t.Fatalf("order %v", got)
	}
}

func TestMTURule(t *testing.T) {
	_, p, _, rb := newTestPair(t, Config{})
	if err := p.A.Transmit(udpFrame(1500+18, 1, false)); err != nil {
		t.Fatalf("frame of MTU+18 must pass: %v", err)
	}
	err := p.A.Transmit(udpFrame(1500+19, 2, false))
	if !errors.Is(err, ErrTooBig) {
		t.Fatalf("frame of MTU+19: err %v, want ErrTooBig", err)
	}
	if s := p.A.Stats(); s.OErrors != 1 || s.OPackets != 1 {
		t.Fatalf("stats %+v, want 1 oerror 1 opacket", s)
	}
	if got := rb.ids(); len(got) != 1 {
		t.Fatalf("delivered %v", got)
	}
	p.A.SetMTU(9000)
	if err := p.A.Transmit(udpFrame(9018, 3, false)); err != nil {
		t.Fatalf("after SetMTU(9000): %v", err)
	}
}

// gsoFrame is a TCPv4 GSO super-frame: 54 header bytes and payload bytes,
// to be cut into segments of gsoSize.
func gsoFrame(payload, gsoSize int) *Frame {
	f := udpFrame(54+payload, 1, false)
	eth := f.Data[VnetHdrLen:]
	eth[14+9] = 6          // TCP
	eth[14+20+12] = 5 << 4 // data offset: 20 bytes
	h := f.Data
	h[0] = VnetFlagNeedsCsum
	h[1] = GSOTCPv4
	binary.LittleEndian.PutUint16(h[2:], 54)
	binary.LittleEndian.PutUint16(h[4:], uint16(gsoSize))
	binary.LittleEndian.PutUint16(h[6:], 34)
	binary.LittleEndian.PutUint16(h[8:], 16)
	return f
}

func TestMTURuleChecksGSOSegments(t *testing.T) {
	_, p, _, rb := newTestPair(t, Config{})
	// 60000 bytes of payload in 1448-byte segments: 1502-byte frames.
	if err := p.A.Transmit(gsoFrame(60000, 1448)); err != nil {
		t.Fatalf("GSO frame with 1448-byte segments: %v", err)
	}
	// 4000-byte segments do not fit a 1500 MTU.
	if err := p.A.Transmit(gsoFrame(60000, 4000)); !errors.Is(err, ErrTooBig) {
		t.Fatalf("GSO frame with 4000-byte segments: err %v, want ErrTooBig", err)
	}
	if got := len(rb.ids()); got != 1 || p.A.Stats().OErrors != 1 {
		t.Fatalf("delivered %d, oerrors %d; want 1 and 1", got, p.A.Stats().OErrors)
	}
}

func TestLinkRule(t *testing.T) {
	cases := []struct {
		name    string
		set     func(p *Pair)
		wantErr error
	}{
		{"sender down", func(p *Pair) { p.A.SetUp(false) }, ErrDown},
		{"sender not running", func(p *Pair) { p.A.SetRunning(false) }, ErrNotRunning},
		{"peer down", func(p *Pair) { p.B.SetUp(false) }, nil},
		{"peer not running", func(p *Pair) { p.B.SetRunning(false) }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, p, _, rb := newTestPair(t, Config{})
			tc.set(p)
			err := p.A.Transmit(udpFrame(64, 1, false))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if s := p.A.Stats(); s.OErrors != 1 || s.OPackets != 0 {
				t.Fatalf("stats %+v, want oerrors 1", s)
			}
			if len(rb.ids()) != 0 || p.B.Stats().IPackets != 0 {
				t.Fatal("frame crossed a link that is not up and running")
			}
		})
	}
}

func TestShortFrameIsAnError(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{})
	f := GetFrame()
	f.Data = f.Buf()[:5]
	if err := p.A.Transmit(f); !errors.Is(err, ErrShort) {
		t.Fatalf("err %v, want ErrShort", err)
	}
}

func TestSinkErrorCountsIErrors(t *testing.T) {
	c := New(Config{})
	defer c.Close()
	p := c.NewPair(1500, &recorder{}, &recorder{fail: true})
	p.A.SetUp(true)
	p.B.SetUp(true)
	p.A.Transmit(udpFrame(64, 1, false))
	if s := p.B.Stats(); s.IErrors != 1 {
		t.Fatalf("ierrors = %d, want 1", s.IErrors)
	}
}

// orderSink checks that each flow (UDP source port) arrives in sequence
// (the first two payload bytes).
type orderSink struct {
	mu   sync.Mutex
	next map[uint16]uint16
	bad  int
	n    atomic.Int64
}

func (o *orderSink) Deliver(_ int, data []byte) error {
	udp := data[VnetHdrLen+34:]
	flow, seq := binary.BigEndian.Uint16(udp), binary.BigEndian.Uint16(udp[8:])
	o.mu.Lock()
	if o.next[flow] != seq {
		o.bad++
	}
	o.next[flow] = seq + 1
	o.mu.Unlock()
	o.n.Add(1)
	return nil
}

func TestFlowsKeepOrderAcrossQueues(t *testing.T) {
	forPolicies(t, func(t *testing.T, pol Policy) {
		c := New(Config{Policy: pol, Queues: 4})
		defer c.Close()
		sink := &orderSink{next: map[uint16]uint16{}}
		p := c.NewPair(1500, nopSink{}, sink)
		p.A.SetUp(true)
		p.B.SetUp(true)
		const flows, per = 16, 500
		var wg sync.WaitGroup
		for fl := 0; fl < flows; fl++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					f := udpFrame(64, uint16(1000+fl), false)
					binary.BigEndian.PutUint16(f.Data[VnetHdrLen+42:], uint16(i))
					p.A.Transmit(f)
				}
			}()
		}
		wg.Wait()
		eventually.True(t, "every frame delivered", func() bool { return sink.n.Load() >= flows*per })
		if got := sink.n.Load(); got != flows*per {
			t.Fatalf("delivered %d of %d", got, flows*per)
		}
		if sink.bad != 0 {
			t.Fatalf("%d frames out of order within their flow", sink.bad)
		}
	})
}

func TestCloseDrainsQueues(t *testing.T) {
	c := New(Config{Policy: Deferred})
	defer c.Close()
	blocker := &recorder{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	busy := c.NewPair(1500, &recorder{}, blocker)
	busy.A.SetUp(true)
	busy.B.SetUp(true)
	busy.A.Transmit(udpFrame(64, 0, false))
	<-blocker.entered
	rb := &recorder{}
	p := c.NewPair(1500, &recorder{}, rb)
	p.A.SetUp(true)
	p.B.SetUp(true)
	for i := 0; i < 5; i++ {
		p.A.Transmit(udpFrame(64, uint16(i), false))
	}
	p.Close()
	if n := p.B.QueueLen(); n != 0 {
		t.Fatalf("%d frames left after Close", n)
	}
	if err := p.A.Transmit(udpFrame(64, 9, false)); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("transmit after Close: %v", err)
	}
	close(blocker.gate)
	// The worker flushes p's woken queue after the blocker's: once it is
	// idle, anything it was going to deliver has been.
	waitState(t, &p.B.queues[0], idle)
	if got := rb.ids(); len(got) != 0 {
		t.Fatalf("frames delivered after Close: %v", got)
	}
}

func TestTransmitAllocatesNothing(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{Policy: Direct})
	sink := nopSink{}
	p.B.sink = sink
	allocs := testing.AllocsPerRun(1000, func() {
		f := GetFrame()
		f.Data = f.Buf()[:VnetHdrLen+64]
		p.A.Transmit(f)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame, want 0", allocs)
	}
	// The same with the frame fitted to its size, as the datapath does
	// when queues are bounded in bytes.
	buf := GetFrame()
	allocs = testing.AllocsPerRun(1000, func() {
		f := buf.Fit(VnetHdrLen + 64)
		p.A.Transmit(f)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per fitted frame, want 0", allocs)
	}
}

type nopSink struct{}

func (nopSink) Deliver(int, []byte) error { return nil }

// BenchmarkTransmitFlush: one 1514-byte frame through Transmit and the
// flush, per dispatch policy, with the queues bounded in bytes (the
// default: the frame is first fitted into a 2 KiB buffer, a copy, and
// counted in the byte budgets) and without (QueueBytes -1: as before).
func BenchmarkTransmitFlush(b *testing.B) {
	for _, pol := range []Policy{Direct, Deferred} {
		for _, bounded := range []bool{true, false} {
			name := pol.String() + "/bytes-bounded"
			qb := 0
			if !bounded {
				name, qb = pol.String()+"/unbounded", -1
			}
			b.Run(name, func(b *testing.B) {
				c := New(Config{Policy: pol, QueueBytes: qb})
				defer c.Close()
				p := c.NewPair(1500, nopSink{}, nopSink{})
				p.A.SetUp(true)
				p.B.SetUp(true)
				tmpl := udpFrame(1514, 1, false)
				buf := GetFrame()
				b.ReportAllocs()
				b.SetBytes(1514)
				for i := 0; i < b.N; i++ {
					f := buf
					copy(f.Buf()[:VnetHdrLen+64], tmpl.Data)
					if c.FitsFrames() {
						f = buf.Fit(len(tmpl.Data))
					} else {
						f.Data = f.Buf()[:len(tmpl.Data)]
					}
					if f == buf {
						buf = GetFrame()
					}
					p.A.Transmit(f)
				}
			})
		}
	}
}

// flushCounter is a Sink that counts deliveries and flushes.
type flushCounter struct {
	delivered, flushed atomic.Int64
}

func (f *flushCounter) Deliver(int, []byte) error { f.delivered.Add(1); return nil }
func (f *flushCounter) Flushed(int)               { f.flushed.Add(1) }

func TestFlusherHearsOncePerFlush(t *testing.T) {
	c := New(Config{Policy: Direct})
	defer c.Close()
	fc := &flushCounter{}
	p := c.NewPair(1500, nopSink{}, fc)
	p.A.SetUp(true)
	p.B.SetUp(true)
	for i := 0; i < 3; i++ {
		p.A.Transmit(udpFrame(64, uint16(i), false))
	}
	if d, f := fc.delivered.Load(), fc.flushed.Load(); d != 3 || f != 3 {
		t.Fatalf("delivered %d flushed %d, want 3 and 3 (one flush per frame when each finds the queue idle)", d, f)
	}
}

// benchOffOn times a 1514-byte frame through Transmit and the flush of a
// direct, byte-bounded pair (fitted as the datapath fits it), once as is
// (off) and once after on has set a mechanism up on the pair: the cost of
// that mechanism, measured in the same run.
func benchOffOn(b *testing.B, off, on string, setup func(p *Pair)) {
	for _, name := range []string{off, on} {
		b.Run(name, func(b *testing.B) {
			c := New(Config{Policy: Direct})
			defer c.Close()
			p := c.NewPair(1500, nopSink{}, nopSink{})
			p.A.SetUp(true)
			p.B.SetUp(true)
			if name == on {
				setup(p)
			}
			tmpl := udpFrame(1514, 1, false)
			buf := GetFrame()
			b.ReportAllocs()
			b.SetBytes(1514)
			for i := 0; i < b.N; i++ {
				copy(buf.Buf()[:VnetHdrLen+64], tmpl.Data)
				f := buf.Fit(len(tmpl.Data))
				if f == buf {
					buf = GetFrame()
				}
				p.A.Transmit(f)
			}
			if s := p.A.Stats(); s.OPackets == 0 {
				b.Fatalf("nothing passed: %+v", s)
			}
		})
	}
}

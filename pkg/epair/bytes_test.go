package epair

import (
	"github.com/epair-cni/epair/internal/eventually"
	"testing"
)

// TestFitPicksTheSmallestBuffer: a frame moves into the smallest size class
// it fits (copied); one that needs the largest stays where it is.
func TestFitPicksTheSmallestBuffer(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{VnetHdrLen + 60, 256}, {256, 256}, {257, 2048}, {VnetHdrLen + 1518, 2048},
		{VnetHdrLen + 9018, 9216 + VnetHdrLen + EtherVLANHdrLen}, {20000, FrameSize}, {FrameSize, FrameSize},
	} {
		buf := GetFrame()
		for i := 0; i < c.n; i++ {
			buf.Buf()[i] = byte(i)
		}
		f := buf.Fit(c.n)
		if f.Cap() != c.want || len(f.Data) != c.n {
			t.Errorf("Fit(%d): cap %d len %d, want cap %d len %d", c.n, f.Cap(), len(f.Data), c.want, c.n)
		}
		if (f == buf) != (c.want == FrameSize) {
			t.Errorf("Fit(%d): copied %v, want a copy only into a smaller buffer", c.n, f != buf)
		}
		for i := range f.Data {
			if f.Data[i] != byte(i) {
				t.Fatalf("Fit(%d): byte %d is %d", c.n, i, f.Data[i])
			}
		}
		f.Release()
		if f != buf {
			buf.Release()
		}
	}
}

// blockedPair is a pair whose b end's sink blocks in its first Deliver,
// so that what a sends afterwards stays queued at b.
func blockedPair(t *testing.T, c *Core) (*Pair, *recorder) {
	t.Helper()
	rb := &recorder{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	p := c.NewPair(9000, &recorder{}, rb)
	p.A.SetUp(true)
	p.B.SetUp(true)
	go p.A.Transmit(udpFrame(64, 0, false))
	<-rb.entered
	t.Cleanup(func() { close(rb.gate) })
	return p, rb
}

// TestQueueBytesBound: a queue takes frames until their buffers would pass
// QueueBytes, then drops and counts oqdrops, as for a full queue; after the
// flush the bytes are free again.
func TestQueueBytesBound(t *testing.T) {
	forPolicies(t, func(t *testing.T, pol Policy) {
		c := New(Config{Policy: pol, QueueBytes: 10 * 2048})
		t.Cleanup(c.Close)
		p, rb := blockedPair(t, c)
		for i := 1; i <= 12; i++ {
			p.A.Transmit(udpFrame(1514, uint16(i), false)) // a 2 KiB buffer each
		}
		if got := p.B.QueueLen(); got != 10 {
			t.Errorf("queued %d frames of 2 KiB in a 20 KiB queue, want 10", got)
		}
		if got := p.A.Stats().OQDrops; got != 2 {
			t.Errorf("oqdrops = %d, want 2", got)
		}
		if got := c.QueuedBytes(); got != 10*2048 {
			t.Errorf("core holds %d bytes, want %d", got, 10*2048)
		}
		// 256-byte frames still fit where 2 KiB ones do not.
		c2 := New(Config{Policy: pol, QueueBytes: 4096, QueueLen: 100})
		t.Cleanup(c2.Close)
		p2, _ := blockedPair(t, c2)
		for i := 1; i <= 20; i++ {
			p2.A.Transmit(udpFrame(64, uint16(i), false))
		}
		if got := p2.B.QueueLen(); got != 16 {
			t.Errorf("queued %d frames of 256 bytes in a 4 KiB queue, want 16", got)
		}
		rb.gate <- struct{}{} // the blocked first frame
		for i := 0; i < 10; i++ {
			rb.gate <- struct{}{}
		}
		rb.waitN(t, 11)
		waitFor(t, func() bool { return c.QueuedBytes() == 0 }, "core bytes back to 0 after the flush")
	})
}

// TestMaxQueuedBytes: all queues together stay under MaxQueuedBytes, but an
// empty queue always takes a frame, so a pair that drains keeps forwarding
// while stalled pairs hold the budget. (Direct only: a stalled sink blocks
// the deferred policy's one shared worker, here for every pair.)
func TestMaxQueuedBytes(t *testing.T) {
	t.Run("direct", func(t *testing.T) {
		c := New(Config{Policy: Direct, QueueBytes: 64 << 10, MaxQueuedBytes: 8 * 2048})
		t.Cleanup(c.Close)
		var stalled []*Pair
		for i := 0; i < 2; i++ {
			p, _ := blockedPair(t, c)
			for j := 1; j <= 10; j++ {
				p.A.Transmit(udpFrame(1514, uint16(j), false))
			}
			stalled = append(stalled, p)
		}
		if got := c.QueuedBytes(); got > 8*2048+2048 {
			t.Errorf("core holds %d bytes, bound %d (+ one frame of an empty queue)", got, 8*2048)
		}
		if a, b := stalled[0].B.QueueLen(), stalled[1].B.QueueLen(); a+b > 9 || b < 1 {
			t.Errorf("stalled queues hold %d and %d frames, want at most 9 together and the second one at least its first", a, b)
		}
		// A healthy pair still forwards.
		rb := &recorder{}
		ok := c.NewPair(1500, &recorder{}, rb)
		ok.A.SetUp(true)
		ok.B.SetUp(true)
		for j := 0; j < 5; j++ {
			ok.A.Transmit(udpFrame(1514, uint16(j), false))
		}
		rb.waitN(t, 5)
		if d := ok.A.Stats().OQDrops; d != 0 {
			t.Errorf("a draining pair lost %d frames to the others' budget", d)
		}
	})
}

// waitFor polls cond until it holds or 5 s have passed.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	eventually.True(t, what, cond)
}

package epair

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"
)

func startCapture(t testing.TB, e *End, cfg CaptureConfig) *Capture {
	t.Helper()
	c, err := e.Capture(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// readN reads until n packets are there (or fails after 5 s).
func readN(t *testing.T, c *Capture, n int) []Packet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []Packet
	for len(got) < n {
		var err error
		if got, err = c.Read(ctx, got); err != nil {
			t.Fatalf("after %d of %d packets: %v", len(got), n, err)
		}
	}
	return got
}

// captured is what a test checks of a packet: its frame id (UDP source
// port) and direction.
type captured struct {
	id  uint16
	dir Direction
}

func summary(t *testing.T, ps []Packet) []captured {
	t.Helper()
	out := make([]captured, 0, len(ps))
	for _, p := range ps {
		if len(p.Data) < 36 || p.Data[12] != 0x08 {
			t.Fatalf("packet %x does not start with the Ethernet header", p.Data)
		}
		out = append(out, captured{binary.BigEndian.Uint16(p.Data[34:]), p.Dir})
	}
	return out
}

func TestCaptureSeesBothDirectionsInOrder(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{Policy: Direct})
	c := startCapture(t, p.A, CaptureConfig{})
	var want []captured
	for i := uint16(0); i < 6; i++ {
		from, dir := p.A, Out
		if i%3 == 2 {
			from, dir = p.B, In
		}
		from.Transmit(udpFrame(100+int(i), i, false))
		want = append(want, captured{i, dir})
	}
	got := readN(t, c, len(want))
	if s := summary(t, got); !equal(s, want) {
		t.Fatalf("captured %v, want %v", s, want)
	}
	for i, pk := range got {
		if pk.Length != 100+i || len(pk.Data) != pk.Length || pk.Dropped {
			t.Fatalf("packet %d: length %d, data %d bytes, dropped %v; want 100+%d, whole, delivered", i, pk.Length, len(pk.Data), pk.Dropped, i)
		}
		pk.Release()
	}
	if c.Captured() != 6 || c.Lost() != 0 {
		t.Fatalf("captured %d lost %d, want 6 and 0", c.Captured(), c.Lost())
	}
}

func equal(a, b []captured) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCaptureDropsCarryTheirReason(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{Policy: Direct})
	plain := startCapture(t, p.A, CaptureConfig{})
	drops := startCapture(t, p.A, CaptureConfig{Drops: true})
	p.A.Transmit(udpFrame(1600, 1, false)) // over MTU + 18
	p.A.SetUp(false)
	p.B.Transmit(udpFrame(100, 2, false)) // towards an End that is down
	p.A.SetUp(true)
	p.A.Transmit(udpFrame(100, 3, false))

	got := readN(t, drops, 3)
	want := []struct {
		c       captured
		dropped bool
		r       DropReason
	}{{captured{1, Out}, true, DropMTU}, {captured{2, In}, true, DropDown}, {captured{3, Out}, false, 0}}
	for i, pk := range got {
		s := summary(t, got[i:i+1])[0]
		if s != want[i].c || pk.Dropped != want[i].dropped || pk.Dropped && pk.Reason != want[i].r {
			t.Fatalf("packet %d: %v dropped %v (%s), want %+v", i, s, pk.Dropped, pk.Reason, want[i])
		}
	}
	if s := summary(t, readN(t, plain, 1)); len(s) != 1 || s[0] != (captured{3, Out}) {
		t.Fatalf("capture without drops got %v, want only frame 3", s)
	}
}

func TestCaptureFullBufferLosesWithoutBlocking(t *testing.T) {
	_, p, _, rb := newTestPair(t, Config{Policy: Direct})
	c := startCapture(t, p.A, CaptureConfig{BufferBytes: MinCaptureBuf})
	const n = 100
	keep := MinCaptureBuf / 2048 // 1514-byte frames are kept in 2 KiB buffers
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			p.A.Transmit(udpFrame(1514, uint16(i), false))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Transmit blocked on a capture nobody reads")
	}
	rb.waitN(t, n)
	if lost := c.Lost(); lost != uint64(n-keep) {
		t.Fatalf("lost %d, want %d (the buffer holds %d)", lost, n-keep, keep)
	}
	got := summary(t, readN(t, c, keep))
	if got[0].id != 0 || got[keep-1].id != uint16(keep-1) {
		t.Fatalf("kept %v, want the first %d frames", got, keep)
	}
	if s := p.A.Stats(); s.OPackets != n {
		t.Fatalf("opackets %d, want %d: the datapath lost frames to the capture", s.OPackets, n)
	}
}

func TestCaptureSnaplen(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{Policy: Direct})
	c := startCapture(t, p.A, CaptureConfig{Snaplen: 64})
	p.A.Transmit(udpFrame(1000, 1, false))
	pk := readN(t, c, 1)[0]
	if pk.Length != 1000 || len(pk.Data) != 64 {
		t.Fatalf("length %d, %d bytes kept; want 1000 and 64", pk.Length, len(pk.Data))
	}
}

func TestTwoCapturesOfOnePair(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{Policy: Direct})
	ca := startCapture(t, p.A, CaptureConfig{})
	cb := startCapture(t, p.B, CaptureConfig{})
	ca2 := startCapture(t, p.A, CaptureConfig{})
	p.A.Transmit(udpFrame(100, 1, false))
	p.B.Transmit(udpFrame(100, 2, false))
	wantA := []captured{{1, Out}, {2, In}}
	wantB := []captured{{1, In}, {2, Out}}
	for _, tc := range []struct {
		c    *Capture
		want []captured
	}{{ca, wantA}, {cb, wantB}, {ca2, wantA}} {
		if got := summary(t, readN(t, tc.c, 2)); !equal(got, tc.want) {
			t.Fatalf("captured %v, want %v", got, tc.want)
		}
	}
}

func TestCaptureDetach(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{Policy: Direct})
	c1 := startCapture(t, p.A, CaptureConfig{})
	c2 := startCapture(t, p.B, CaptureConfig{})
	p.A.Transmit(udpFrame(100, 1, false))
	c1.Close()
	p.A.Transmit(udpFrame(100, 2, false))
	if got := summary(t, readN(t, c1, 1)); got[0].id != 1 {
		t.Fatalf("closed capture kept %v, want frame 1", got)
	}
	if _, err := c1.Read(context.Background(), nil); !errors.Is(err, ErrCaptureClosed) {
		t.Fatalf("read of a closed, empty capture: %v, want ErrCaptureClosed", err)
	}
	if got := summary(t, readN(t, c2, 2)); got[1].id != 2 {
		t.Fatalf("the other capture got %v, want frames 1 and 2", got)
	}
	p.Close() // the pair is deleted: its captures end
	select {
	case <-c2.Done():
	case <-time.After(time.Second):
		t.Fatal("capture still open after Pair.Close")
	}
	if p.A.captures.Load() != nil || p.B.captures.Load() != nil {
		t.Fatal("hook still set with no capture left")
	}
	if _, err := p.A.Capture(CaptureConfig{}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("capture of a closed pair: %v, want ErrNotRunning", err)
	}
}

func TestCaptureConfigBounds(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{})
	for _, cfg := range []CaptureConfig{{Snaplen: -1}, {Snaplen: MaxSnaplen + 1}, {BufferBytes: 1}, {BufferBytes: MaxCaptureBuf + 1}} {
		if _, err := p.A.Capture(cfg); !errors.Is(err, ErrCaptureConfig) {
			t.Errorf("%+v: %v, want ErrCaptureConfig", cfg, err)
		}
	}
	if p.A.captures.Load() != nil {
		t.Fatal("a refused capture was attached")
	}
}

// TestCaptureConcurrent runs traffic both ways through deferred workers
// while captures come and go and a reader drains: for the race detector,
// and every packet read must be whole.
func TestCaptureConcurrent(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{Policy: Deferred, Queues: 2})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, e := range []*End{p.A, p.B} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e.Transmit(udpFrame(200, uint16(i), false))
			}
		}()
	}
	for range 20 {
		c := startCapture(t, p.A, CaptureConfig{Drops: true})
		ps, err := c.Read(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, pk := range ps {
			if pk.Length != 200 || len(pk.Data) != 200 {
				t.Fatalf("torn packet: length %d, %d bytes", pk.Length, len(pk.Data))
			}
			pk.Release()
		}
		c.Close()
	}
	close(stop)
	wg.Wait()
}

// BenchmarkTransmitCapture: a 1514-byte frame through Transmit and the
// flush with nobody capturing (off: the cost of the hook) and with a
// capture attached and read as fast as it comes (on: the copy).
func BenchmarkTransmitCapture(b *testing.B) {
	benchOffOn(b, "off", "on", func(p *Pair) {
		c, err := p.A.Capture(CaptureConfig{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		go func() {
			var ps []Packet
			for {
				var err error
				ps, err = c.Read(context.Background(), ps[:0])
				for i := range ps {
					ps[i].Release()
				}
				if err != nil {
					return
				}
			}
		}()
	})
}

package epair

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// Hand-built frames. Checksums are left zero: nothing here verifies them.

var (
	testDstMAC = []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}
	testSrcMAC = []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}
	testSrc4   = [4]byte{10, 0, 0, 1}
	testDst4   = [4]byte{10, 0, 0, 2}
	testSrc6   = [16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	testDst6   = [16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
)

func mkEther(dst []byte, etype uint16, payload []byte) []byte {
	b := make([]byte, 0, EtherHdrLen+len(payload))
	b = append(b, dst...)
	b = append(b, testSrcMAC...)
	b = binary.BigEndian.AppendUint16(b, etype)
	return append(b, payload...)
}

// mkVLAN wraps payload in one tag with TPID tpid (0x8100 or 0x88a8).
func mkVLAN(tpid, vid, etype uint16, payload []byte) []byte {
	tag := binary.BigEndian.AppendUint16(nil, vid)
	tag = binary.BigEndian.AppendUint16(tag, etype)
	return mkEther(testDstMAC, tpid, append(tag, payload...))
}

// mkIPv4 builds a 20-byte IPv4 header; fragField is flags+offset.
func mkIPv4(src, dst [4]byte, proto uint8, fragField uint16, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[4:], 0x1234) // identification
	binary.BigEndian.PutUint16(h[6:], fragField)
	h[8] = 64
	h[9] = proto
	copy(h[12:], src[:])
	copy(h[16:], dst[:])
	return append(h, payload...)
}

func mkIPv6(src, dst [16]byte, next uint8, payload []byte) []byte {
	h := make([]byte, 40, 40+len(payload))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = next
	h[7] = 64
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
	return append(h, payload...)
}

// mkHopByHop is an 8-byte hop-by-hop options header padded with PadN.
func mkHopByHop(next uint8, payload []byte) []byte {
	h := []byte{next, 0, 1, 4, 0, 0, 0, 0}
	return append(h, payload...)
}

// mkFrag6 is an IPv6 fragment header; offset is in 8-byte units.
func mkFrag6(next uint8, offset uint16, more bool, payload []byte) []byte {
	h := make([]byte, 8, 8+len(payload))
	h[0] = next
	field := offset << 3
	if more {
		field |= 1
	}
	binary.BigEndian.PutUint16(h[2:], field)
	binary.BigEndian.PutUint32(h[4:], 0xabcdef01)
	return append(h, payload...)
}

// mkTCP builds a TCP header of hdrLen bytes (20 plus options) and data.
func mkTCP(sport, dport uint16, hdrLen, data int) []byte {
	b := make([]byte, hdrLen+data)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = byte(hdrLen/4) << 4
	b[13] = 0x18 // PSH|ACK
	for i := hdrLen; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

func mkUDP(sport, dport uint16, data int) []byte {
	b := make([]byte, 8+data)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+data))
	for i := 8; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

func mkARP() []byte {
	p := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	p = append(p, testSrcMAC...)
	p = append(p, testSrc4[:]...)
	p = append(p, make([]byte, 6)...)
	p = append(p, testDst4[:]...)
	return mkEther([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x0806, p)
}

func tcp4Frame(sport, dport uint16, data int) []byte {
	return mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, protoTCP, 0, mkTCP(sport, dport, 20, data)))
}

func udp4Frame(sport, dport uint16, data int) []byte {
	return mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, protoUDP, 0, mkUDP(sport, dport, data)))
}

func tcp6Frame(sport, dport uint16, data int) []byte {
	return mkEther(testDstMAC, etherTypeIPv6, mkIPv6(testSrc6, testDst6, protoTCP, mkTCP(sport, dport, 20, data)))
}

func hbh6Frame(sport, dport uint16, data int) []byte {
	l4 := mkHopByHop(protoTCP, mkTCP(sport, dport, 20, data))
	return mkEther(testDstMAC, etherTypeIPv6, mkIPv6(testSrc6, testDst6, protoHopByHop, l4))
}

func vlan4Frame(sport, dport uint16, data int) []byte {
	ip := mkIPv4(testSrc4, testDst4, protoTCP, 0, mkTCP(sport, dport, 20, data))
	return mkVLAN(etherTypeVLAN, 100, etherTypeIPv4, ip)
}

// frag4Frames returns the first and a later fragment of one UDP datagram.
func frag4Frames() (first, later []byte) {
	first = mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, protoUDP, 0x2000, mkUDP(1111, 2222, 1472)))
	rest := make([]byte, 600)
	for i := range rest {
		rest[i] = byte(i * 13)
	}
	later = mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, protoUDP, 185, rest))
	return first, later
}

// frag6Frames returns the first and a later fragment of one UDP datagram.
func frag6Frames() (first, later []byte) {
	first = mkEther(testDstMAC, etherTypeIPv6,
		mkIPv6(testSrc6, testDst6, protoFragment, mkFrag6(protoUDP, 0, true, mkUDP(1111, 2222, 1400))))
	later = mkEther(testDstMAC, etherTypeIPv6,
		mkIPv6(testSrc6, testDst6, protoFragment, mkFrag6(protoUDP, 176, false, make([]byte, 300))))
	return first, later
}

type namedFrame struct {
	name string
	eth  []byte
}

// sampleFrames are the hand-built frames, also used as fuzz seeds.
func sampleFrames() []namedFrame {
	f4a, f4b := frag4Frames()
	f6a, f6b := frag6Frames()
	return []namedFrame{
		{"ipv4 tcp", tcp4Frame(40000, 80, 100)},
		{"ipv4 tcp options", mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, protoTCP, 0, mkTCP(1, 2, 32, 10)))},
		{"ipv4 udp", udp4Frame(5353, 53, 64)},
		{"ipv6 tcp", tcp6Frame(40000, 443, 100)},
		{"ipv6 hop-by-hop tcp", hbh6Frame(40000, 443, 100)},
		{"vlan ipv4 tcp", vlan4Frame(40000, 80, 100)},
		{"qinq ipv4 udp", mkVLAN(etherTypeQinQ, 7, etherTypeIPv4, mkIPv4(testSrc4, testDst4, protoUDP, 0, mkUDP(1, 2, 3)))},
		{"ipv4 first fragment", f4a},
		{"ipv4 later fragment", f4b},
		{"ipv6 first fragment", f6a},
		{"ipv6 later fragment", f6b},
		{"ipv4 icmp", mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, 1, 0, make([]byte, 8)))},
		{"arp", mkARP()},
	}
}

// gsoTCPv4 is the header a TAP gives a TSO super-frame of tcp4Frame.
var gsoTCPv4 = VnetHdr{
	Flags:      VnetFlagNeedsCsum,
	GSOType:    GSOTCPv4,
	HdrLen:     54,
	GSOSize:    1448,
	CsumStart:  34,
	CsumOffset: 16,
}

func TestParseVnetHdr(t *testing.T) {
	b := []byte{1, 4, 74, 0, 0xa8, 0x05, 54, 0, 16, 0, 0xff, 0xff}
	h, ok := ParseVnetHdr(b)
	want := VnetHdr{Flags: 1, GSOType: GSOTCPv6, HdrLen: 74, GSOSize: 1448, CsumStart: 54, CsumOffset: 16}
	if !ok || h != want {
		t.Errorf("ParseVnetHdr = %+v, %v; want %+v, true", h, ok, want)
	}
	if _, ok := ParseVnetHdr(b[:10]); !ok {
		t.Error("10-byte header rejected")
	}
	if _, ok := ParseVnetHdr(b[:9]); ok {
		t.Error("9-byte header accepted")
	}
}

func TestFlowHashSameFlow(t *testing.T) {
	for _, mk := range []func(uint16, uint16, int) []byte{tcp4Frame, udp4Frame, tcp6Frame, hbh6Frame, vlan4Frame} {
		h1, h2 := FlowHash(mk(1234, 80, 10)), FlowHash(mk(1234, 80, 1000))
		if h1 != h2 {
			t.Errorf("same flow, different payload: %#x != %#x", h1, h2)
		}
		if h1 == 0 {
			t.Errorf("IP flow hashed to 0")
		}
		if FlowHash(mk(1234, 80, 10)) == FlowHash(mk(1235, 80, 10)) {
			t.Errorf("source port ignored")
		}
		if FlowHash(mk(1234, 80, 10)) == FlowHash(mk(1234, 81, 10)) {
			t.Errorf("destination port ignored")
		}
	}
}

func TestFlowHashSeesAddressesAndProto(t *testing.T) {
	base := FlowHash(tcp4Frame(1, 2, 0))
	otherSrc := mkEther(testDstMAC, etherTypeIPv4, mkIPv4([4]byte{10, 0, 0, 9}, testDst4, protoTCP, 0, mkTCP(1, 2, 20, 0)))
	otherDst := mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, [4]byte{10, 0, 0, 9}, protoTCP, 0, mkTCP(1, 2, 20, 0)))
	udp := mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, protoUDP, 0, mkTCP(1, 2, 20, 0)))
	for name, f := range map[string][]byte{"src": otherSrc, "dst": otherDst, "proto": udp} {
		if FlowHash(f) == base {
			t.Errorf("changing %s did not change the hash", name)
		}
	}
	icmp := mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, 1, 0, make([]byte, 8)))
	gre := mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, 47, 0, make([]byte, 8)))
	if FlowHash(icmp) == 0 || FlowHash(icmp) == FlowHash(gre) {
		t.Errorf("non-TCP/UDP protocols: icmp %#x gre %#x", FlowHash(icmp), FlowHash(gre))
	}
}

func TestFlowHashLooksThroughHeaders(t *testing.T) {
	if FlowHash(vlan4Frame(5, 6, 0)) != FlowHash(tcp4Frame(5, 6, 0)) {
		t.Error("VLAN tag changed the flow hash")
	}
	if FlowHash(hbh6Frame(5, 6, 0)) != FlowHash(tcp6Frame(5, 6, 0)) {
		t.Error("hop-by-hop header changed the flow hash")
	}
}

func TestFlowHashFragments(t *testing.T) {
	for name, mk := range map[string]func() ([]byte, []byte){"ipv4": frag4Frames, "ipv6": frag6Frames} {
		first, later := mk()
		if FlowHash(first) != FlowHash(later) {
			t.Errorf("%s: fragments of one datagram hash apart: %#x, %#x", name, FlowHash(first), FlowHash(later))
		}
		if FlowHash(first) == 0 {
			t.Errorf("%s: fragment hashed to 0", name)
		}
	}
	// Don't-fragment is not a fragment: ports still count.
	df := func(sport uint16) []byte {
		return mkEther(testDstMAC, etherTypeIPv4, mkIPv4(testSrc4, testDst4, protoTCP, 0x4000, mkTCP(sport, 80, 20, 0)))
	}
	if FlowHash(df(1)) != FlowHash(tcp4Frame(1, 80, 0)) || FlowHash(df(1)) == FlowHash(df(2)) {
		t.Error("DF bit treated as a fragment")
	}
}

func TestSelectQueueSpreadsFlows(t *testing.T) {
	const queues, flows = 4, 1000
	for name, mk := range map[string]func(uint16, uint16, int) []byte{"ipv4": tcp4Frame, "ipv6": tcp6Frame, "udp": udp4Frame} {
		var count [queues]int
		for i := range flows {
			q := SelectQueue(mk(uint16(20000+i), 443, 0), queues)
			if q < 0 || q >= queues {
				t.Fatalf("%s: queue %d out of range", name, q)
			}
			count[q]++
		}
		for q, n := range count {
			// 250 expected; 150 is about seven standard deviations off.
			if n < 150 {
				t.Errorf("%s: queue %d got %d of %d flows: %v", name, q, n, flows, count)
			}
		}
	}
}

func TestSelectQueueNonIPAndSingleQueue(t *testing.T) {
	arp := mkARP()
	if FlowHash(arp) != 0 || SelectQueue(arp, 4) != 0 {
		t.Errorf("ARP: hash %#x queue %d, want 0, 0", FlowHash(arp), SelectQueue(arp, 4))
	}
	for _, q := range []int{-1, 0, 1} {
		if got := SelectQueue(tcp4Frame(1, 2, 0), q); got != 0 {
			t.Errorf("SelectQueue(_, %d) = %d, want 0", q, got)
		}
	}
	if got := SelectQueue(tcp4Frame(1, 2, 0), 1<<40); got < 0 || got >= 1<<40 {
		t.Errorf("SelectQueue(_, 1<<40) = %d", got)
	}
}

func TestIsMulticast(t *testing.T) {
	for _, tc := range []struct {
		dst  []byte
		want bool
	}{
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, true},
		{[]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, true},
		{[]byte{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}, true},
		{testDstMAC, false},
		{[]byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}, false},
	} {
		if got := IsMulticast(mkEther(tc.dst, etherTypeIPv4, nil)); got != tc.want {
			t.Errorf("IsMulticast(dst %x) = %v, want %v", tc.dst, got, tc.want)
		}
	}
	if IsMulticast([]byte{0xff, 0xff, 0xff}) || IsMulticast(nil) {
		t.Error("short frame reported as multicast")
	}
}

func TestWireLen(t *testing.T) {
	tso4 := tcp4Frame(40000, 80, 9000)
	tso6 := tcp6Frame(40000, 80, 9000)
	vlanOpts := mkVLAN(etherTypeVLAN, 1, etherTypeIPv4, mkIPv4(testSrc4, testDst4, protoTCP, 0, mkTCP(1, 2, 32, 9000)))
	uso := udp4Frame(1, 2, 9000)
	gso6 := gsoTCPv4
	gso6.GSOType = GSOTCPv6
	uso4 := gsoTCPv4
	uso4.GSOType = GSOUDPL4
	for _, tc := range []struct {
		name string
		eth  []byte
		h    VnetHdr
		want int
	}{
		{"no gso", tso4, VnetHdr{}, len(tso4)},
		{"tso4", tso4, gsoTCPv4, 54 + 1448},
		{"tso4 ecn", tso4, withGSOType(gsoTCPv4, GSOTCPv4|GSOECN), 54 + 1448},
		{"tso6", tso6, gso6, 74 + 1448},
		{"vlan tcp options", vlanOpts, gsoTCPv4, 18 + 20 + 32 + 1448},
		{"uso", uso, uso4, 42 + 1448},
		{"ufo", uso, withGSOType(gsoTCPv4, GSOUDP), 42 + 1448},
		{"segment bigger than frame", tcp4Frame(1, 2, 100), gsoTCPv4, 154},
		{"zero gso size", tso4, withGSOSize(gsoTCPv4, 0), len(tso4)},
		{"unknown gso type", tso4, withGSOType(gsoTCPv4, 2), len(tso4)},
		{"empty frame", nil, gsoTCPv4, 0},
	} {
		if got := WireLen(tc.eth, tc.h); got != tc.want {
			t.Errorf("%s: WireLen = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestWireLenCsumFallback covers frames whose headers do not parse, where
// csum_start is the only clue to the header length.
func TestWireLenCsumFallback(t *testing.T) {
	odd := tcp4Frame(40000, 80, 9000)
	binary.BigEndian.PutUint16(odd[12:], 0x88b5) // experimental EtherType
	badStart := gsoTCPv4
	badStart.CsumStart = 9
	noCsum := gsoTCPv4
	noCsum.Flags = 0
	udp := udp4Frame(1, 2, 9000)
	binary.BigEndian.PutUint16(udp[12:], 0x88b5)
	for _, tc := range []struct {
		name string
		eth  []byte
		h    VnetHdr
		want int
	}{
		{"tcp via csum_start", odd, gsoTCPv4, 34 + 20 + 1448},
		{"udp via csum_start", udp, withGSOType(gsoTCPv4, GSOUDPL4), 34 + 8 + 1448},
		{"csum_start inside ethernet header", odd, badStart, len(odd)},
		{"no NEEDS_CSUM", odd, noCsum, len(odd)},
		{"csum_start past end", odd[:30], gsoTCPv4, 30},
	} {
		if got := WireLen(tc.eth, tc.h); got != tc.want {
			t.Errorf("%s: WireLen = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func withGSOType(h VnetHdr, typ uint8) VnetHdr   { h.GSOType = typ; return h }
func withGSOSize(h VnetHdr, size uint16) VnetHdr { h.GSOSize = size; return h }

// checkFrameInvariants runs every parser on eth and checks what must hold
// for any input at all. Shared by the truncation test and the fuzz target.
func checkFrameInvariants(t *testing.T, eth []byte, h VnetHdr) {
	t.Helper()
	if n := WireLen(eth, h); n < 0 || n > len(eth) {
		t.Fatalf("WireLen = %d for a %d-byte frame (hdr %+v)", n, len(eth), h)
	}
	if h.GSOType&^GSOECN == GSONone && WireLen(eth, h) != len(eth) {
		t.Fatalf("non-GSO WireLen = %d, want %d", WireLen(eth, h), len(eth))
	}
	hash := FlowHash(eth)
	if FlowHash(eth) != hash {
		t.Fatal("FlowHash not deterministic")
	}
	for _, q := range []int{-1, 0, 1, 2, 3, 4, 16} {
		got := SelectQueue(eth, q)
		want := 0
		if q > 1 {
			want = int(hash % uint32(q))
		}
		if got != want {
			t.Fatalf("SelectQueue(_, %d) = %d, want %d", q, got, want)
		}
	}
	if IsMulticast(eth) != (len(eth) >= EtherHdrLen && eth[0]&1 == 1) {
		t.Fatalf("IsMulticast wrong for %x", eth[:min(len(eth), 6)])
	}
}

func TestTruncatedFramesNeverPanic(t *testing.T) {
	hdrs := []VnetHdr{{}, gsoTCPv4, withGSOType(gsoTCPv4, GSOUDPL4), withGSOType(gsoTCPv4, GSOTCPv6|GSOECN)}
	for _, f := range sampleFrames() {
		for n := 0; n <= len(f.eth); n++ {
			for _, h := range hdrs {
				checkFrameInvariants(t, f.eth[:n], h)
			}
			ParseVnetHdr(f.eth[:n])
		}
	}
}

func TestFrameFunctionsDoNotAllocate(t *testing.T) {
	frames := sampleFrames()
	tso := tcp4Frame(1, 2, 9000)
	allocs := testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			FlowHash(f.eth)
			SelectQueue(f.eth, 4)
			IsMulticast(f.eth)
		}
		WireLen(tso, gsoTCPv4)
		WireLen(tso[:40], gsoTCPv4)
		ParseVnetHdr(tso)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}

func BenchmarkFlowHash(b *testing.B) {
	for _, f := range []namedFrame{{"ipv4", tcp4Frame(1, 2, 1400)}, {"ipv6", hbh6Frame(1, 2, 1400)}} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				FlowHash(f.eth)
			}
		})
	}
}

func BenchmarkWireLen(b *testing.B) {
	tso := tcp4Frame(1, 2, 9000)
	b.ReportAllocs()
	for b.Loop() {
		WireLen(tso, gsoTCPv4)
	}
}

func ExampleSelectQueue() {
	arp := mkARP()
	first, later := frag4Frames()
	fmt.Println(SelectQueue(arp, 4), SelectQueue(first, 4) == SelectQueue(later, 4))
	// Output: 0 true
}

package epair

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

var (
	podMAC   = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}
	otherMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0c}
	gwMAC    = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}
	podIP4   = netip.MustParseAddr("10.0.0.1")
	podIP6   = netip.MustParseAddr("fd00::1")
	victim4  = netip.MustParseAddr("10.0.0.9")
	victim6  = netip.MustParseAddr("fd00::9")
	gw4      = netip.MustParseAddr("10.0.0.254")
	gw6      = netip.MustParseAddr("fd00::fe")
	podLL    = netip.MustParseAddr("fe80::ff:fe00:a") // EUI-64 of podMAC
	otherLL  = netip.MustParseAddr("fe80::ff:fe00:c")
	any4     = netip.IPv4Unspecified()
	any6     = netip.IPv6Unspecified()
)

func podFilter() *SpoofFilter {
	return NewSpoofFilter(podMAC, []netip.Addr{podIP4, podIP6})
}

// ether builds an Ethernet frame from src to dst of type etype.
func ether(src, dst net.HardwareAddr, etype uint16, payload []byte) []byte {
	b := make([]byte, EtherHdrLen, EtherHdrLen+len(payload))
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], etype)
	return append(b, payload...)
}

// ipv4UDP builds an IPv4 UDP datagram.
func ipv4UDP(src, dst netip.Addr, sport, dport uint16) []byte {
	b := make([]byte, 28)
	b[0], b[9] = 0x45, protoUDP
	binary.BigEndian.PutUint16(b[2:], 28)
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	return b
}

// ipv4ICMP builds an IPv4 ICMP message of type typ (8 bytes), with the
// fragment field frag (flags and offset).
func ipv4ICMP(src, dst netip.Addr, typ uint8, frag uint16) []byte {
	b := make([]byte, 28)
	b[0], b[9] = 0x45, protoICMP
	binary.BigEndian.PutUint16(b[2:], 28)
	binary.BigEndian.PutUint16(b[6:], frag)
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	b[20] = typ
	return b
}

// destOpts prepends n empty destination options headers (8 bytes each)
// to a payload of protocol next, and returns the chain and its first
// header's protocol.
func destOpts(n int, next uint8, payload []byte) (uint8, []byte) {
	for ; n > 0; n-- {
		payload = append([]byte{next, 0, 1, 4, 0, 0, 0, 0}, payload...)
		next = protoDestOpts
	}
	return next, payload
}

// ipv6 builds an IPv6 packet carrying payload as protocol next.
func ipv6(src, dst netip.Addr, next uint8, payload []byte) []byte {
	b := make([]byte, ipv6HdrLen, ipv6HdrLen+len(payload))
	b[0], b[6], b[7] = 0x60, next, 255
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	copy(b[8:24], src.AsSlice())
	copy(b[24:40], dst.AsSlice())
	return append(b, payload...)
}

// ndp builds a neighbor solicitation or advertisement for target with a
// link-layer address option of type opt for lladdr (none if nil).
func ndp(typ uint8, target netip.Addr, opt uint8, lladdr net.HardwareAddr) []byte {
	b := make([]byte, ndpMsgLen)
	b[0] = typ
	copy(b[8:24], target.AsSlice())
	if lladdr != nil {
		b = append(b, opt, 1)
		b = append(b, lladdr...)
	}
	return b
}

// arp builds an ARP message for Ethernet and IPv4.
func arp(op uint16, sha net.HardwareAddr, spa, tpa netip.Addr) []byte {
	b := make([]byte, arpLen)
	binary.BigEndian.PutUint16(b[0:], 1)
	binary.BigEndian.PutUint16(b[2:], etherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:14], sha)
	copy(b[14:18], spa.AsSlice())
	copy(b[24:28], tpa.AsSlice())
	return b
}

var bcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

type spoofCase struct {
	name string
	eth  []byte
	want SpoofReason
}

func spoofCases() []spoofCase {
	eth4 := func(src net.HardwareAddr, p []byte) []byte { return ether(src, gwMAC, etherTypeIPv4, p) }
	eth6 := func(p []byte) []byte { return ether(podMAC, gwMAC, etherTypeIPv6, p) }
	ethARP := func(p []byte) []byte { return ether(podMAC, bcastMAC, etherTypeARP, p) }
	icmp6 := func(src, dst netip.Addr, m []byte) []byte { return eth6(ipv6(src, dst, protoICMPv6, m)) }
	vlan := ether(podMAC, gwMAC, etherTypeVLAN, append([]byte{0, 5, 0x08, 0}, ipv4UDP(podIP4, gw4, 1, 2)...))
	echo := []byte{128, 0, 0, 0, 0, 1, 0, 1}
	ra := append([]byte{icmpv6RA, 0, 0, 0, 64, 0, 0x07, 0x08}, make([]byte, 8)...)
	redirect6 := append([]byte{icmpv6Redirect, 0, 0, 0, 0, 0, 0, 0}, append(gw6.AsSlice(), victim6.AsSlice()...)...)
	rs := []byte{133, 0, 0, 0, 0, 0, 0, 0}
	allNodes := netip.MustParseAddr("ff02::1")
	hiddenNext, hiddenRA := destOpts(1, protoICMPv6, ra)
	longNext, longChain := destOpts(maxIPv6ExtHeaders+1, protoICMPv6, ra)
	return []spoofCase{
		// IPv4
		{"ipv4 honest", eth4(podMAC, ipv4UDP(podIP4, gw4, 1000, 53)), SpoofNone},
		{"ipv4 forged source IP", eth4(podMAC, ipv4UDP(victim4, gw4, 1000, 53)), SpoofIP},
		{"ipv4 forged source MAC", eth4(otherMAC, ipv4UDP(podIP4, gw4, 1000, 53)), SpoofMAC},
		{"dhcp discover from 0.0.0.0", ether(podMAC, bcastMAC, etherTypeIPv4, ipv4UDP(any4, netip.IPv4Unspecified(), 68, 67)), SpoofNone},
		{"0.0.0.0 not DHCP", eth4(podMAC, ipv4UDP(any4, gw4, 1000, 53)), SpoofIP},
		{"0.0.0.0 to DHCP client port", eth4(podMAC, ipv4UDP(any4, gw4, 67, 68)), SpoofIP},
		{"ipv4 header cut short", eth4(podMAC, ipv4UDP(podIP4, gw4, 1, 2)[:19]), SpoofIP},
		{"vlan tagged", vlan, SpoofVLAN},
		{"short frame", []byte{1, 2, 3}, SpoofMAC},
		{"other ethertype", ether(podMAC, gwMAC, 0x88cc, make([]byte, 46)), SpoofNone},
		// IPv6
		{"ipv6 honest", eth6(ipv6(podIP6, gw6, protoUDP, make([]byte, 8))), SpoofNone},
		{"ipv6 from link-local", icmp6(podLL, gw6, echo), SpoofNone},
		{"ipv6 forged source IP", eth6(ipv6(victim6, gw6, protoUDP, make([]byte, 8))), SpoofIP},
		{"ipv6 forged link-local", icmp6(otherLL, gw6, echo), SpoofIP},
		{"ipv6 :: not ICMPv6", eth6(ipv6(any6, gw6, protoUDP, make([]byte, 8))), SpoofIP},
		{"ipv6 header cut short", eth6(ipv6(podIP6, gw6, protoUDP, nil)[:39]), SpoofIP},
		// NDP
		{"DAD NS from ::", icmp6(any6, netip.MustParseAddr("ff02::1:ff00:1"), ndp(icmpv6NS, podIP6, 0, nil)), SpoofNone},
		{"NS for gateway", icmp6(podLL, gw6, ndp(icmpv6NS, gw6, ndpOptSrcLL, podMAC)), SpoofNone},
		{"NS forged source lladdr", icmp6(podLL, gw6, ndp(icmpv6NS, gw6, ndpOptSrcLL, otherMAC)), SpoofNDP},
		{"NA honest", icmp6(podIP6, gw6, ndp(icmpv6NA, podIP6, ndpOptTgtLL, podMAC)), SpoofNone},
		{"NA for link-local", icmp6(podLL, gw6, ndp(icmpv6NA, podLL, ndpOptTgtLL, podMAC)), SpoofNone},
		{"NA claims victim", icmp6(podIP6, gw6, ndp(icmpv6NA, victim6, ndpOptTgtLL, podMAC)), SpoofNDP},
		{"NA forged target lladdr", icmp6(podIP6, gw6, ndp(icmpv6NA, podIP6, ndpOptTgtLL, otherMAC)), SpoofNDP},
		{"NA from :: claims victim", icmp6(any6, gw6, ndp(icmpv6NA, victim6, 0, nil)), SpoofNDP},
		{"NA cut short", icmp6(podIP6, gw6, ndp(icmpv6NA, podIP6, 0, nil)[:20]), SpoofNDP},
		{"NA zero-length option", icmp6(podIP6, gw6, append(ndp(icmpv6NA, podIP6, 0, nil), 2, 0)), SpoofNDP},
		// ARP
		{"arp request honest", ethARP(arp(1, podMAC, podIP4, gw4)), SpoofNone},
		{"arp reply honest", ethARP(arp(2, podMAC, podIP4, gw4)), SpoofNone},
		{"arp probe from 0.0.0.0", ethARP(arp(1, podMAC, any4, podIP4)), SpoofNone},
		{"gratuitous arp honest", ethARP(arp(1, podMAC, podIP4, podIP4)), SpoofNone},
		{"gratuitous arp claims victim", ethARP(arp(1, podMAC, victim4, victim4)), SpoofARP},
		{"arp reply claims victim", ethARP(arp(2, podMAC, victim4, gw4)), SpoofARP},
		{"arp reply from 0.0.0.0", ethARP(arp(2, podMAC, any4, gw4)), SpoofARP},
		{"arp forged sender MAC", ethARP(arp(2, otherMAC, podIP4, gw4)), SpoofARP},
		{"arp cut short", ethARP(arp(1, podMAC, podIP4, gw4)[:27]), SpoofARP},
		{"arp not IPv4", ethARP(append([]byte{0, 1, 0x86, 0xdd, 6, 16}, make([]byte, 22)...)), SpoofARP},
		// Router advertisements and redirects
		{"RA from link-local", icmp6(podLL, allNodes, ra), SpoofRA},
		{"RA from ::", icmp6(any6, allNodes, ra), SpoofRA},
		{"RA behind a destination options header", eth6(ipv6(podLL, allNodes, hiddenNext, hiddenRA)), SpoofRA},
		{"RA behind too long an extension chain", eth6(ipv6(podLL, allNodes, longNext, longChain)), SpoofIP},
		{"ICMPv6 redirect", icmp6(podLL, otherLL, redirect6), SpoofRA},
		{"router solicitation honest", icmp6(podLL, netip.MustParseAddr("ff02::2"), rs), SpoofNone},
		{"ICMPv4 echo honest", eth4(podMAC, ipv4ICMP(podIP4, gw4, 8, 0)), SpoofNone},
		{"ICMPv4 redirect", eth4(podMAC, ipv4ICMP(podIP4, victim4, icmpRedirect, 0)), SpoofRA},
		{"ICMPv4 redirect, first fragment", eth4(podMAC, ipv4ICMP(podIP4, victim4, icmpRedirect, 0x2000)), SpoofRA},
		{"ICMPv4 later fragment", eth4(podMAC, ipv4ICMP(podIP4, victim4, icmpRedirect, 0x2001)), SpoofNone},
		{"ICMPv4 redirect from the victim", eth4(podMAC, ipv4ICMP(victim4, gw4, icmpRedirect, 0)), SpoofIP},
		{"ICMPv4 cut before its type", eth4(podMAC, ipv4ICMP(podIP4, gw4, 8, 0)[:20]), SpoofIP},
	}
}

func TestSpoofFilterRules(t *testing.T) {
	f := podFilter()
	for _, c := range spoofCases() {
		if got := f.Check(c.eth); got != c.want {
			t.Errorf("%s: Check = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestEUI64LinkLocal(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	if got, want := EUI64LinkLocal(mac), netip.MustParseAddr("fe80::5054:ff:fe12:3456"); got != want {
		t.Fatalf("EUI64LinkLocal = %v, want %v", got, want)
	}
}

func TestSpoofFilterUnmapsIPv4(t *testing.T) {
	f := NewSpoofFilter(podMAC, []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")})
	eth := ether(podMAC, gwMAC, etherTypeIPv4, ipv4UDP(podIP4, gw4, 1, 2))
	if got := f.Check(eth); got != SpoofNone {
		t.Fatalf("Check = %d, want pass", got)
	}
}

// transmitEth sends eth from e with a virtio-net header.
func transmitEth(e *End, eth []byte) {
	f := GetFrame()
	f.Data = f.Buf()[:VnetHdrLen+len(eth)]
	clear(f.Data[:VnetHdrLen])
	copy(f.Data[VnetHdrLen:], eth)
	e.Transmit(f)
}

func TestTransmitDropsSpoofedAndCountsByReason(t *testing.T) {
	_, p, _, _ := newTestPair(t, Config{Policy: Direct})
	p.B.sink = nopSink{}
	p.A.SetSpoofFilter(podFilter())
	want := map[SpoofReason]uint64{}
	passed := uint64(0)
	for _, c := range spoofCases() {
		if len(c.eth) < EtherHdrLen {
			continue // the MTU rule's short frames are not the filter's
		}
		transmitEth(p.A, c.eth)
		if c.want == SpoofNone {
			passed++
		}
		want[c.want]++
	}
	s := p.A.Stats()
	got := map[SpoofReason]uint64{SpoofNone: s.OPackets, SpoofMAC: s.SpoofMAC,
		SpoofIP: s.SpoofIP, SpoofARP: s.SpoofARP, SpoofNDP: s.SpoofNDP, SpoofVLAN: s.SpoofVLAN, SpoofRA: s.SpoofRA}
	for r := SpoofNone; r < numSpoofReasons; r++ {
		if got[r] != want[r] {
			t.Errorf("reason %d: counted %d, want %d", r, got[r], want[r])
		}
	}
	if s.OErrors != 0 || p.B.Stats().IPackets != passed {
		t.Errorf("oerrors %d, peer got %d: want 0 and %d", s.OErrors, p.B.Stats().IPackets, passed)
	}
	// The b end has no filter: the forged frame goes through from there.
	transmitEth(p.B, ether(otherMAC, gwMAC, etherTypeIPv4, ipv4UDP(victim4, gw4, 1, 2)))
	if p.B.Stats().OPackets != 1 {
		t.Errorf("b end without filter: opackets %d, want 1", p.B.Stats().OPackets)
	}
	// Off again: the forged frame passes.
	p.A.SetSpoofFilter(nil)
	transmitEth(p.A, ether(podMAC, gwMAC, etherTypeIPv4, ipv4UDP(victim4, gw4, 1, 2)))
	if s2 := p.A.Stats(); s2.OPackets != s.OPackets+1 || s2.SpoofIP != s.SpoofIP {
		t.Errorf("filter off: opackets %d spoof_ip %d, want %d and %d", s2.OPackets, s2.SpoofIP, s.OPackets+1, s.SpoofIP)
	}
}

func TestSpoofFilterAllocatesNothing(t *testing.T) {
	f := podFilter()
	for _, c := range spoofCases() {
		if a := testing.AllocsPerRun(100, func() { f.Check(c.eth) }); a != 0 {
			t.Errorf("%s: %v allocations", c.name, a)
		}
	}
	_, p, _, _ := newTestPair(t, Config{Policy: Direct})
	p.B.sink = nopSink{}
	p.A.SetSpoofFilter(f)
	tmpl := udpFrame(64, 1, false)
	defer tmpl.Release()
	allocs := testing.AllocsPerRun(1000, func() {
		g := GetFrame()
		g.Data = g.Buf()[:len(tmpl.Data)]
		copy(g.Data, tmpl.Data)
		p.A.Transmit(g)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per filtered frame, want 0", allocs)
	}
	if s := p.A.Stats(); s.OPackets == 0 || s.SpoofIP+s.SpoofMAC != 0 {
		t.Fatalf("honest frames not passed: %+v", s)
	}
}

func FuzzSpoofFilterCheck(f *testing.F) {
	for _, c := range spoofCases() {
		f.Add(c.eth)
	}
	sf := podFilter()
	f.Fuzz(func(t *testing.T, eth []byte) {
		r := sf.Check(eth)
		if r < SpoofNone || r >= numSpoofReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r == SpoofNone && (len(eth) < EtherHdrLen || [6]byte(eth[6:12]) != [6]byte(podMAC)) {
			t.Fatalf("passed a frame not from the pod's MAC")
		}
	})
}

// BenchmarkTransmitSpoofFilter is BenchmarkTransmitFlush's direct, bounded
// case with the filter off and on, for an honest IPv4 UDP frame.
func BenchmarkTransmitSpoofFilter(b *testing.B) {
	benchOffOn(b, "off", "on", func(p *Pair) { p.A.SetSpoofFilter(podFilter()) })
}

// BenchmarkSpoofFilterCheck is the filter alone, on the honest frames.
func BenchmarkSpoofFilterCheck(b *testing.B) {
	f := podFilter()
	for _, c := range spoofCases() {
		if c.want != SpoofNone || (c.name != "ipv4 honest" && c.name != "ipv6 honest" && c.name != "NA honest" && c.name != "arp reply honest") {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if f.Check(c.eth) != SpoofNone {
					b.Fatal("dropped")
				}
			}
		})
	}
}

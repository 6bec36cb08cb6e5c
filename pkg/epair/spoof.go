package epair

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// SpoofReason says why the anti-spoofing filter dropped a frame.
type SpoofReason int

// The reasons, each with its own counter in Stats.
const (
	// SpoofNone: the frame passes.
	SpoofNone SpoofReason = iota
	// SpoofMAC: the source MAC is not the pod's (or the frame is too short
	// to have one).
	SpoofMAC
	// SpoofIP: the IPv4 or IPv6 source address is not the pod's, or the IP
	// header is cut short.
	SpoofIP
	// SpoofARP: an ARP message whose sender hardware or protocol address
	// is not the pod's.
	SpoofARP
	// SpoofNDP: a neighbor solicitation or advertisement that claims an
	// address, or a link-layer address, that is not the pod's.
	SpoofNDP
	// SpoofVLAN: the frame carries an 802.1Q or 802.1ad tag; a pod sits on
	// an access port and has no business tagging.
	SpoofVLAN
	// SpoofRA: an ICMPv6 router advertisement or redirect, or an ICMPv4
	// redirect: a pod is no router, and these would move its neighbours'
	// (or the host's) routes to it.
	SpoofRA
	numSpoofReasons
)

const (
	etherTypeARP = 0x0806

	arpLen       = 28 // ARP for Ethernet and IPv4
	arpOpRequest = 1

	protoICMP   = 1
	protoICMPv6 = 58

	icmpRedirect     = 5
	icmpv6RA         = 134
	icmpv6NS         = 135
	icmpv6NA         = 136
	icmpv6Redirect   = 137
	ipv4FragOffMask  = 0x1fff
	ipv4FragFieldOff = 6
	ndpMsgLen        = 24 // type, code, checksum, flags/reserved, target
	ndpOptSrcLL      = 1
	ndpOptTgtLL      = 2
	dhcpClient       = 68
	dhcpServer       = 67
	ipv4SrcOff       = 12
	ipv6SrcOff       = 8
	ipv6AddrLen      = 16
	etherAddrLen     = 6
)

// SpoofFilter is the anti-spoofing filter of the End a pod sends from: it
// knows the pod's MAC and addresses (ADD's result) and drops what claims
// anything else. It is immutable once made, so Transmit reads it without a
// lock; an End swaps it whole with SetSpoofFilter.
//
// The pod's IPv6 link-local address is allowed without being listed: the
// kernel derives it from the MAC by EUI-64 (addr_gen_mode 0, the default),
// so fe80::/64 with the EUI-64 interface id of the MAC is the pod's. A pod
// that uses stable-privacy or random link-locals (addr_gen_mode 2 or 3)
// must list them, or turn the filter off.
type SpoofFilter struct {
	mac       [etherAddrLen]byte
	linkLocal netip.Addr
	addrs     []netip.Addr // unmapped IPv4 and IPv6 addresses
}

// NewSpoofFilter makes a filter that lets mac and addrs through. IPv4
// addresses given in IPv4-mapped IPv6 form are unmapped.
func NewSpoofFilter(mac net.HardwareAddr, addrs []netip.Addr) *SpoofFilter {
	f := &SpoofFilter{}
	copy(f.mac[:], mac)
	f.linkLocal = EUI64LinkLocal(mac)
	for _, a := range addrs {
		f.addrs = append(f.addrs, a.Unmap().WithZone(""))
	}
	return f
}

// EUI64LinkLocal returns fe80::/64 with the modified EUI-64 interface id of
// mac (RFC 4291 appendix A): the link-local address Linux gives an
// interface with that MAC by default.
func EUI64LinkLocal(mac net.HardwareAddr) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	if len(mac) == etherAddrLen {
		b[8], b[9], b[10] = mac[0]^0x02, mac[1], mac[2]
		b[11], b[12] = 0xff, 0xfe
		b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	}
	return netip.AddrFrom16(b)
}

// MAC returns the MAC address the filter allows.
func (f *SpoofFilter) MAC() net.HardwareAddr { return net.HardwareAddr(f.mac[:]) }

// Addrs returns the addresses the filter allows, link-local not included.
func (f *SpoofFilter) Addrs() []netip.Addr { return append([]netip.Addr(nil), f.addrs...) }

// Check returns why eth (an Ethernet frame, no virtio-net header) must be
// dropped, or SpoofNone. It is bounds-checked, never panics and does not
// allocate. Ethernet types other than IPv4, IPv6 and ARP pass once the
// source MAC is right: they claim no IP address.
func (f *SpoofFilter) Check(eth []byte) SpoofReason {
	if len(eth) < EtherHdrLen || [etherAddrLen]byte(eth[6:12]) != f.mac {
		return SpoofMAC
	}
	switch binary.BigEndian.Uint16(eth[12:14]) {
	case etherTypeVLAN, etherTypeQinQ:
		return SpoofVLAN
	case etherTypeIPv4:
		return f.checkIPv4(eth)
	case etherTypeIPv6:
		return f.checkIPv6(eth)
	case etherTypeARP:
		return f.checkARP(eth)
	}
	return SpoofNone
}

func (f *SpoofFilter) allowed(a netip.Addr) bool {
	for _, b := range f.addrs {
		if a == b {
			return true
		}
	}
	return false
}

// allowed6 adds the pod's link-local address to the allowed ones.
func (f *SpoofFilter) allowed6(a netip.Addr) bool {
	return a == f.linkLocal || f.allowed(a)
}

// checkIPv4 allows the pod's addresses, and 0.0.0.0 only for DHCP (UDP
// from port 68 to 67), the one thing a host sends before it has an address.
// ICMP redirects are dropped whatever their source.
func (f *SpoofFilter) checkIPv4(eth []byte) SpoofReason {
	info, ok := parseIPv4(eth, EtherHdrLen)
	if !ok {
		return SpoofIP
	}
	src := netip.AddrFrom4([4]byte(eth[info.l3+ipv4SrcOff:]))
	if !f.allowed(src) && !(src.IsUnspecified() && isDHCPClient(eth, info)) {
		return SpoofIP
	}
	// The ICMP type is in the fragment at offset 0 only; the kernel drops
	// overlapping fragments, so a later one cannot rewrite it.
	if info.proto == protoICMP && binary.BigEndian.Uint16(eth[info.l3+ipv4FragFieldOff:])&ipv4FragOffMask == 0 {
		return checkICMPv4(eth[info.l4:])
	}
	return SpoofNone
}

// checkICMPv4 drops redirects, and a first fragment too short to show its
// type, which could be one.
func checkICMPv4(icmp []byte) SpoofReason {
	switch {
	case len(icmp) < 1:
		return SpoofIP
	case icmp[0] == icmpRedirect:
		return SpoofRA
	}
	return SpoofNone
}

func isDHCPClient(eth []byte, info ipInfo) bool {
	if info.proto != protoUDP || info.frag {
		return false
	}
	ports, ok := l4Ports(eth, info)
	return ok && ports == dhcpClient<<16|dhcpServer
}

// checkIPv6 allows the pod's addresses and its link-local, and :: only for
// ICMPv6: DAD's neighbor solicitations and the MLD reports sent before the
// link-local address is ready (RFC 3590). ICMPv6 messages are then checked
// for what they claim. A packet whose extension headers hide the transport
// header (cut short, or a chain longer than the walk) is dropped: it could
// hide any of them.
func (f *SpoofFilter) checkIPv6(eth []byte) SpoofReason {
	info, ok := parseIPv6(eth, EtherHdrLen)
	if !ok || !info.l4ok {
		return SpoofIP
	}
	src := netip.AddrFrom16([16]byte(eth[info.l3+ipv6SrcOff:]))
	icmp := info.proto == protoICMPv6
	if !f.allowed6(src) && !(src.IsUnspecified() && icmp) {
		return SpoofIP
	}
	// NDP, router advertisements and redirects included, is never
	// fragmented (RFC 6980: receivers drop such messages), and a later
	// fragment's bytes are no ICMPv6 header to judge.
	if icmp && !info.frag {
		return f.checkICMPv6(eth[info.l4:])
	}
	return SpoofNone
}

// checkICMPv6 checks an ICMPv6 message: router advertisements and
// redirects are dropped; an advertisement must be for one of the pod's
// addresses, and the link-layer address options of solicitations and
// advertisements must carry the pod's MAC. A solicitation's target is the
// address asked about, anyone's, so it is not checked. Other ICMPv6
// messages (router solicitations among them) pass.
func (f *SpoofFilter) checkICMPv6(icmp []byte) SpoofReason {
	if len(icmp) < 1 {
		return SpoofNone
	}
	switch icmp[0] {
	case icmpv6RA, icmpv6Redirect:
		return SpoofRA
	case icmpv6NS, icmpv6NA:
	default:
		return SpoofNone
	}
	if len(icmp) < ndpMsgLen {
		return SpoofNDP
	}
	if icmp[0] == icmpv6NA && !f.allowed6(netip.AddrFrom16([16]byte(icmp[8:24]))) {
		return SpoofNDP
	}
	if !f.ndpOptionsOK(icmp[ndpMsgLen:]) {
		return SpoofNDP
	}
	return SpoofNone
}

// ndpOptionsOK walks the options (RFC 4861 4.6) and checks every source or
// target link-layer address option. A zero-length option is invalid (the
// receiver drops the message), and so is one cut short.
func (f *SpoofFilter) ndpOptionsOK(opts []byte) bool {
	for len(opts) > 0 {
		if len(opts) < 2 || opts[1] == 0 || len(opts) < int(opts[1])*8 {
			return false
		}
		n := int(opts[1]) * 8
		if t := opts[0]; t == ndpOptSrcLL || t == ndpOptTgtLL {
			if n < 2+etherAddrLen || [etherAddrLen]byte(opts[2:8]) != f.mac {
				return false
			}
		}
		opts = opts[n:]
	}
	return true
}

// checkARP requires the pod's MAC as sender hardware address and one of
// its IPv4 addresses as sender protocol address; 0.0.0.0 only in a request
// (an ARP probe, RFC 5227). Gratuitous ARP for the pod's own address
// passes; for anyone else's it is what this rule is for.
func (f *SpoofFilter) checkARP(eth []byte) SpoofReason {
	arp := eth[EtherHdrLen:]
	if len(arp) < arpLen {
		return SpoofARP
	}
	// htype Ethernet, ptype IPv4, hlen 6, plen 4: all a pod's ARP is.
	if binary.BigEndian.Uint32(arp[0:4]) != 1<<16|etherTypeIPv4 || arp[4] != etherAddrLen || arp[5] != 4 {
		return SpoofARP
	}
	if [etherAddrLen]byte(arp[8:14]) != f.mac {
		return SpoofARP
	}
	spa := netip.AddrFrom4([4]byte(arp[14:18]))
	probe := spa.IsUnspecified() && binary.BigEndian.Uint16(arp[6:8]) == arpOpRequest
	if !probe && !f.allowed(spa) {
		return SpoofARP
	}
	return SpoofNone
}

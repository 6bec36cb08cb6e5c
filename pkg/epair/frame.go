package epair

import "encoding/binary"

// Lengths of the headers a frame from an IFF_VNET_HDR TAP starts with.
const (
	// VnetHdrLen is the virtio-net header with num_buffers, the size this
	// project sets with TUNSETVNETHDRSZ.
	VnetHdrLen = 12
	// EtherHdrLen is an untagged Ethernet header.
	EtherHdrLen = 14
	// EtherVLANHdrLen is an Ethernet header with one 802.1Q tag; if_epair
	// allows frames of mtu + EtherVLANHdrLen.
	EtherVLANHdrLen = 18
)

// virtio-net GSO types (VIRTIO_NET_HDR_GSO_*), found in VnetHdr.GSOType.
const (
	// GSONone marks an ordinary frame.
	GSONone = 0
	// GSOTCPv4 marks a TCP over IPv4 super-frame (TSO).
	GSOTCPv4 = 1
	// GSOUDP marks a UDP super-datagram to be IP-fragmented (UFO).
	GSOUDP = 3
	// GSOTCPv6 marks a TCP over IPv6 super-frame (TSO6).
	GSOTCPv6 = 4
	// GSOUDPL4 marks a UDP super-frame split into UDP datagrams (USO).
	GSOUDPL4 = 5
	// GSOECN is or-ed into the type when the TCP flow uses ECN.
	GSOECN = 0x80
)

// VnetFlagNeedsCsum (VIRTIO_NET_HDR_F_NEEDS_CSUM) says the L4 checksum
// starting at CsumStart is still to be computed.
const VnetFlagNeedsCsum = 1

// vnetHdrMinLen is struct virtio_net_hdr without num_buffers.
const vnetHdrMinLen = 10

// EtherTypes, IP protocol numbers and IPv6 extension headers we look at.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8

	protoHopByHop = 0
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoDestOpts = 60

	ipv4MinHdrLen = 20
	ipv6HdrLen    = 40
	tcpMinHdrLen  = 20
	udpHdrLen     = 8

	// maxIPv6ExtHeaders bounds the extension header walk; real traffic has
	// one or two, and a long chain is not worth the time on the hot path.
	maxIPv6ExtHeaders = 8
)

// flowHashSeed is a fixed seed so a flow maps to the same queue in every
// process and across restarts; queue choice is about ordering, not secrecy.
const flowHashSeed = 0x65706169 // "epai"

// VnetHdr is the part of struct virtio_net_hdr that describes a frame.
// num_buffers is left out: it only matters for mergeable receive buffers.
type VnetHdr struct {
	Flags, GSOType                         uint8
	HdrLen, GSOSize, CsumStart, CsumOffset uint16
}

// ParseVnetHdr decodes the little-endian virtio-net header at the start of
// b. It returns false if b is shorter than the 10-byte header.
func ParseVnetHdr(b []byte) (VnetHdr, bool) {
	if len(b) < vnetHdrMinLen {
		return VnetHdr{}, false
	}
	return VnetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:4]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:6]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:8]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:10]),
	}, true
}

// ipInfo says where the IP and transport headers of a frame are.
type ipInfo struct {
	l3      int   // offset of the IP header
	l4      int   // offset of the transport header, if l4ok
	version uint8 // 4 or 6
	proto   uint8 // transport protocol, if l4ok
	frag    bool  // the packet is an IP fragment
	l4ok    bool  // proto and l4 are known
}

// etherPayload returns the EtherType and offset of the payload, looking
// through one 802.1Q or 802.1ad tag.
func etherPayload(eth []byte) (etype uint16, off int, ok bool) {
	if len(eth) < EtherHdrLen {
		return 0, 0, false
	}
	etype = binary.BigEndian.Uint16(eth[12:14])
	if etype != etherTypeVLAN && etype != etherTypeQinQ {
		return etype, EtherHdrLen, true
	}
	if len(eth) < EtherVLANHdrLen {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(eth[16:18]), EtherVLANHdrLen, true
}

// parseIP locates the IP header and, where it can, the transport header.
// It fails for non-IP frames and for IP headers that are cut short.
func parseIP(eth []byte) (ipInfo, bool) {
	etype, off, ok := etherPayload(eth)
	if !ok {
		return ipInfo{}, false
	}
	switch etype {
	case etherTypeIPv4:
		return parseIPv4(eth, off)
	case etherTypeIPv6:
		return parseIPv6(eth, off)
	}
	return ipInfo{}, false
}

func parseIPv4(eth []byte, off int) (ipInfo, bool) {
	if len(eth)-off < ipv4MinHdrLen || eth[off]>>4 != 4 {
		return ipInfo{}, false
	}
	ihl := int(eth[off]&0x0f) * 4
	if ihl < ipv4MinHdrLen || len(eth)-off < ihl {
		return ipInfo{}, false
	}
	fragField := binary.BigEndian.Uint16(eth[off+6 : off+8])
	return ipInfo{
		l3:      off,
		l4:      off + ihl,
		version: 4,
		proto:   eth[off+9],
		// More-fragments set or a non-zero offset: any fragment.
		frag: fragField&0x3fff != 0,
		l4ok: true,
	}, true
}

func parseIPv6(eth []byte, off int) (ipInfo, bool) {
	if len(eth)-off < ipv6HdrLen || eth[off]>>4 != 6 {
		return ipInfo{}, false
	}
	info := ipInfo{l3: off, version: 6}
	walkIPv6Ext(eth, &info, eth[off+6], off+ipv6HdrLen)
	return info, true
}

// walkIPv6Ext skips hop-by-hop, routing, destination-options and fragment
// headers to find the transport header. If the chain is cut short or too
// long, info.l4ok stays false and only the addresses can be used.
func walkIPv6Ext(eth []byte, info *ipInfo, next uint8, off int) {
	for range maxIPv6ExtHeaders {
		var extLen int
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts:
			if len(eth)-off < 2 {
				return
			}
			extLen = (int(eth[off+1]) + 1) * 8
		case protoFragment:
			info.frag = true
			extLen = 8
		default:
			info.proto, info.l4, info.l4ok = next, off, true
			return
		}
		if len(eth)-off < extLen {
			return
		}
		next = eth[off]
		off += extLen
	}
}

// ipAddrWords puts the source and destination addresses into key as
// 32-bit words and returns how many it used (2 or 8).
func ipAddrWords(key *[10]uint32, eth []byte, info ipInfo) int {
	// IPv4 addresses start at byte 12, IPv6 ones at byte 8; both are
	// followed directly by the destination address.
	start, words := info.l3+12, 2
	if info.version == 6 {
		start, words = info.l3+8, 8
	}
	for i := range words {
		key[i] = binary.BigEndian.Uint32(eth[start+4*i:])
	}
	return words
}

// l4Ports returns source and destination port packed into one word.
func l4Ports(eth []byte, info ipInfo) (uint32, bool) {
	if info.proto != protoTCP && info.proto != protoUDP {
		return 0, false
	}
	if len(eth)-info.l4 < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(eth[info.l4:]), true
}

// FlowHash hashes the flow a frame belongs to: addresses, protocol and
// ports for TCP and UDP over IPv4 or IPv6 (also behind one VLAN tag).
// Fragments hash their addresses only, because later fragments carry no
// ports and all fragments of a datagram must take the same queue. Other IP
// protocols hash addresses and protocol. Non-IP frames hash to 0.
// It does not allocate and never panics.
func FlowHash(eth []byte) uint32 {
	info, ok := parseIP(eth)
	if !ok {
		return 0
	}
	var key [10]uint32
	n := ipAddrWords(&key, eth, info)
	if info.frag || !info.l4ok {
		return JenkinsHash32(key[:n], flowHashSeed)
	}
	key[n] = uint32(info.proto)
	n++
	if ports, ok := l4Ports(eth, info); ok {
		key[n] = ports
		n++
	}
	return JenkinsHash32(key[:n], flowHashSeed)
}

// SelectQueue picks the receive queue for a frame, like
// epair_select_queue(): 0 when there is one queue or the frame is not IP,
// otherwise FlowHash modulo queues, so one flow always takes one queue.
func SelectQueue(eth []byte, queues int) int {
	if queues <= 1 {
		return 0
	}
	// uint64 so a queue count above 1<<32 cannot truncate to a zero divisor.
	return int(uint64(FlowHash(eth)) % uint64(queues))
}

// IsMulticast reports whether the destination MAC has the group bit set,
// which covers broadcast too; if_epair counts such frames in OMCASTS.
// Frames shorter than an Ethernet header are not multicast.
func IsMulticast(eth []byte) bool {
	return len(eth) >= EtherHdrLen && eth[0]&0x01 != 0
}

// WireLen returns the length of the largest frame that will be put on the
// wire for eth: len(eth) for an ordinary frame, and for a GSO super-frame
// the Ethernet, IP and transport header lengths plus h.GSOSize (capped at
// len(eth)). This is what the MTU rule is checked against.
//
// If the headers cannot be parsed it trusts h.CsumStart when NeedsCsum is
// set; failing that, or for unknown GSO types or a zero GSO size, it
// returns len(eth), the safe upper bound. It never panics.
func WireLen(eth []byte, h VnetHdr) int {
	if h.GSOType&^GSOECN == GSONone || h.GSOSize == 0 || !knownGSO(h.GSOType) {
		return len(eth)
	}
	hdr, ok := parsedHeaderLen(eth)
	if !ok {
		hdr, ok = csumHeaderLen(eth, h)
	}
	if !ok {
		return len(eth)
	}
	return min(hdr+int(h.GSOSize), len(eth))
}

func knownGSO(gsoType uint8) bool {
	switch gsoType &^ GSOECN {
	case GSOTCPv4, GSOUDP, GSOTCPv6, GSOUDPL4:
		return true
	}
	return false
}

// parsedHeaderLen is the length of all headers up to the segment payload,
// found by parsing Ethernet, IP and TCP or UDP.
func parsedHeaderLen(eth []byte) (int, bool) {
	info, ok := parseIP(eth)
	if !ok || !info.l4ok || info.frag {
		return 0, false
	}
	switch info.proto {
	case protoTCP:
		return tcpHeaderEnd(eth, info.l4)
	case protoUDP:
		return udpHeaderEnd(eth, info.l4)
	}
	return 0, false
}

// csumHeaderLen finds the header length from the checksum offload fields,
// which the sender's stack fills in for every GSO frame: csum_start is
// where the transport header begins.
func csumHeaderLen(eth []byte, h VnetHdr) (int, bool) {
	start := int(h.CsumStart)
	if h.Flags&VnetFlagNeedsCsum == 0 || start < EtherHdrLen || start >= len(eth) {
		return 0, false
	}
	switch h.GSOType &^ GSOECN {
	case GSOTCPv4, GSOTCPv6:
		return tcpHeaderEnd(eth, start)
	case GSOUDP, GSOUDPL4:
		return udpHeaderEnd(eth, start)
	}
	return 0, false
}

// tcpHeaderEnd returns the offset just past the TCP header at off.
func tcpHeaderEnd(eth []byte, off int) (int, bool) {
	if len(eth)-off < tcpMinHdrLen {
		return 0, false
	}
	dataOff := int(eth[off+12]>>4) * 4
	if dataOff < tcpMinHdrLen || len(eth)-off < dataOff {
		return 0, false
	}
	return off + dataOff, true
}

// udpHeaderEnd returns the offset just past the UDP header at off.
func udpHeaderEnd(eth []byte, off int) (int, bool) {
	if len(eth)-off < udpHdrLen {
		return 0, false
	}
	return off + udpHdrLen, true
}

// WireBytes returns the bytes all the frames put on the wire for eth add up
// to: len(eth) for an ordinary frame, and for a GSO super-frame every
// segment with its own copy of the headers. Shaping charges this, so a
// super-frame costs what its segments would. Where WireLen cannot find the
// headers it falls back to len(eth), the same way.
func WireBytes(eth []byte, h VnetHdr) int {
	seg := WireLen(eth, h)
	if seg >= len(eth) {
		return len(eth)
	}
	hdr := seg - int(h.GSOSize)
	payload := len(eth) - hdr
	segs := (payload + int(h.GSOSize) - 1) / int(h.GSOSize)
	return len(eth) + (segs-1)*hdr
}

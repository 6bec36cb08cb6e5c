package epair

import "sync/atomic"

// counters are the per-interface counters if_epair keeps with if_inc_counter.
// They are atomics because the sender's goroutine, the flushing goroutine and
// readers of the statistics all touch them at once.
type counters struct {
	ipackets, ibytes, ierrors atomic.Uint64
	opackets, obytes, omcasts atomic.Uint64
	// drops counts the frames this End sent that the core dropped, by
	// DropReason; OErrors and OQDrops are their sums.
	drops [NumDropReasons]atomic.Uint64
}

// Stats is a snapshot of one End's counters, named after FreeBSD's
// IFCOUNTER_* values, with the drops by reason that make up OErrors and
// OQDrops. Every frame an End's TAP handed over is in exactly one of
// OPackets, OErrors, OQDrops and the Spoof counters.
type Stats struct {
	// IPackets and IBytes count frames queued towards this End (if_epair
	// counts IPACKETS on the receiver when the frame is queued).
	IPackets uint64 `json:"ipackets"`
	IBytes   uint64 `json:"ibytes"`
	// IErrors counts queued frames the Sink could not deliver.
	IErrors uint64 `json:"ierrors"`
	// OPackets, OBytes and OMcasts count frames this End sent that were
	// queued at the peer.
	OPackets uint64 `json:"opackets"`
	OBytes   uint64 `json:"obytes"`
	OMcasts  uint64 `json:"omcasts"`
	// OErrors counts frames dropped by the MTU rule or the link rule:
	// DropMTU + DropDown.
	OErrors uint64 `json:"oerrors"`
	// OQDrops counts frames dropped because the peer's queue was full:
	// DropQueueFull + DropShaped.
	OQDrops uint64 `json:"oqdrops"`
	// DropMTU, DropDown, DropQueueFull and DropShaped count drops by
	// DropReason.
	DropMTU       uint64 `json:"drop_mtu"`
	DropDown      uint64 `json:"drop_down"`
	DropQueueFull uint64 `json:"drop_queue_full"`
	DropShaped    uint64 `json:"drop_shaped"`
	// SpoofMAC, SpoofIP, SpoofARP, SpoofNDP, SpoofVLAN and SpoofRA count frames
	// this End sent that its anti-spoofing filter dropped, by reason (see
	// SpoofReason). They are not in OErrors: the frame was well formed,
	// only not the pod's to send.
	SpoofMAC  uint64 `json:"spoof_mac"`
	SpoofIP   uint64 `json:"spoof_ip"`
	SpoofARP  uint64 `json:"spoof_arp"`
	SpoofNDP  uint64 `json:"spoof_ndp"`
	SpoofVLAN uint64 `json:"spoof_vlan"`
	SpoofRA   uint64 `json:"spoof_ra"`
}

// Drop returns the count of drops for reason r.
func (s *Stats) Drop(r DropReason) uint64 {
	if p := s.dropField(r); p != nil {
		return *p
	}
	return 0
}

func (s *Stats) dropField(r DropReason) *uint64 {
	switch r {
	case DropMTU:
		return &s.DropMTU
	case DropDown:
		return &s.DropDown
	case DropQueueFull:
		return &s.DropQueueFull
	case DropShaped:
		return &s.DropShaped
	case DropSpoofMAC:
		return &s.SpoofMAC
	case DropSpoofIP:
		return &s.SpoofIP
	case DropSpoofARP:
		return &s.SpoofARP
	case DropSpoofNDP:
		return &s.SpoofNDP
	case DropSpoofVLAN:
		return &s.SpoofVLAN
	case DropSpoofRA:
		return &s.SpoofRA
	}
	return nil
}

// Spoofed returns the frames the anti-spoofing filter dropped, all reasons.
func (s *Stats) Spoofed() uint64 {
	return s.SpoofMAC + s.SpoofIP + s.SpoofARP + s.SpoofNDP + s.SpoofVLAN + s.SpoofRA
}

func (c *counters) snapshot() Stats {
	s := Stats{
		IPackets: c.ipackets.Load(),
		IBytes:   c.ibytes.Load(),
		IErrors:  c.ierrors.Load(),
		OPackets: c.opackets.Load(),
		OBytes:   c.obytes.Load(),
		OMcasts:  c.omcasts.Load(),
	}
	for r := DropReason(0); r < NumDropReasons; r++ {
		*s.dropField(r) = c.drops[r].Load()
	}
	s.OErrors = s.DropMTU + s.DropDown
	s.OQDrops = s.DropQueueFull + s.DropShaped
	return s
}

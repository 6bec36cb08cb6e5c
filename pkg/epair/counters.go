package epair

import "sync/atomic"

// counters are the per-interface counters if_epair keeps with if_inc_counter.
// They are atomics because the sender's goroutine, the flushing goroutine and
// readers of the statistics all touch them at once.
type counters struct {
	ipackets, ibytes, ierrors                   atomic.Uint64
	opackets, obytes, omcasts, oerrors, oqdrops atomic.Uint64
	// spoof counts the frames the anti-spoofing filter dropped, by
	// SpoofReason (index 0, SpoofNone, is unused).
	spoof [numSpoofReasons]atomic.Uint64
}

// Stats is a snapshot of one End's counters, named after FreeBSD's
// IFCOUNTER_* values.
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
	// OErrors counts frames dropped by the MTU rule or the link rule.
	OErrors uint64 `json:"oerrors"`
	// OQDrops counts frames dropped because the peer's queue was full.
	OQDrops uint64 `json:"oqdrops"`
	// SpoofMAC, SpoofIP, SpoofARP, SpoofNDP and SpoofVLAN count frames
	// this End sent that its anti-spoofing filter dropped, by reason (see
	// SpoofReason). They are not in OErrors: the frame was well formed,
	// only not the pod's to send.
	SpoofMAC  uint64 `json:"spoof_mac"`
	SpoofIP   uint64 `json:"spoof_ip"`
	SpoofARP  uint64 `json:"spoof_arp"`
	SpoofNDP  uint64 `json:"spoof_ndp"`
	SpoofVLAN uint64 `json:"spoof_vlan"`
}

func (c *counters) snapshot() Stats {
	return Stats{
		IPackets: c.ipackets.Load(),
		IBytes:   c.ibytes.Load(),
		IErrors:  c.ierrors.Load(),
		OPackets: c.opackets.Load(),
		OBytes:   c.obytes.Load(),
		OMcasts:  c.omcasts.Load(),
		OErrors:  c.oerrors.Load(),
		OQDrops:  c.oqdrops.Load(),

		SpoofMAC:  c.spoof[SpoofMAC].Load(),
		SpoofIP:   c.spoof[SpoofIP].Load(),
		SpoofARP:  c.spoof[SpoofARP].Load(),
		SpoofNDP:  c.spoof[SpoofNDP].Load(),
		SpoofVLAN: c.spoof[SpoofVLAN].Load(),
	}
}

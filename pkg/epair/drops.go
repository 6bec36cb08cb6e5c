package epair

// DropReason says why the core dropped a frame an End sent. Every drop is
// counted once, by reason, at the sending End; if_epair's OErrors and
// OQDrops are sums of these (see Stats), so the hot path pays one atomic
// add per drop and none per delivered frame.
type DropReason uint8

// The reasons. Their String values are the keys of Stats' JSON and the
// reason label of the metrics.
const (
	// DropMTU: longer than the sender's MTU + 18 (a GSO super-frame: one
	// of its segments), or shorter than a virtio-net header (OErrors).
	DropMTU DropReason = iota
	// DropDown: the sender or its peer is not running or not up (OErrors).
	DropDown
	// DropQueueFull: the peer's receive queue, or all queues together,
	// had no room in frames or bytes (OQDrops).
	DropQueueFull
	// DropShaped: like DropQueueFull, at a shaped peer whose queue is full
	// of frames waiting for tokens (OQDrops).
	DropShaped
	// DropSpoofMAC .. DropSpoofRA: the anti-spoofing filter, by
	// SpoofReason (not in OErrors: the frame was well formed, only not the
	// pod's to send).
	DropSpoofMAC
	DropSpoofIP
	DropSpoofARP
	DropSpoofNDP
	DropSpoofVLAN
	DropSpoofRA
	// NumDropReasons is the number of reasons.
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropMTU:       "drop_mtu",
	DropDown:      "drop_down",
	DropQueueFull: "drop_queue_full",
	DropShaped:    "drop_shaped",
	DropSpoofMAC:  "spoof_mac",
	DropSpoofIP:   "spoof_ip",
	DropSpoofARP:  "spoof_arp",
	DropSpoofNDP:  "spoof_ndp",
	DropSpoofVLAN: "spoof_vlan",
	DropSpoofRA:   "spoof_ra",
}

// String returns the reason's counter name, e.g. "drop_mtu" or "spoof_ip".
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "drop_unknown"
}

// Spoofed reports whether the anti-spoofing filter made this drop.
func (r DropReason) Spoofed() bool { return r >= DropSpoofMAC && r < NumDropReasons }

// dropForSpoof maps a filter's verdict to its drop reason.
func dropForSpoof(r SpoofReason) DropReason {
	return DropSpoofMAC + DropReason(r-SpoofMAC)
}

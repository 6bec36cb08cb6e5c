// Package api holds the types of the epair daemon's HTTP+JSON API, served on
// a root-only unix socket and used by the CLI and the CNI plugin.
package api

import (
	"fmt"

	"github.com/epair-cni/epair/pkg/epair"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/epair/epair.sock"

// DefaultStateDir is where the daemon keeps its state unless told otherwise.
const DefaultStateDir = "/var/lib/epair"

// MinMTU and MaxMTU bound the MTU of a pair: IPv4's minimum, and the
// largest MTU the kernel lets a TAP have (the tun driver's 65535 less the
// 14-byte Ethernet header: `ip link set tap0 mtu 65522` fails with "mtu
// greater than device maximum").
const (
	MinMTU = 68
	MaxMTU = 65521
)

// CreateRequest asks the daemon for a new pair.
type CreateRequest struct {
	// Unit asks for a unit number; nil means the lowest free one.
	Unit *int `json:"unit,omitempty"`
	// ANetns and BNetns are paths of network namespaces (such as
	// /var/run/netns/NAME or /proc/PID/ns/net); empty means the daemon's.
	ANetns string `json:"a_netns,omitempty"`
	BNetns string `json:"b_netns,omitempty"`
	// BNetnsInode, when set, is the inode of the network namespace the
	// caller means by BNetns: the CNI plugin sends its own namespace (the
	// runtime's, where the host side of a pod belongs) as
	// /proc/PID/ns/net with the inode it sees at /proc/self/ns/net. The
	// daemon checks the path against it, and needs no path at all when
	// it is the daemon's own namespace.
	BNetnsInode uint64 `json:"b_netns_inode,omitempty"`
	// AName renames the a end (for CNI, CNI_IFNAME); empty keeps epair<n>a.
	AName string `json:"a_name,omitempty"`
	// AMAC overrides the generated MAC address of the a end.
	AMAC string `json:"a_mac,omitempty"`
	// MTU of both ends; 0 means 1500.
	MTU int `json:"mtu,omitempty"`
	// Queues is the number of TAP queues per end; 0 means the daemon's.
	Queues int `json:"queues,omitempty"`
	// Owner ties the pair to a CNI attachment.
	Owner *Owner `json:"owner,omitempty"`
	// AntiSpoofing, for a pair with an Owner, drops frames the a end sends
	// from another MAC or address than the pod's (see epair.SpoofFilter);
	// nil means on. An owner without IPs yet may send DHCP from 0.0.0.0
	// and IPv6 from its link-local address only (see SetIPsRequest). Pairs
	// without an owner are never filtered: the daemon knows no addresses
	// for them.
	AntiSpoofing *bool `json:"anti_spoofing,omitempty"`
	// Bandwidth shapes the pair's traffic (the CNI bandwidth capability);
	// nil shapes nothing.
	Bandwidth *Bandwidth `json:"bandwidth,omitempty"`
}

// Bandwidth is the CNI bandwidth capability, in the units of the reference
// bandwidth plugin: rates in bits per second, bursts in bits. Ingress is
// what the pod receives (shaped where the a end's frames are queued),
// egress what it sends (shaped at the b end). A direction with rate 0 is
// not shaped; a rate needs a burst, and the reverse.
type Bandwidth struct {
	IngressRate  uint64 `json:"ingress_rate,omitempty"`
	IngressBurst uint64 `json:"ingress_burst,omitempty"`
	EgressRate   uint64 `json:"egress_rate,omitempty"`
	EgressBurst  uint64 `json:"egress_burst,omitempty"`
}

// MaxRate and MaxBurst bound a Bandwidth: 1 Tbit/s, and 2^32 bytes (the
// reference plugin's burst bound) in bits.
const (
	MaxRate  = 1_000_000_000_000
	MaxBurst = 8 << 32
)

// Validate checks that each direction has both a rate and a burst, or
// neither, within MaxRate and MaxBurst.
func (b *Bandwidth) Validate() error {
	if err := validDirection("ingress", b.IngressRate, b.IngressBurst); err != nil {
		return err
	}
	return validDirection("egress", b.EgressRate, b.EgressBurst)
}

func validDirection(dir string, rate, burst uint64) error {
	switch {
	case (rate == 0) != (burst == 0):
		return fmt.Errorf("%s rate %d and burst %d: both must be set, or neither", dir, rate, burst)
	case rate > MaxRate:
		return fmt.Errorf("%s rate %d over %d bit/s", dir, rate, uint64(MaxRate))
	case burst > MaxBurst:
		return fmt.Errorf("%s burst %d over %d bits", dir, burst, uint64(MaxBurst))
	}
	return nil
}

// IsZero reports whether b shapes nothing.
func (b *Bandwidth) IsZero() bool { return b == nil || (b.IngressRate == 0 && b.EgressRate == 0) }

// SetIPsRequest is the body of PUT /v1/pairs/{id}/ips: the pod's
// addresses (CIDR, or bare), replacing the owner's, and the a end's
// anti-spoofing filter with them. The CNI plugin sends them when its IPAM
// plugin can only answer once the a end exists (dhcp): the pair is created
// with an owner without IPs, which the filter lets send DHCP from 0.0.0.0
// and IPv6 from its link-local address only.
type SetIPsRequest struct {
	IPs []string `json:"ips"`
}

// Owner identifies the CNI attachment a pair belongs to.
type Owner struct {
	ContainerID string `json:"container_id"`
	IfName      string `json:"ifname"`
	Network     string `json:"network"`
	// IPs are the pod's addresses (CIDR), kept so that DEL and GC can undo
	// host-side rules even when the pod's namespace is already gone.
	IPs []string `json:"ips,omitempty"`
	// Pod is the Kubernetes pod of the attachment, from CNI_ARGS; nil when
	// the runtime passed none (cnitool, a pair made by hand).
	Pod *Pod `json:"pod,omitempty"`
}

// PodName returns the owner's pod as namespace/name, "" when there is none.
func (o *Owner) PodName() string {
	if o == nil || o.Pod == nil {
		return ""
	}
	return o.Pod.String()
}

// Matches reports whether the owner is the attachment (containerID, ifName)
// of network.
func (o *Owner) Matches(network, containerID, ifName string) bool {
	return o != nil && o.Network == network && o.ContainerID == containerID && o.IfName == ifName
}

// End describes one interface of a pair.
type End struct {
	Name  string `json:"name"`
	Index int    `json:"ifindex"`
	MAC   string `json:"mac"`
	Netns string `json:"netns,omitempty"`
	// Up, Running and MTU are what the queue core's link and MTU rules
	// see: IFF_UP and the MTU follow the kernel interface.
	Up      bool `json:"up"`
	Running bool `json:"running"`
	MTU     int  `json:"mtu,omitempty"`
}

// Pair describes a pair as the daemon knows it.
type Pair struct {
	Unit int `json:"unit"`
	// Pod is the owner's pod as namespace/name (Owner.Pod in full), for
	// people reading `epair pair list`; empty when there is none.
	Pod    string `json:"pod,omitempty"`
	A      End    `json:"a"`
	B      End    `json:"b"`
	MTU    int    `json:"mtu"`
	Queues int    `json:"queues"`
	Owner  *Owner `json:"owner,omitempty"`
	// AntiSpoofing is true when the a end's frames are filtered.
	AntiSpoofing bool `json:"anti_spoofing"`
	// Bandwidth is the shaping in force, nil when none.
	Bandwidth *Bandwidth `json:"bandwidth,omitempty"`
	// Forwarding is true while the datapath carries frames for the pair.
	Forwarding bool `json:"forwarding"`
	// Problem says why a pair is not forwarding, when it is not.
	Problem string `json:"problem,omitempty"`
}

// EndStats are one end's counters.
type EndStats struct {
	Name string `json:"name"`
	epair.Stats
}

// Stats are a pair's counters.
type Stats struct {
	Unit int `json:"unit"`
	// Pod is the owner's pod as namespace/name, empty when there is none.
	Pod string   `json:"pod,omitempty"`
	A   EndStats `json:"a"`
	B   EndStats `json:"b"`
}

// Status answers GET /v1/status.
type Status struct {
	Version string `json:"version"`
	Pairs   int    `json:"pairs"`
	Queues  int    `json:"queues"`
	Policy  string `json:"policy"`
	// CanCreate is false when the daemon cannot make TAP devices.
	CanCreate bool   `json:"can_create"`
	Problem   string `json:"problem,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

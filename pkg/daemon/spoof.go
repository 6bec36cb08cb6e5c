package daemon

import (
	"fmt"
	"net/netip"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/datapath"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/state"
)

// antiSpoofing reports whether p's a end is filtered: when p belongs to a
// CNI attachment with addresses (the daemon knows nothing to allow for
// other pairs) and the request did not turn it off.
func antiSpoofing(p *state.Pair) bool {
	return p.Owner != nil && len(p.Owner.IPs) > 0 && (p.AntiSpoofing == nil || *p.AntiSpoofing)
}

// spoofFilter returns the a end's anti-spoofing filter for p, or nil.
func spoofFilter(p *state.Pair) (*epair.SpoofFilter, error) {
	if !antiSpoofing(p) {
		return nil, nil
	}
	mac, err := epair.ParseMAC(p.A.MAC)
	if err != nil {
		return nil, fmt.Errorf("anti-spoofing for %s: %w", p.A.Name, err)
	}
	addrs, err := ownerAddrs(p.Owner)
	if err != nil {
		return nil, fmt.Errorf("anti-spoofing for %s: %w", p.A.Name, err)
	}
	return epair.NewSpoofFilter(mac, addrs), nil
}

// ownerAddrs parses the owner's addresses, CIDRs as ADD's result has them
// (a bare address is taken too).
func ownerAddrs(o *api.Owner) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range o.IPs {
		if pfx, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pfx.Addr())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("owner address %q is neither a CIDR nor an address", s)
		}
		out = append(out, a)
	}
	return out, nil
}

// startOptions are the datapath options for p: the daemon's, with p's
// anti-spoofing filter.
func (m *Manager) startOptions(p *state.Pair) (datapath.Options, error) {
	opts := m.dp
	f, err := spoofFilter(p)
	if err != nil {
		return opts, err
	}
	opts.AFilter = f
	opts.AShaper, opts.BShaper, err = shapers(p.Bandwidth)
	if err != nil {
		return opts, fmt.Errorf("shaping %s: %w", p.A.Name, err)
	}
	return opts, nil
}

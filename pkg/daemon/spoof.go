package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/datapath"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/state"
)

// antiSpoofing reports whether p's a end is filtered: when p belongs to a
// CNI attachment (the daemon knows nothing to allow for other pairs) and
// the request did not turn it off. An owner without addresses yet (its
// IPAM plugin, dhcp, answers only once the a end exists) is filtered too:
// it may send DHCP from 0.0.0.0 and IPv6 from its link-local address.
func antiSpoofing(p *state.Pair) bool {
	return p.Owner != nil && (p.AntiSpoofing == nil || *p.AntiSpoofing)
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

// SetIPs replaces the addresses of the pair's owner, in the state and in
// the a end's anti-spoofing filter (swapped whole, so the datapath sees
// the old filter or the new one). Bad addresses change nothing.
func (m *Manager) SetIPs(id string, ips []string) (out *api.Pair, err error) {
	err = m.withPair(id, func(p *state.Pair) error {
		out, err = m.setIPs(p, ips)
		return err
	})
	return out, err
}

// setIPs is SetIPs with m.mu held.
func (m *Manager) setIPs(p *state.Pair, ips []string) (*api.Pair, error) {
	if p.Phase != state.Ready || p.Owner == nil {
		return nil, fmt.Errorf("%w: pair %d is not a ready CNI attachment (it has no owner, or is being made or deleted)", errInvalid, p.Unit)
	}
	owner := *p.Owner
	owner.IPs = append([]string(nil), ips...)
	if _, err := ownerAddrs(&owner); err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalid, err)
	}
	next := *p
	next.Owner = &owner
	f, err := spoofFilter(&next)
	if err != nil {
		return nil, err
	}
	old := p.Owner
	p.Owner = &owner
	if err := m.store.Save(m.st); err != nil {
		p.Owner = old
		return nil, err
	}
	if l := m.links[p.Unit]; l != nil {
		l.Pair.A.SetSpoofFilter(f)
	}
	slog.Info("pair addresses set", "unit", p.Unit, "ips", ips)
	return m.describe(p), nil
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

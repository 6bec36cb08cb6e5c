package kube

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// nftables objects of the masquerade: one inet table that is epair's alone,
// so rebuilding it never touches anyone else's rules.
const (
	MasqTable      = "epair"
	MasqChain      = "postrouting" // nat hook postrouting, priority srcnat
	MasqCheckChain = "masquerade"  // the destination checks, jumped to
)

// Masquerader makes pod traffic to destinations outside the cluster leave
// with the node's address.
type Masquerader interface {
	// Apply masquerades traffic from cluster to anything not in cluster
	// nor in services; it may be called again with the same arguments.
	Apply(cluster, services []netip.Prefix) error
	// Remove takes the masquerade away.
	Remove() error
}

// NftMasq is the nftables masquerade: table `inet epair`, chain
// `postrouting` (type nat, hook postrouting, priority 100) with one rule per
// cluster CIDR `ip saddr CIDR jump masquerade`, and chain `masquerade` with
// `ip daddr CIDR return` per cluster and service CIDR, then `masquerade`.
type NftMasq struct {
	// NetNSFd is the network namespace to work in; 0 is the current one.
	NetNSFd int

	mu   sync.Mutex
	last []netip.Prefix // the cluster CIDRs, then nil, then the services
}

var masqTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: MasqTable}

func (m *NftMasq) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if m.NetNSFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(m.NetNSFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// Apply rebuilds the table in one transaction (add, delete, create: the
// kernel swaps it atomically), unless it holds the same CIDRs already.
func (m *NftMasq) Apply(cluster, services []netip.Prefix) error {
	if len(cluster) == 0 {
		return errors.New("masquerade: no cluster CIDR known")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := append(append(slices.Clone(cluster), netip.Prefix{}), services...)
	c, err := m.conn()
	if err != nil {
		return err
	}
	if slices.Equal(key, m.last) {
		if _, err := c.ListTableOfFamily(MasqTable, nftables.TableFamilyINet); err == nil {
			return nil
		}
	}
	c.AddTable(masqTable)
	c.DelTable(masqTable)
	t := c.AddTable(masqTable)
	check := c.AddChain(&nftables.Chain{Name: MasqCheckChain, Table: t})
	post := c.AddChain(&nftables.Chain{
		Name: MasqChain, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	for _, p := range cluster {
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: append(matchPrefix(p, true),
			&expr.Verdict{Kind: expr.VerdictJump, Chain: MasqCheckChain})})
	}
	for _, p := range append(slices.Clone(cluster), services...) {
		c.AddRule(&nftables.Rule{Table: t, Chain: check, Exprs: append(matchPrefix(p, false),
			&expr.Verdict{Kind: expr.VerdictReturn})})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: check, Exprs: []expr.Any{&expr.Masq{}}})
	if err := c.Flush(); err != nil {
		m.last = nil
		return fmt.Errorf("nftables: apply table inet %s: %w", MasqTable, err)
	}
	m.last = key
	return nil
}

// Remove deletes the table if it is there.
func (m *NftMasq) Remove() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last = nil
	c, err := m.conn()
	if err != nil {
		return err
	}
	if _, err := c.ListTableOfFamily(MasqTable, nftables.TableFamilyINet); err != nil {
		return nil
	}
	c.DelTable(masqTable)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table inet %s: %w", MasqTable, err)
	}
	return nil
}

// matchPrefix is `ip saddr P` (src) or `ip daddr P`, or their ip6 forms:
// the family check first, since an inet chain sees both.
func matchPrefix(p netip.Prefix, src bool) []expr.Any {
	proto, off := byte(unix.NFPROTO_IPV4), uint32(16)
	if src {
		off = 12
	}
	if p.Addr().Is6() {
		proto, off = unix.NFPROTO_IPV6, 24
		if src {
			off = 8
		}
	}
	n := uint32(p.Addr().BitLen() / 8)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n,
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()), Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

package datapath_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/client"
)

// frameFrom is a UDP datagram to port 9 of ipB from sip and the source MAC
// src, sent to the b end (checksums do not matter: it is only counted).
func (s *setup) frameFrom(src net.HardwareAddr, sip string) []byte {
	dst, _ := net.ParseMAC(s.pair.B.MAC)
	f := make([]byte, 14+28+32)
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	copy(ip[12:], net.ParseIP(sip).To4())
	copy(ip[16:], net.ParseIP(ipB).To4())
	binary.BigEndian.PutUint16(ip[20:], 40000)
	binary.BigEndian.PutUint16(ip[22:], 9)
	binary.BigEndian.PutUint16(ip[24:], uint16(len(ip)-20))
	return f
}

// arpFor is a gratuitous ARP for ip from the a end's MAC.
func (s *setup) arpFor(ip string) []byte {
	mac, _ := net.ParseMAC(s.pair.A.MAC)
	f := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mac...)
	f = append(f, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1)
	f = append(append(f, mac...), net.ParseIP(ip).To4()...)
	return append(append(append(f, make([]byte, 6)...), net.ParseIP(ip).To4()...), make([]byte, 18)...)
}

// TestCountersMatchTheKernelFiltered: a pair with anti-spoofing and
// shaping on (`pair add --ips --egress-rate ...`), after honest datagrams
// beyond the shaped queue, forged source addresses, MACs and ARP, and
// oversized GSO frames: every frame the kernel sent out of the a end's TAP
// is in exactly one of opackets, oerrors, oqdrops and the spoof counters.
func TestCountersMatchTheKernelFiltered(t *testing.T) {
	s := newSetupWith(t, "--ips", ipA+"/24", "--egress-rate", "1000000", "--egress-burst", "10000",
		"--ingress-rate", "1000000", "--ingress-burst", "10000")
	if !s.pair.AntiSpoofing || s.pair.Bandwidth == nil || s.pair.Bandwidth.EgressRate != 1_000_000 {
		t.Fatalf("pair add --ips --egress-rate made %+v", s.pair)
	}
	ping(t, s.na, ipB)
	before, kaBefore := s.stats(t), kstats(t, s.na, "eth0")
	const honest, forged, oversized = 200, 5, 3
	mac, _ := net.ParseMAC(s.pair.A.MAC)
	other, _ := net.ParseMAC("02:de:ad:be:ef:01")
	for i := 0; i < forged; i++ {
		sendRaw(t, s, nil, s.frameFrom(mac, "10.250.0.9"))
		sendRaw(t, s, nil, s.frameFrom(other, ipA))
		sendRaw(t, s, nil, s.arpFor("10.250.0.9"))
	}
	for i := 0; i < oversized; i++ {
		sendGSO(t, s, 4000, 8000)
	}
	udpBurst(t, s.na, honest, 1000)
	time.Sleep(300 * time.Millisecond)
	after, ka := s.stats(t), kstats(t, s.na, "eth0")

	d := func(f func(api.Stats) uint64) uint64 { return f(after) - f(before) }
	a := func(s api.Stats) uint64 {
		return s.A.OPackets + s.A.OErrors + s.A.OQDrops + s.A.Spoofed()
	}
	t.Logf("kernel tx %d; opackets %d, oerrors %d (drop_mtu %d), oqdrops %d (drop_shaped %d), spoofed %d (ip %d, mac %d, arp %d)",
		ka.TxPackets-kaBefore.TxPackets, d(func(s api.Stats) uint64 { return s.A.OPackets }),
		d(func(s api.Stats) uint64 { return s.A.OErrors }), d(func(s api.Stats) uint64 { return s.A.DropMTU }),
		d(func(s api.Stats) uint64 { return s.A.OQDrops }), d(func(s api.Stats) uint64 { return s.A.DropShaped }),
		d(func(s api.Stats) uint64 { return s.A.Spoofed() }), d(func(s api.Stats) uint64 { return s.A.SpoofIP }),
		d(func(s api.Stats) uint64 { return s.A.SpoofMAC }), d(func(s api.Stats) uint64 { return s.A.SpoofARP }))
	if ka.TxPackets != a(after) || ka.TxPackets-kaBefore.TxPackets != d(a) {
		t.Errorf("kernel sent %d frames out of eth0 (+%d), epair counted %d (+%d) = opackets + oerrors + oqdrops + spoofed",
			ka.TxPackets, ka.TxPackets-kaBefore.TxPackets, a(after), d(a))
	}
	for _, c := range []struct {
		what      string
		got, want uint64
	}{
		{"spoof_ip", d(func(s api.Stats) uint64 { return s.A.SpoofIP }), forged},
		{"spoof_mac", d(func(s api.Stats) uint64 { return s.A.SpoofMAC }), forged},
		{"spoof_arp", d(func(s api.Stats) uint64 { return s.A.SpoofARP }), forged},
		{"drop_mtu", d(func(s api.Stats) uint64 { return s.A.DropMTU }), oversized},
	} {
		if c.got != c.want {
			t.Errorf("%s rose by %d, want %d", c.what, c.got, c.want)
		}
	}
	if shaped := d(func(s api.Stats) uint64 { return s.A.DropShaped }); shaped == 0 || shaped != d(func(s api.Stats) uint64 { return s.A.OQDrops }) {
		t.Errorf("drop_shaped rose by %d, oqdrops by %d: want the datagrams over the shaped queue, and nothing else", shaped,
			d(func(s api.Stats) uint64 { return s.A.OQDrops }))
	}
}

// udpBurst sends n datagrams of size bytes from the a end to ipB as fast
// as the socket takes them.
func udpBurst(t *testing.T, n ns.NetNS, count, size int) {
	t.Helper()
	err := n.Do(func(ns.NetNS) error {
		c, err := net.ListenPacket("udp", ipA+":0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.ParseIP(ipB), Port: 9}
		for i := 0; i < count; i++ {
			if _, err := c.WriteTo(make([]byte, size), to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSetIPsSwapsTheFilter: PUT /v1/pairs/{id}/ips moves what the a end
// may send from to the new addresses, keeps them over a restart, and
// changes nothing on bad input or for a pair without an owner.
func TestSetIPsSwapsTheFilter(t *testing.T) {
	s := newSetupWith(t, "--ips", ipA+"/24")
	mac, _ := net.ParseMAC(s.pair.A.MAC)
	const moved = "10.250.0.9"
	passes := func(sip string) bool {
		t.Helper()
		before := s.stats(t)
		sendRaw(t, s, nil, s.frameFrom(mac, sip))
		time.Sleep(50 * time.Millisecond)
		after := s.stats(t)
		if after.A.OPackets == before.A.OPackets && after.A.SpoofIP == before.A.SpoofIP {
			t.Fatalf("a frame from %s was neither passed nor counted", sip)
		}
		return after.A.OPackets > before.A.OPackets
	}
	if !passes(ipA) || passes(moved) {
		t.Fatalf("with --ips %s: want %s passed and %s dropped", ipA, ipA, moved)
	}
	ctx, unit := context.Background(), strconv.Itoa(s.pair.Unit)
	p, err := s.d.Client.SetIPs(ctx, unit, []string{moved + "/24"})
	if err != nil || len(p.Owner.IPs) != 1 || p.Owner.IPs[0] != moved+"/24" {
		t.Fatalf("SetIPs: %+v, %v", p, err)
	}
	if passes(ipA) || !passes(moved) {
		t.Errorf("after SetIPs %s: want %s dropped and %s passed", moved, ipA, moved)
	}
	for _, bad := range [][]string{{"nonsense"}, {moved + "/24", "10.250.0.1/99"}} {
		_, err := s.d.Client.SetIPs(ctx, unit, bad)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("SetIPs(%q): %v, want a 400", bad, err)
		}
	}
	s.d.Kill()
	s.d.Start()
	if got, err := s.d.Client.GetPair(ctx, unit); err != nil || got.Owner.IPs[0] != moved+"/24" || !passes(moved) {
		t.Errorf("after bad input and a restart: %+v, %v; want %s kept and passed", got, err, moved)
	}
	out, err := s.d.Epair("pair", "add", "--a-netns", s.na.Path(), "--b-netns", s.nb.Path(), "--a-name", "eth1")
	if err != nil {
		t.Fatalf("pair add: %v\n%s", err, out)
	}
	if _, err := s.d.Client.SetIPs(ctx, "eth1", []string{moved}); err == nil {
		t.Errorf("SetIPs on a pair without an owner succeeded")
	}
}

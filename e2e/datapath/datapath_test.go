// Package datapath_test drives the real daemon and CLI as root: two network
// namespaces joined by an epair pair, real traffic across it.
package datapath_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	ipA = "10.250.0.1"
	ipB = "10.250.0.2"
)

// setup is a daemon and a pair between two fresh namespaces, addressed.
type setup struct {
	d      *harness.Daemon
	na, nb ns.NetNS
	pair   api.Pair
}

func newSetup(t *testing.T) *setup { return newSetupWith(t) }

// newSetupWith is newSetup with more `pair add` flags.
func newSetupWith(t *testing.T, flags ...string) *setup {
	harness.RequireRoot(t)
	s := &setup{d: harness.StartDaemon(t), na: harness.NewNS(t), nb: harness.NewNS(t)}
	args := append([]string{"pair", "add", "--a-netns", s.na.Path(), "--b-netns", s.nb.Path(), "--a-name", "eth0"}, flags...)
	out, err := s.d.Epair(args...)
	if err != nil {
		t.Fatalf("pair add: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &s.pair); err != nil {
		t.Fatalf("pair add printed %q: %v", out, err)
	}
	harness.MustRun(t, s.na, "ip", "addr", "add", ipA+"/24", "dev", "eth0")
	harness.MustRun(t, s.nb, "ip", "addr", "add", ipB+"/24", "dev", s.pair.B.Name)
	return s
}

func (s *setup) stats(t *testing.T) api.Stats {
	t.Helper()
	st, err := s.d.Client.Stats(context.Background(), s.pair.B.Name)
	if err != nil {
		t.Fatal(err)
	}
	return *st
}

// kstats are the kernel's own counters of an end's TAP.
func kstats(t *testing.T, n ns.NetNS, name string) *netlink.LinkStatistics {
	t.Helper()
	var l netlink.Link
	err := n.Do(func(ns.NetNS) (err error) {
		l, err = netlink.LinkByName(name)
		return err
	})
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l.Attrs().Statistics
}

func ifindex(t *testing.T, n ns.NetNS, name string) int {
	t.Helper()
	var idx int
	err := n.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(name)
		if err == nil {
			idx = l.Attrs().Index
		}
		return err
	})
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return idx
}

func ping(t *testing.T, from ns.NetNS, to string) {
	t.Helper()
	harness.MustRun(t, from, "ping", "-c", "3", "-i", "0.2", "-W", "2", to)
}

func TestPairAddPrintsBothEnds(t *testing.T) {
	s := newSetup(t)
	p := s.pair
	if p.A.Name != "eth0" || p.B.Name != fmt.Sprintf("epair%db", p.Unit) {
		t.Fatalf("names %q %q", p.A.Name, p.B.Name)
	}
	if !strings.HasSuffix(p.A.MAC, ":0a") || !strings.HasSuffix(p.B.MAC, ":0b") || p.A.MAC[:14] != p.B.MAC[:14] {
		t.Fatalf("MACs %s %s break the if_epair rule", p.A.MAC, p.B.MAC)
	}
	if p.A.Netns != s.na.Path() || p.B.Netns != s.nb.Path() || !p.Forwarding {
		t.Fatalf("pair %+v", p)
	}
	if got := ifindex(t, s.na, "eth0"); got != p.A.Index {
		t.Fatalf("a ifindex %d, pair says %d", got, p.A.Index)
	}
}

func TestPingBothWays(t *testing.T) {
	s := newSetup(t)
	ping(t, s.na, ipB)
	ping(t, s.nb, ipA)
}

func TestTSOIsOnInsideTheNamespaces(t *testing.T) {
	s := newSetup(t)
	for _, c := range []struct {
		n    ns.NetNS
		name string
	}{{s.na, "eth0"}, {s.nb, s.pair.B.Name}} {
		out := harness.MustRun(t, c.n, "ethtool", "-k", c.name)
		if !strings.Contains(out, "tcp-segmentation-offload: on") {
			t.Fatalf("%s: TSO is not on:\n%s", c.name, out)
		}
	}
}

// transfer sends size random bytes over TCP from na to nb and checks that
// what arrived hashes the same as what was sent.
func transfer(t *testing.T, s *setup, size int64) {
	t.Helper()
	var ln net.Listener
	if err := s.nb.Do(func(ns.NetNS) (err error) {
		ln, err = net.Listen("tcp", ipB+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		got <- h.Sum(nil)
	}()
	var c net.Conn
	if err := s.na.Do(func(ns.NetNS) (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	start := time.Now()
	if _, err := io.Copy(c, io.TeeReader(io.LimitReader(rand.Reader, size), h)); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Close()
	select {
	case sum := <-got:
		if string(sum) != string(h.Sum(nil)) {
			t.Fatalf("checksum of %d bytes received differs from what was sent", size)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("receiver did not finish")
	}
	t.Logf("%d MB in %v", size>>20, time.Since(start).Round(time.Millisecond))
}

func TestTCPTransferChecksum(t *testing.T) {
	s := newSetup(t)
	transfer(t, s, 128<<20)
	st := s.stats(t)
	if st.A.OBytes < 128<<20 || st.B.IBytes != st.A.OBytes {
		t.Fatalf("a obytes %d b ibytes %d after 128 MB", st.A.OBytes, st.B.IBytes)
	}
}

// TestCountersMatchTheKernel compares epair's counters with the kernel's own
// counters of the two TAPs: every frame the kernel sent out of one end was
// read by epair and counted as sent, dropped or in error; every frame epair
// counted as received on the other end was written into it.
func TestCountersMatchTheKernel(t *testing.T) {
	s := newSetup(t)
	ping(t, s.na, ipB)
	before, kaBefore := s.stats(t), kstats(t, s.na, "eth0")
	const n, size = 100, 200
	err := s.na.Do(func(ns.NetNS) error {
		// Unconnected, so the port-unreachable answers are no error.
		c, err := net.ListenPacket("udp", ipA+":0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.ParseIP(ipB), Port: 9}
		for i := 0; i < n; i++ {
			if _, err := c.WriteTo(make([]byte, size), to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	after := s.stats(t)
	ka, kb := kstats(t, s.na, "eth0"), kstats(t, s.nb, s.pair.B.Name)
	sent := after.A.OPackets - before.A.OPackets
	// ARP may add a frame or two; the datagrams must all be there.
	if sent < n || sent > n+3 {
		t.Fatalf("a opackets grew by %d, want %d datagrams", sent, n)
	}
	if d := after.A.OBytes - before.A.OBytes; d < n*(size+8+20+14) {
		t.Fatalf("a obytes grew by %d, want at least %d", d, n*(size+42))
	}
	if ka.TxPackets-kaBefore.TxPackets != sent {
		t.Fatalf("kernel sent %d frames out of eth0, epair counted %d", ka.TxPackets-kaBefore.TxPackets, sent)
	}
	for _, c := range []struct {
		what      string
		kern, our uint64
	}{
		{"a tx packets", ka.TxPackets, after.A.OPackets + after.A.OErrors + after.A.OQDrops},
		{"a tx bytes", ka.TxBytes, after.A.OBytes},
		{"b rx packets", kb.RxPackets, after.B.IPackets - after.B.IErrors},
		{"b rx bytes", kb.RxBytes, after.B.IBytes},
		{"b tx packets", kb.TxPackets, after.B.OPackets + after.B.OErrors + after.B.OQDrops},
	} {
		if c.kern != c.our {
			t.Errorf("%s: kernel %d, epair %d", c.what, c.kern, c.our)
		}
	}
	if after.A.OErrors+after.A.OQDrops+after.B.IErrors != 0 {
		t.Errorf("errors or drops on a quiet pair: %+v", after)
	}
}

// sendGSO injects one TCPv4 GSO super-frame out of eth0 through a packet
// socket with a virtio-net header: the kernel checks only non-GSO frames
// against the MTU, so this is how a frame whose segments exceed the MTU
// reaches the TAP for real.
func sendGSO(t *testing.T, s *setup, gsoSize, payload int) {
	t.Helper()
	dst, _ := net.ParseMAC(s.pair.B.MAC)
	src, _ := net.ParseMAC(s.pair.A.MAC)
	hdr := make([]byte, 10) // struct virtio_net_hdr
	hdr[0], hdr[1] = 1, 1   // NEEDS_CSUM, TCPV4
	binary.LittleEndian.PutUint16(hdr[2:], 54)
	binary.LittleEndian.PutUint16(hdr[4:], uint16(gsoSize))
	binary.LittleEndian.PutUint16(hdr[6:], 34)
	binary.LittleEndian.PutUint16(hdr[8:], 16)
	f := make([]byte, 54+payload)
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(40+payload))
	copy(ip[12:], net.ParseIP(ipA).To4())
	copy(ip[16:], net.ParseIP(ipB).To4())
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	tcp := f[34:54]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 9)
	tcp[12], tcp[13] = 5<<4, 0x10 // 20-byte header, ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	sendRaw(t, s, hdr, f)
	time.Sleep(100 * time.Millisecond)
}

// sendRaw sends the Ethernet frame f out of eth0 through a packet socket,
// after a virtio-net header hdr when not nil.
func sendRaw(t *testing.T, s *setup, hdr, f []byte) {
	t.Helper()
	err := s.na.Do(func(ns.NetNS) error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if hdr != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
				return err
			}
		}
		sa := &unix.SockaddrLinklayer{Ifindex: s.pair.A.Index, Protocol: 0x0008, Halen: 6}
		copy(sa.Addr[:], f[:6])
		return unix.Sendto(fd, append(hdr, f...), 0, sa)
	})
	if err != nil {
		t.Fatalf("send raw frame: %v", err)
	}
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func TestMTURuleOnRealOversizedFrame(t *testing.T) {
	s := newSetup(t)
	ping(t, s.na, ipB)
	before := s.stats(t)
	kb := kstats(t, s.nb, s.pair.B.Name).RxPackets

	// 1400-byte segments fit a 1500 MTU: the super-frame crosses.
	sendGSO(t, s, 1400, 8000)
	mid := s.stats(t)
	if mid.A.OErrors != before.A.OErrors || mid.A.OPackets == before.A.OPackets {
		t.Fatalf("a GSO frame with 1400-byte segments was not forwarded: %+v", mid.A)
	}
	kbMid := kstats(t, s.nb, s.pair.B.Name).RxPackets
	if kbMid == kb {
		t.Fatal("the kernel did not receive the GSO frame on the b end")
	}

	// 4000-byte segments do not: dropped and counted in oerrors.
	sendGSO(t, s, 4000, 8000)
	after := s.stats(t)
	if after.A.OErrors != mid.A.OErrors+1 {
		t.Fatalf("oerrors %d -> %d, want +1 for an oversized frame", mid.A.OErrors, after.A.OErrors)
	}
	if after.B.IPackets != mid.B.IPackets {
		t.Fatalf("oversized frame reached the b end (ipackets %d -> %d)", mid.B.IPackets, after.B.IPackets)
	}
}

func TestKill9RestartKeepsInterfaces(t *testing.T) {
	s := newSetup(t)
	ping(t, s.na, ipB)
	ia, ib := ifindex(t, s.na, "eth0"), ifindex(t, s.nb, s.pair.B.Name)

	s.d.Kill()
	if ifindex(t, s.na, "eth0") != ia || ifindex(t, s.nb, s.pair.B.Name) != ib {
		t.Fatal("interfaces changed when the daemon died")
	}
	if out, err := harness.Run(t, s.na, "ping", "-c", "1", "-W", "1", ipB); err == nil {
		t.Fatalf("traffic crossed with no daemon running:\n%s", out)
	}

	s.d.Start()
	if ifindex(t, s.na, "eth0") != ia || ifindex(t, s.nb, s.pair.B.Name) != ib {
		t.Fatal("restart recreated the interfaces")
	}
	p, err := s.d.Client.GetPair(context.Background(), s.pair.B.Name)
	if err != nil || !p.Forwarding || p.A.Index != ia {
		t.Fatalf("after restart: %+v %v", p, err)
	}
	ping(t, s.na, ipB)
	ping(t, s.nb, ipA)
	transfer(t, s, 16<<20)
}

func TestDeleteRemovesBothEnds(t *testing.T) {
	s := newSetup(t)
	if out, err := s.d.Epair("pair", "del", s.pair.B.Name); err != nil {
		t.Fatalf("pair del: %v\n%s", err, out)
	}
	for _, c := range []struct {
		n    ns.NetNS
		name string
	}{{s.na, "eth0"}, {s.nb, s.pair.B.Name}} {
		if out, err := harness.Run(t, c.n, "ip", "link", "show", c.name); err == nil {
			t.Fatalf("%s still exists after pair del:\n%s", c.name, out)
		}
	}
	out, err := s.d.Epair("pair", "del", s.pair.B.Name)
	if err == nil || !strings.Contains(out, "no such pair") {
		t.Fatalf("second del: %v %q, want a 'no such pair' error", err, out)
	}
}

func unmount(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		return err
	}
	return os.Remove(path)
}

// TestLinkRuleFollowsTheKernel: an end set down by hand makes the core drop
// (and count) frames towards it, as if_epair checks IFF_UP; its MTU set by
// hand is the MTU the core checks.
func TestLinkRuleFollowsTheKernel(t *testing.T) {
	s := newSetup(t)
	ping(t, s.na, ipB)
	harness.MustRun(t, s.na, "ip", "link", "set", "eth0", "down")
	waitPair(t, s, func(p *api.Pair) bool { return !p.A.Up })
	before := s.stats(t)
	harness.Run(t, s.nb, "ping", "-c", "3", "-i", "0.2", "-W", "1", ipA)
	after := s.stats(t)
	if after.B.OErrors < before.B.OErrors+3 || after.A.IPackets != before.A.IPackets {
		t.Fatalf("towards a down end: b oerrors %d -> %d, a ipackets %d -> %d; want +3 oerrors, no ipackets",
			before.B.OErrors, after.B.OErrors, before.A.IPackets, after.A.IPackets)
	}
	harness.MustRun(t, s.na, "ip", "link", "set", "eth0", "up")
	waitPair(t, s, func(p *api.Pair) bool { return p.A.Up })
	ping(t, s.nb, ipA)

	harness.MustRun(t, s.na, "ip", "link", "set", "eth0", "mtu", "1400")
	waitPair(t, s, func(p *api.Pair) bool { return p.A.MTU == 1400 })
}

func waitPair(t *testing.T, s *setup, ok func(*api.Pair) bool) {
	t.Helper()
	for i := 0; i < 100; i++ {
		p, err := s.d.Client.GetPair(context.Background(), s.pair.B.Name)
		if err == nil && ok(p) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p, _ := s.d.Client.GetPair(context.Background(), s.pair.B.Name)
	t.Fatalf("pair never reached the expected state: %+v", p)
}

// TestEndDeletedByHandCutsTheCable: when one end's device is deleted under
// the daemon, the pair stops forwarding and the other end loses its carrier.
func TestEndDeletedByHandCutsTheCable(t *testing.T) {
	s := newSetup(t)
	harness.MustRun(t, s.na, "ip", "link", "del", "eth0")
	waitPair(t, s, func(p *api.Pair) bool { return !p.Forwarding && p.Problem != "" })
	for i := 0; ; i++ {
		out := harness.MustRun(t, s.nb, "ip", "-o", "link", "show", s.pair.B.Name)
		if strings.Contains(out, "NO-CARRIER") {
			break
		}
		if i == 100 {
			t.Fatalf("b end still has a carrier:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := s.d.Epair("pair", "del", s.pair.B.Name); err != nil {
		t.Fatalf("del of a cut pair: %v\n%s", err, out)
	}
}

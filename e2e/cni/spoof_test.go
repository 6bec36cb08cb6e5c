package cni_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/epair"
	"golang.org/x/sys/unix"
)

// TestAntiSpoofing: in routed mode, dual stack, a pod's forged source
// address, source MAC, ARP, neighbor advertisement, router advertisement
// and ICMP redirect never reach the host
// and are counted, while honest traffic (IPv4, IPv6 with DAD) flows and
// counts nothing, also after a daemon restart; with antiSpoofing false a forged source address gets
// through, and CHECK with the other setting reports a mismatch.
func TestAntiSpoofing(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, true)
		on := e.list(t, netw{name: "spoofon", subnets: []string{"10.22.0.0/24", "fd00:22::/64"}})
		att, vic := e.add(t, on, e.pod(t)), e.add(t, on, e.pod(t))
		for _, fam := range []int{4, 6} {
			ping(t, att.pod, vic.ip(t, fam).Address.IP.String())
			ping(t, vic.pod, att.ip(t, fam).Address.IP.String())
			ping(t, att.pod, att.ip(t, fam).Gateway.String())
		}
		for _, a := range []*attachment{att, vic} {
			if s := e.spoofStats(t, a); s != (epair.Stats{}) {
				t.Errorf("honest traffic of %s was dropped: %+v", a.id, s)
			}
		}
		t.Run("raw frames", func(t *testing.T) { rawForgeries(t, e, att, vic) })
		t.Run("forged source IP", func(t *testing.T) {
			if got := forgedPingReplies(t, att, vic); got != 0 {
				t.Errorf("victim got %d echo replies for the attacker's pings, want 0", got)
			}
			if s := e.spoofStats(t, att); s.SpoofIP+s.SpoofARP == 0 {
				t.Errorf("forged pings not counted: %+v", s)
			}
		})
		t.Run("after a daemon restart", func(t *testing.T) {
			// The setting and addresses come back from the state.
			e.d.Kill()
			e.d.Start()
			rawForgeries(t, e, att, vic)
			if err := e.cni.Check(on, att.rt); err != nil {
				t.Errorf("CHECK after restart: %v", err)
			}
		})
		t.Run("forged source MAC", func(t *testing.T) {
			before := e.spoofStats(t, att).SpoofMAC
			harness.MustRun(t, att.pod, "ip", "link", "set", "eth0", "address", "02:aa:bb:cc:dd:ee")
			gw := att.ip(t, 4).Gateway.String()
			if out, err := harness.Run(t, att.pod, "ping", "-c", "2", "-i", "0.2", "-W", "1", gw); err == nil {
				t.Errorf("ping from a changed MAC got through:\n%s", out)
			}
			if after := e.spoofStats(t, att).SpoofMAC; after <= before {
				t.Errorf("spoof_mac %d -> %d, want it to rise", before, after)
			}
		})

		off := e.list(t, netw{name: "spoofoff", subnets: []string{"10.23.0.0/24"}, epair: map[string]any{"antiSpoofing": false}})
		oatt, ovic := e.add(t, off, e.pod(t)), e.add(t, off, e.pod(t))
		if got := forgedPingReplies(t, oatt, ovic); got == 0 {
			t.Errorf("antiSpoofing false: the forged source address did not get through")
		}
		if s := e.spoofStats(t, oatt); s != (epair.Stats{}) {
			t.Errorf("antiSpoofing false: counted %+v", s)
		}
		// CHECK with the other setting than ADD's is a mismatch.
		flipped := e.list(t, netw{name: "spoofoff", subnets: []string{"10.23.0.0/24"}})
		rt := *oatt.rt
		if code, _ := harness.ErrorCode(e.cni.Check(flipped, &rt)); code != 105 {
			t.Errorf("CHECK with antiSpoofing flipped: code %d, want 105", code)
		}
		if err := e.cni.Check(off, oatt.rt); err != nil {
			t.Errorf("CHECK with ADD's setting: %v", err)
		}
	})
}

// spoofStats returns the a end's anti-spoofing counters of a's pair (the
// other counters zeroed, so an honest pod's is the zero Stats).
func (e *env) spoofStats(t *testing.T, a *attachment) epair.Stats {
	t.Helper()
	s, err := e.d.Client.Stats(context.Background(), strconv.Itoa(e.pairOf(t, a).Unit))
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return epair.Stats{SpoofMAC: s.A.SpoofMAC, SpoofIP: s.A.SpoofIP, SpoofARP: s.A.SpoofARP,
		SpoofNDP: s.A.SpoofNDP, SpoofVLAN: s.A.SpoofVLAN, SpoofRA: s.A.SpoofRA}
}

// forgedPingReplies adds the victim's IPv4 address to the attacker's eth0,
// pings the gateway from it, and returns how many echo replies the victim
// received meanwhile: the host answers a forged source to the victim.
func forgedPingReplies(t *testing.T, att, vic *attachment) int {
	t.Helper()
	vip, gw := vic.ip(t, 4).Address.IP.String(), att.ip(t, 4).Gateway.String()
	// The gateway's neighbour entry is made honestly first: with the
	// victim's address as the ARP sender it would be an ARP forgery.
	ping(t, att.pod, gw)
	before := inEchoReps(t, vic.pod)
	harness.MustRun(t, att.pod, "ip", "addr", "add", vip+"/32", "dev", "eth0")
	defer harness.MustRun(t, att.pod, "ip", "addr", "del", vip+"/32", "dev", "eth0")
	harness.Run(t, att.pod, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", vip, gw)
	return inEchoReps(t, vic.pod) - before
}

// inEchoReps is the Icmp InEchoReps counter of the namespace.
func inEchoReps(t *testing.T, n ns.NetNS) int { return snmpIcmp(t, n, "InEchoReps") }

// snmpIcmp is the Icmp counter name of /proc/net/snmp in the namespace.
func snmpIcmp(t *testing.T, n ns.NetNS, name string) int {
	t.Helper()
	out := harness.MustRun(t, n, "cat", "/proc/net/snmp")
	var names []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, k := range names {
			if k == name && i < len(f) {
				v, _ := strconv.Atoi(f[i])
				return v
			}
		}
	}
	t.Fatalf("no Icmp %s in /proc/net/snmp:\n%s", name, out)
	return 0
}

// rawForgeries sends hand-made frames from the attacker's eth0 and watches
// the host side (its b end): every honest one arrives, no forged one does,
// and each is counted under its reason.
func rawForgeries(t *testing.T, e *env, att, vic *attachment) {
	podMAC := mustLink(t, att.pod, "eth0").mac
	mac, _ := net.ParseMAC(podMAC)
	bMAC, _ := net.ParseMAC(e.pairOf(t, att).B.MAC)
	other, _ := net.ParseMAC("02:de:ad:be:ef:01")
	ip4, vip4 := att.ip(t, 4).Address.IP.To4(), vic.ip(t, 4).Address.IP.To4()
	ip6, vip6 := att.ip(t, 6).Address.IP.To16(), vic.ip(t, 6).Address.IP.To16()
	gw4 := att.ip(t, 4).Gateway.To4()
	cases := []struct {
		name   string
		frame  []byte
		reason func(epair.Stats) uint64 // nil: honest
	}{
		{"ipv4 honest", udp4(mac, bMAC, ip4, gw4), nil},
		{"ipv4 victim's source", udp4(mac, bMAC, vip4, gw4), func(s epair.Stats) uint64 { return s.SpoofIP }},
		{"ipv4 other MAC", udp4(other, bMAC, ip4, gw4), func(s epair.Stats) uint64 { return s.SpoofMAC }},
		{"gratuitous ARP honest", garp(mac, ip4), nil},
		{"gratuitous ARP for the victim", garp(mac, vip4), func(s epair.Stats) uint64 { return s.SpoofARP }},
		{"NA honest", na(mac, ip6, ip6), nil},
		{"NA for the victim", na(mac, ip6, vip6), func(s epair.Stats) uint64 { return s.SpoofNDP }},
		{"router advertisement", raFrame(mac), func(s epair.Stats) uint64 { return s.SpoofRA }},
		{"ICMPv4 redirect", redirect4(mac, bMAC, ip4, gw4), func(s epair.Stats) uint64 { return s.SpoofRA }},
		{"ICMPv4 echo honest", echo4(mac, bMAC, ip4, gw4), nil},
	}
	for _, c := range cases {
		before := e.spoofStats(t, att)
		got := crosses(t, att.pod, e.host, att.bEnd(t), c.frame)
		after := e.spoofStats(t, att)
		switch {
		case c.reason == nil && !got:
			t.Errorf("%s: did not reach the host", c.name)
		case c.reason == nil && after != before:
			t.Errorf("%s: counted %+v -> %+v", c.name, before, after)
		case c.reason != nil && got:
			t.Errorf("%s: reached the host", c.name)
		case c.reason != nil && c.reason(after) != c.reason(before)+1:
			t.Errorf("%s: its counter went %d -> %d, want +1", c.name, c.reason(before), c.reason(after))
		}
	}
}

// crosses sends frame from eth0 in pod and reports whether it arrives on
// the host's hostIf within half a second.
func crosses(t *testing.T, pod, host ns.NetNS, hostIf string, frame []byte) bool {
	t.Helper()
	rx := packetSocket(t, host, hostIf)
	defer unix.Close(rx)
	tx := packetSocket(t, pod, "eth0")
	defer unix.Close(tx)
	if _, err := unix.Write(tx, frame); err != nil {
		t.Fatalf("send: %v", err)
	}
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if err == nil && bytes.Equal(buf[:n], frame) {
			return true
		}
	}
	return false
}

// packetSocket is an AF_PACKET socket bound to ifName in n, with a short
// receive timeout.
func packetSocket(t *testing.T, n ns.NetNS, ifName string) int {
	t.Helper()
	var fd int
	err := n.Do(func(ns.NetNS) error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto); err != nil {
			return err
		}
		tv := unix.Timeval{Usec: 100_000}
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", ifName, err)
	}
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func ethHdr(src, dst net.HardwareAddr, etype uint16) []byte {
	b := append(append([]byte{}, dst...), src...)
	return binary.BigEndian.AppendUint16(b, etype)
}

// udp4 is a UDP datagram to port 9 (discard); checksums do not matter, the
// frame is only watched arriving.
func udp4(src, dst net.HardwareAddr, sip, dip net.IP) []byte {
	ip := []byte{0x45, 0, 0, 36, 0, 0, 0, 0, 64, 17, 0, 0}
	ip = append(append(ip, sip...), dip...)
	udp := []byte{0x30, 0x39, 0, 9, 0, 16, 0, 0}
	return append(append(append(ethHdr(src, dst, 0x0800), ip...), udp...), []byte("epairspo")...)
}

// icmp4 is an ICMPv4 message of type typ (checksums do not matter, as for
// udp4).
func icmp4(src, dst net.HardwareAddr, sip, dip net.IP, typ byte) []byte {
	ip := []byte{0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0}
	ip = append(append(ip, sip...), dip...)
	msg := append([]byte{typ, 0, 0, 0}, dip...) // a redirect's gateway field
	return append(append(append(ethHdr(src, dst, 0x0800), ip...), msg...), make([]byte, 8)...)
}

// redirect4 is an ICMPv4 redirect (to the gateway dip), echo4 an echo
// request.
func redirect4(src, dst net.HardwareAddr, sip, dip net.IP) []byte {
	return icmp4(src, dst, sip, dip, 5)
}
func echo4(src, dst net.HardwareAddr, sip, dip net.IP) []byte { return icmp4(src, dst, sip, dip, 8) }

// garp is a gratuitous ARP request for ip from mac, broadcast.
func garp(mac net.HardwareAddr, ip net.IP) []byte {
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	return arpFrame(1, bcast, mac, ip, make(net.HardwareAddr, 6), ip)
}

// na is an unsolicited neighbor advertisement for target, to all nodes.
func na(mac net.HardwareAddr, src, target net.IP) []byte {
	b := ethHdr(mac, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, 0x86dd)
	icmp := append([]byte{136, 0, 0, 0, 0x20, 0, 0, 0}, target...)
	icmp = append(append(icmp, 2, 1), mac...)
	ip := []byte{0x60, 0, 0, 0, 0, byte(len(icmp)), 58, 255}
	ip = append(append(ip, src...), net.ParseIP("ff02::1").To16()...)
	return append(append(b, ip...), icmp...)
}

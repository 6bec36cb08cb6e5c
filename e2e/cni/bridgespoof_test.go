package cni_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/epair"
	"golang.org/x/sys/unix"
)

// lan is three pods on one bridge: an attacker, its victim and a neighbour
// whose traffic the attacker wants.
type lan struct {
	e              *env
	att, vic, nb   *attachment
	attMAC, vicMAC net.HardwareAddr
	on             bool // antiSpoofing
}

// TestBridgeAntiSpoofing: in bridge mode, dual stack, with anti-spoofing
// on, an attacker's ARP for its victim's address, frames from the victim's
// MAC, router advertisements and a changed MAC of its own are dropped and
// counted once each: the neighbour's ARP cache, the bridge's FDB and the
// neighbour's routes stay right, and honest ARP, IPv4, IPv6 with NDP and
// DAD are unharmed. With antiSpoofing false every attack gets through.
func TestBridgeAntiSpoofing(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, true)
		for i, on := range []bool{true, false} {
			t.Run(fmt.Sprintf("antiSpoofing=%v", on), func(t *testing.T) {
				l := newLAN(t, e, i, on)
				t.Run("honest traffic", l.honest)
				t.Run("ARP for the victim's address", l.arpAttack)
				t.Run("the victim's MAC", l.macAttack)
				t.Run("router advertisement", l.raAttack)
				t.Run("a changed MAC", l.ownMACChanged) // last: it cuts the attacker off
			})
		}
	})
}

func newLAN(t *testing.T, e *env, i int, on bool) *lan {
	t.Helper()
	list := e.list(t, netw{
		name: fmt.Sprintf("brspoof%d", i), mode: "bridge",
		subnets: []string{fmt.Sprintf("10.%d.0.0/24", 27+i), fmt.Sprintf("fd00:%d::/64", 27+i)},
		epair:   map[string]any{"bridge": fmt.Sprintf("epbr-spoof%d", i), "antiSpoofing": on},
	})
	l := &lan{e: e, on: on}
	l.att, l.vic, l.nb = e.add(t, list, e.pod(t)), e.add(t, list, e.pod(t)), e.add(t, list, e.pod(t))
	l.attMAC, _ = net.ParseMAC(mustLink(t, l.att.pod, "eth0").mac)
	l.vicMAC, _ = net.ParseMAC(mustLink(t, l.vic.pod, "eth0").mac)
	// A neighbour entry may be overridden at any time (not only a second
	// after its last update), so the attacks' outcome does not hang on timing.
	harness.MustRun(t, l.nb.pod, "sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0")
	return l
}

// spoofed returns the attacker's anti-spoofing counters.
func (l *lan) spoofed(t *testing.T) epair.Stats { return l.e.spoofStats(t, l.att) }

// wantBlocked fails unless the attack was blocked and counted exactly
// want more frames under its reason (with anti-spoofing on), or got
// through uncounted (off).
func (l *lan) wantBlocked(t *testing.T, what string, through bool, before epair.Stats, reason func(epair.Stats) uint64, want uint64) {
	t.Helper()
	after := l.spoofed(t)
	switch {
	case l.on && through:
		t.Errorf("%s got through anti-spoofing", what)
	case !l.on && !through:
		t.Errorf("antiSpoofing false: %s did not get through, so this test shows nothing", what)
	case l.on && reason(after)-reason(before) != want:
		t.Errorf("%s: counted %d, want %d (%+v -> %+v)", what, reason(after)-reason(before), want, before, after)
	case !l.on && after != (epair.Stats{}):
		t.Errorf("antiSpoofing false, yet counted %+v", after)
	}
}

// honest: ARP, IPv4, IPv6 (NDP) between all three and to the gateway,
// DAD of the link-local addresses, and DAD finding a real duplicate (the
// neighbour's solicitation from :: crosses, the victim's advertisement for
// its own address crosses back); nothing is counted.
func (l *lan) honest(t *testing.T) {
	pods := []*attachment{l.att, l.vic, l.nb}
	for _, from := range pods {
		for _, fam := range []int{4, 6} {
			ping(t, from.pod, from.ip(t, fam).Gateway.String())
			for _, to := range pods {
				if to != from {
					ping(t, from.pod, to.ip(t, fam).Address.IP.String())
				}
			}
		}
	}
	for _, fam := range []int{4, 6} {
		if got := neighMAC(t, l.nb.pod, l.vic.ip(t, fam).Address.IP.String()); got != l.vicMAC.String() {
			t.Errorf("IPv%d: the neighbour resolved the victim to %q, want %s", fam, got, l.vicMAC)
		}
	}
	for _, a := range pods {
		waitFor(t, "link-local DAD", func() bool {
			out := harness.MustRun(t, a.pod, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link")
			return strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative")
		})
	}
	dup := l.vic.ip(t, 6).Address.IP.String()
	harness.MustRun(t, l.nb.pod, "ip", "addr", "add", dup+"/128", "dev", "eth0")
	waitFor(t, "DAD to find the victim's address taken", func() bool {
		_, line := addrCIDR(t, l.nb.pod, "eth0", dup)
		return strings.Contains(line, "dadfailed")
	})
	harness.MustRun(t, l.nb.pod, "ip", "addr", "del", dup+"/128", "dev", "eth0")
	for _, a := range pods {
		if s := l.e.spoofStats(t, a); s != (epair.Stats{}) {
			t.Errorf("honest traffic of %s was dropped: %+v", a.id, s)
		}
	}
}

// arpAttack: a gratuitous ARP and an ARP reply to the neighbour, both
// claiming the victim's IPv4 address for the attacker's MAC. Blocked, the
// neighbour keeps the victim's MAC and its pings reach the victim, none the
// attacker; through, the neighbour's pings go to the attacker.
func (l *lan) arpAttack(t *testing.T) {
	vip, nbip := l.vic.ip(t, 4).Address.IP, l.nb.ip(t, 4).Address.IP
	nbMAC, _ := net.ParseMAC(mustLink(t, l.nb.pod, "eth0").mac)
	ping(t, l.nb.pod, vip.String())
	before := l.spoofed(t)
	inject(t, l.att.pod, garp(l.attMAC, vip.To4()))
	inject(t, l.att.pod, arpFrame(2, nbMAC, l.attMAC, vip.To4(), nbMAC, nbip.To4()))
	time.Sleep(100 * time.Millisecond)
	got := neighMAC(t, l.nb.pod, vip.String())
	l.wantBlocked(t, "ARP claiming the victim's address", got == l.attMAC.String(), before,
		func(s epair.Stats) uint64 { return s.SpoofARP }, 2)
	if l.on && got != l.vicMAC.String() {
		t.Errorf("the neighbour's ARP cache maps %s to %q, want the victim's %s", vip, got, l.vicMAC)
	}
	toVictim := func(f []byte) bool { return isEchoRequestTo(f, vip) }
	stop := sniff(t, l.att.pod, "eth0", toVictim)
	echos := inEchos(t, l.vic.pod)
	harness.Run(t, l.nb.pod, "ping", "-c", "3", "-i", "0.2", "-W", "1", vip.String())
	atAttacker, atVictim := stop(), inEchos(t, l.vic.pod)-echos
	if l.on && (atAttacker != 0 || atVictim != 3) {
		t.Errorf("the neighbour's 3 pings of the victim: %d reached the victim, %d the attacker; want 3 and 0", atVictim, atAttacker)
	}
	if !l.on && atAttacker == 0 {
		t.Errorf("antiSpoofing false: none of the neighbour's pings of the victim reached the attacker")
	}
}

// macAttack: a frame from the victim's MAC out of the attacker's port.
// Blocked, the bridge still maps the victim's MAC to the victim's port;
// through, the bridge moves it to the attacker's.
func (l *lan) macAttack(t *testing.T) {
	// The victim's own frame (an EtherType the filter passes once the MAC
	// is right) teaches the bridge where its MAC is, whatever the ARP
	// attack did to its IP traffic.
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	fromVictim := append(ethHdr(l.vicMAC, bcast, 0x88b5), make([]byte, 46)...)
	inject(t, l.vic.pod, fromVictim)
	time.Sleep(50 * time.Millisecond)
	br := bridgeName(t, l.vic)
	if got := fdbPort(t, l.e, br, l.vicMAC); got != l.vic.bEnd(t) {
		t.Fatalf("the bridge learnt the victim's MAC on %q, want %s", got, l.vic.bEnd(t))
	}
	before := l.spoofed(t)
	inject(t, l.att.pod, fromVictim)
	time.Sleep(50 * time.Millisecond)
	got := fdbPort(t, l.e, br, l.vicMAC)
	l.wantBlocked(t, "a frame from the victim's MAC", got == l.att.bEnd(t), before,
		func(s epair.Stats) uint64 { return s.SpoofMAC }, 1)
	if l.on && got != l.vic.bEnd(t) {
		t.Errorf("the bridge maps the victim's MAC to %q, want %s", got, l.vic.bEnd(t))
	}
}

// raAttack: a router advertisement from the attacker's link-local address.
// Blocked, it reaches neither the host nor the neighbour, which learns no
// router; through, the neighbour takes the attacker as a default router.
func (l *lan) raAttack(t *testing.T) {
	before := l.spoofed(t)
	reached := crosses(t, l.att.pod, l.e.host, l.att.bEnd(t), raFrame(l.attMAC))
	time.Sleep(100 * time.Millisecond)
	routes := strings.TrimSpace(harness.MustRun(t, l.nb.pod, "ip", "-6", "route", "show", "proto", "ra"))
	t.Logf("the neighbour's routes from advertisements: %q", routes)
	l.wantBlocked(t, "a router advertisement", reached, before, func(s epair.Stats) uint64 { return s.SpoofRA }, 1)
	if l.on && routes != "" {
		t.Errorf("the neighbour learnt routes from the attacker's advertisement:\n%s", routes)
	}
	if !l.on && !strings.Contains(routes, epair.EUI64LinkLocal(l.attMAC).String()) {
		t.Errorf("antiSpoofing false: the neighbour has no route via the attacker (%q)", routes)
	}
}

// ownMACChanged: the attacker changes its MAC. Blocked, it reaches nobody;
// through, it still does.
func (l *lan) ownMACChanged(t *testing.T) {
	before := l.spoofed(t)
	harness.MustRun(t, l.att.pod, "ip", "link", "set", "eth0", "address", "02:aa:bb:cc:dd:ee")
	_, err := harness.Run(t, l.att.pod, "ping", "-c", "2", "-i", "0.2", "-W", "1", l.nb.ip(t, 4).Address.IP.String())
	after := l.spoofed(t)
	switch {
	case l.on && (err == nil || after.SpoofMAC <= before.SpoofMAC):
		t.Errorf("changed MAC: ping %v, spoof_mac %d -> %d; want no answer and a rise", err, before.SpoofMAC, after.SpoofMAC)
	case !l.on && err != nil:
		t.Errorf("antiSpoofing false: a pod with a changed MAC was cut off: %v", err)
	}
}

// inject sends frame out of eth0 in pod.
func inject(t *testing.T, pod ns.NetNS, frame []byte) {
	t.Helper()
	fd := packetSocket(t, pod, "eth0")
	defer unix.Close(fd)
	if _, err := unix.Write(fd, frame); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// neighMAC is the link-layer address n's eth0 holds for ip ("" if none).
func neighMAC(t *testing.T, n ns.NetNS, ip string) string {
	t.Helper()
	var ents []struct {
		Lladdr string `json:"lladdr"`
	}
	if err := json.Unmarshal([]byte(harness.MustRun(t, n, "ip", "-j", "neigh", "show", "to", ip, "dev", "eth0")), &ents); err != nil {
		t.Fatal(err)
	}
	if len(ents) == 0 {
		return ""
	}
	return ents[0].Lladdr
}

// fdbPort is the port the bridge forwards frames for mac to ("" if none).
func fdbPort(t *testing.T, e *env, br string, mac net.HardwareAddr) string {
	t.Helper()
	var ents []struct {
		MAC    string `json:"mac"`
		Ifname string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(harness.MustRun(t, e.host, "bridge", "-j", "fdb", "show", "br", br)), &ents); err != nil {
		t.Fatal(err)
	}
	for _, f := range ents {
		if f.MAC == mac.String() && f.Ifname != br {
			return f.Ifname
		}
	}
	return ""
}

// inEchos is the Icmp InEchos counter of the namespace.
func inEchos(t *testing.T, n ns.NetNS) int { return snmpIcmp(t, n, "InEchos") }

// isEchoRequestTo reports whether f is an ICMP echo request to ip.
func isEchoRequestTo(f []byte, ip net.IP) bool {
	return len(f) >= 14+20+1 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[14+9] == 1 &&
		net.IP(f[14+16:14+20]).Equal(ip) && f[14+int(f[14]&0x0f)*4] == 8
}

// arpFrame is an ARP message of op from sha/spa to tha/tpa, sent to dst.
func arpFrame(op uint16, dst, sha net.HardwareAddr, spa net.IP, tha net.HardwareAddr, tpa net.IP) []byte {
	b := ethHdr(sha, dst, 0x0806)
	b = append(b, 0, 1, 8, 0, 6, 4, byte(op>>8), byte(op))
	b = append(append(b, sha...), spa...)
	b = append(append(b, tha...), tpa...)
	return append(b, make([]byte, 18)...) // pad to 60 bytes
}

// raFrame is a router advertisement (router lifetime 30 min, the source
// link-layer address option) from mac's EUI-64 link-local address to all
// nodes, with hop limit 255 and a right checksum, as a router sends it.
func raFrame(mac net.HardwareAddr) []byte {
	src, dst := epair.EUI64LinkLocal(mac).AsSlice(), net.ParseIP("ff02::1").To16()
	icmp := []byte{134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	icmp = append(append(icmp, 1, 1), mac...)
	binary.BigEndian.PutUint16(icmp[2:], icmpv6Checksum(src, dst, icmp))
	ip := []byte{0x60, 0, 0, 0, 0, byte(len(icmp)), 58, 255}
	ip = append(append(ip, src...), dst...)
	return append(append(ethHdr(mac, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, 0x86dd), ip...), icmp...)
}

// icmpv6Checksum is the ICMPv6 checksum of msg (its checksum field 0)
// with the IPv6 pseudo-header.
func icmpv6Checksum(src, dst, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src)
	add(dst)
	add([]byte{0, 0, byte(len(msg) >> 8), byte(len(msg)), 0, 0, 0, 58})
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

package cni_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/epair"
	"golang.org/x/sys/unix"
)

// TestDHCP: IPAM dhcp in bridge mode with anti-spoofing on. The reference
// dhcp plugin's daemon asks dnsmasq, serving the bridge in the host
// namespace, through the pod's a end (DISCOVER from 0.0.0.0 passes the
// filter); the pod gets a lease, pings the gateway, its forged source is
// still dropped (the daemon got the leased address), and DEL releases the
// lease: the DHCPRELEASE crosses the pair onto the bridge before the pair
// goes. (dnsmasq never sees it: the dhcp plugin's client, nclient4, sends
// it unicast from 0.0.0.0, which the server's kernel drops as a martian
// source, veth or epair alike; so the lease stays in dnsmasq's file until
// it expires.)
func TestDHCP(t *testing.T) {
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("needs dnsmasq (make deps)")
	}
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		const br, gw = "epbr-dhcp", "10.26.0.1"
		// dnsmasq serves an interface that exists and holds an address of
		// the range: the bridge is made first, and epair joins it (L2
		// only: the gateway is already there).
		harness.MustRun(t, e.host, "ip", "link", "add", br, "type", "bridge")
		harness.MustRun(t, e.host, "ip", "addr", "add", gw+"/24", "dev", br)
		harness.MustRun(t, e.host, "ip", "link", "set", br, "up")
		dir := t.TempDir()
		leases, dlog := filepath.Join(dir, "leases"), filepath.Join(dir, "dnsmasq.log")
		background(t, e.host, dlog, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
			"--interface="+br, "--bind-interfaces", "--dhcp-range=10.26.0.100,10.26.0.149,255.255.255.0,2m",
			"--dhcp-option=option:router,"+gw, "--dhcp-leasefile="+leases, "--pid-file="+filepath.Join(dir, "dnsmasq.pid"),
			"--no-ping", "--dhcp-authoritative", "--log-dhcp", "--user=root")
		sock := filepath.Join(dir, "dhcp.sock")
		background(t, e.host, filepath.Join(dir, "dhcp.log"), filepath.Join(e.cni.PluginDir, "dhcp"), "daemon",
			"-socketpath", sock, "-timeout", "5s", "-resendtimeout", "20s")
		waitFor(t, "dhcp daemon socket", func() bool { _, err := os.Stat(sock); return err == nil })

		list := e.list(t, netw{name: "dhcp", mode: "bridge", epair: map[string]any{
			"bridge": br, "isGateway": false,
			"ipam": map[string]any{"type": "dhcp", "daemonSocketPath": sock},
		}})
		a := e.add(t, list, e.pod(t))
		ipc := a.ip(t, 4)
		lease := ipc.Address.IP.String()
		t.Logf("lease %s, gateway %s, routes %v", ipc.Address.String(), ipc.Gateway, a.res.Routes)
		if !ipc.Gateway.Equal(net.ParseIP(gw)) || ipc.Address.IP.To4()[3] < 100 || ipc.Address.IP.To4()[3] > 149 {
			t.Errorf("lease %v via %v, want 10.26.0.100-149 via %s", ipc.Address, ipc.Gateway, gw)
		}
		if p := e.pairOf(t, a); !p.AntiSpoofing || len(p.Owner.IPs) != 1 || p.Owner.IPs[0] != ipc.Address.String() {
			t.Errorf("pair anti-spoofing %v, owner addresses %v; want on, [%s]", p.AntiSpoofing, p.Owner.IPs, ipc.Address.String())
		}
		if !strings.Contains(readFile(t, leases), lease) {
			t.Errorf("dnsmasq's lease file does not hold %s:\n%s", lease, readFile(t, leases))
		}
		ping(t, a.pod, gw)
		if err := e.cni.Check(list, a.rt); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		// The daemon filters with the leased address now.
		mac, _ := net.ParseMAC(mustLink(t, a.pod, "eth0").mac)
		brMAC, _ := net.ParseMAC(hostLink(t, e, br).Attrs().HardwareAddr.String())
		if !crosses(t, a.pod, e.host, a.bEnd(t), udp4(mac, brMAC, ipc.Address.IP.To4(), net.ParseIP(gw).To4())) {
			t.Errorf("a datagram from the leased address did not reach the host")
		}
		if crosses(t, a.pod, e.host, a.bEnd(t), udp4(mac, brMAC, net.ParseIP("10.26.0.77").To4(), net.ParseIP(gw).To4())) {
			t.Errorf("a datagram from another address of the range reached the host")
		}
		if s := e.spoofStats(t, a); s != (epair.Stats{SpoofIP: 1}) {
			t.Errorf("anti-spoofing counted %+v, want the one forged datagram (DHCP passed)", s)
		}

		stop := sniff(t, e.host, br, func(f []byte) bool { return dhcpMessage(f, mac) == dhcpRelease })
		e.del(t, a)
		if n := stop(); n != 1 {
			t.Errorf("%d DHCPRELEASEs from %s reached the bridge at DEL, want 1", n, mac)
		}
		e.assertGone(t, a)

		// Routed mode has no L2 segment for a DHCP server: a clear error.
		wantConfigError(t, e, netw{name: "dhcprouted", epair: map[string]any{
			"ipam": map[string]any{"type": "dhcp", "daemonSocketPath": sock}}}, "dhcp", "bridge")
	})
}

const dhcpRelease = 7

// dhcpMessage is the DHCP message type (option 53) of an Ethernet frame
// carrying a BOOTP request from chaddr, or 0.
func dhcpMessage(f []byte, chaddr net.HardwareAddr) byte {
	const bootp, cookie = 14 + 20 + 8, 236
	if len(f) < bootp+cookie+4 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14] != 0x45 || f[14+9] != 17 ||
		binary.BigEndian.Uint16(f[14+20+2:]) != 67 || !bytes.Equal(f[bootp+28:bootp+34], chaddr) {
		return 0
	}
	for opts := f[bootp+cookie+4:]; len(opts) >= 2 && opts[0] != 255; opts = opts[2+int(opts[1]):] {
		if opts[0] == 53 && opts[1] == 1 && len(opts) >= 3 {
			return opts[2]
		}
		if len(opts) < 2+int(opts[1]) {
			break
		}
	}
	return 0
}

// sniff counts the frames on ifName in n that match, from now until the
// returned stop is called.
func sniff(t *testing.T, n ns.NetNS, ifName string, match func([]byte) bool) (stop func() int) {
	t.Helper()
	fd := packetSocket(t, n, ifName)
	done, count := make(chan struct{}), make(chan int, 1)
	go func() {
		defer unix.Close(fd)
		buf, seen := make([]byte, 65536), 0
		for {
			select {
			case <-done:
				count <- seen
				return
			default:
			}
			if k, _, err := unix.Recvfrom(fd, buf, 0); err == nil && match(buf[:k]) {
				seen++
			}
		}
	}()
	var once sync.Once
	stop = func() int {
		n := 0
		once.Do(func() {
			time.Sleep(200 * time.Millisecond) // what is on its way
			close(done)
			n = <-count
		})
		return n
	}
	t.Cleanup(func() { stop() })
	return stop
}

// background runs a command in namespace n until the test ends, its output
// in logPath (shown when the test fails); cleanup kills it.
func background(t *testing.T, n ns.NetNS, logPath string, args ...string) {
	t.Helper()
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + n.Path(), "--"}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", args[0], err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		out.Close()
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(args[0]), readFile(t, logPath))
		}
	})
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

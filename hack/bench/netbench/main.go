// Command netbench is the traffic generator of hack/bench/run.sh: a UDP
// blaster that sends with sendmmsg(2) batches and a sink that receives with
// recvmmsg(2) (x/net/ipv4's WriteBatch and ReadBatch), so neither end is the
// bottleneck of a packet-rate test; a TCP request/response pair that times
// every transaction; and small helpers that turn iperf3 and ping output into
// numbers. Every measuring subcommand prints one line of JSON on stdout.
//
//	netbench udp-sink   -listen ADDR [-duration D] [-idle D]
//	netbench udp-blast  -to ADDR [-size 64] [-duration D] [-senders N] [-batch 64]
//	netbench rr-server  -listen ADDR
//	netbench rr-client  -to ADDR [-duration D]
//	netbench iperf      < iperf3 -J output       -> "Gbit/s retransmits"
//	netbench quantiles  < numbers, one a line    -> "n avg p50 p99"
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "udp-sink":
		err = udpSink(args)
	case "udp-blast":
		err = udpBlast(args)
	case "rr-server":
		err = rrServer(args)
	case "rr-client":
		err = rrClient(args)
	case "iperf":
		err = iperfSum(os.Stdin)
	case "quantiles":
		err = quantiles(os.Stdin)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "netbench %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: netbench udp-sink|udp-blast|rr-server|rr-client|iperf|quantiles [flags]")
	os.Exit(2)
}

func printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}

// sockaddr turns "ip:port" into a socket address and its family.
func sockaddr(s string) (unix.Sockaddr, int, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, 0, err
	}
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, unix.AF_INET, nil
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, unix.AF_INET6, nil
}

// socket makes a blocking socket (the calling goroutine's thread blocks in
// the kernel, as a C benchmark would: no netpoller between the packet and
// the count).
func socket(family, typ int) (int, error) {
	return unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
}

// ---- UDP

// udpSnmp reads the Udp counters of the current network namespace.
func udpSnmp() map[string]uint64 {
	m := map[string]uint64{}
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return m
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "Udp: ") {
			continue
		}
		f := strings.Fields(l)[1:]
		if names == nil {
			names = f
			continue
		}
		for i, v := range f {
			if i < len(names) {
				m[names[i]], _ = strconv.ParseUint(v, 10, 64)
			}
		}
	}
	return m
}

// udpConn is a UDP socket of ap's family, bound to ap (listen) or
// connected to it, and its batch calls: golang.org/x/net's PacketConn is
// recvmmsg(2)/sendmmsg(2) on Linux. The ipv4 one serves IPv6 sockets too:
// the batch calls take no control messages, the only part that differs
// by family.
func udpConn(ap netip.AddrPort, listen bool) (*net.UDPConn, *ipv4.PacketConn, error) {
	network := "udp6"
	if ap.Addr().Is4() {
		network = "udp4"
	}
	var c *net.UDPConn
	var err error
	if listen {
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
	} else {
		c, err = net.DialUDP(network, nil, net.UDPAddrFromAddrPort(ap))
	}
	if err != nil {
		return nil, nil, err
	}
	return c, ipv4.NewPacketConn(c), nil
}

// forceBuf sets SO_RCVBUFFORCE or SO_SNDBUFFORCE (root: past the sysctl
// maximum), falling back to the capped SO_RCVBUF or SO_SNDBUF.
func forceBuf(c *net.UDPConn, opt, capped, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, size); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, capped, size)
		}
	})
	return errors.Join(err, serr)
}

// messages is n messages of one buffer each: the buffer bufs(i).
func messages(n int, bufs func(i int) []byte) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{bufs(i)}
	}
	return ms
}

func udpSink(args []string) error {
	fs := flag.NewFlagSet("udp-sink", flag.ExitOnError)
	listen := fs.String("listen", "", "address to bind, ip:port")
	duration := fs.Duration("duration", 12*time.Second, "how long to listen, from the start (start the sender after the sink, and give this the sender's duration plus a margin for the queues to drain)")
	idle := fs.Duration("idle", 0, "also stop after this long without a datagram once one has arrived (0: never)")
	rcvbuf := fs.Int("rcvbuf", 64<<20, "SO_RCVBUF(FORCE) in bytes")
	fs.Parse(args)
	ap, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return err
	}
	// Not locked to a thread: the socket is the netpoller's, and the
	// thread that sees it readable runs the read at once instead of
	// handing it to a locked one (measured: more packets a second).
	c, pc, err := udpConn(ap, true)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := forceBuf(c, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, *rcvbuf); err != nil {
		// Go on with the default: a small buffer shows as rcvbuf_errors.
		fmt.Fprintln(os.Stderr, "netbench udp-sink: receive buffer:", err)
	}
	before := udpSnmp()

	const batch = 256
	ms := messages(batch, func(int) []byte { return make([]byte, 2048) })
	var received uint64
	var first, last time.Time
	deadline := time.Now().Add(*duration)
	for {
		// Wake at least every 100 ms to check the deadline and -idle.
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		// MSG_WAITFORONE: take what is queued after the first datagram
		// without waiting for a full batch.
		n, err := pc.ReadBatch(ms, unix.MSG_WAITFORONE)
		now := time.Now()
		if n > 0 {
			if received == 0 {
				first = now
			}
			received += uint64(n)
			last = now
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, unix.EINTR) {
			return err
		}
		if now.After(deadline) || (*idle > 0 && received > 0 && now.Sub(last) > *idle) {
			break
		}
	}
	after := udpSnmp()
	secs := last.Sub(first).Seconds()
	pps := 0.0
	if secs > 0 {
		pps = float64(received) / secs
	}
	return printJSON(map[string]any{
		"received": received, "pps": math.Round(pps), "seconds": round3(secs),
		"rcvbuf_errors": after["RcvbufErrors"] - before["RcvbufErrors"],
	})
}

func udpBlast(args []string) error {
	fs := flag.NewFlagSet("udp-blast", flag.ExitOnError)
	to := fs.String("to", "", "destination, ip:port")
	size := fs.Int("size", 64, "UDP payload bytes")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	senders := fs.Int("senders", 1, "sending threads, each with its own socket (and source port)")
	batch := fs.Int("batch", 64, "datagrams per sendmmsg")
	fs.Parse(args)
	ap, err := netip.ParseAddrPort(*to)
	if err != nil {
		return err
	}
	var sent, failed atomic.Uint64
	var wg sync.WaitGroup
	errc := make(chan error, *senders)
	start := time.Now()
	deadline := start.Add(*duration)
	for s := 0; s < *senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, bad, err := blast(ap, *size, *batch, deadline)
			if err != nil {
				errc <- err
			}
			sent.Add(n)
			failed.Add(bad)
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	select {
	case err := <-errc:
		return err
	default:
	}
	return printJSON(map[string]any{
		"sent": sent.Load(), "pps": math.Round(float64(sent.Load()) / secs), "seconds": round3(secs),
		"send_errors": failed.Load(),
	})
}

// blast is one sender: its own thread and connected socket, batches of the
// same payload until the deadline. It returns the datagrams sent and those
// of the batches that failed.
func blast(to netip.AddrPort, size, batch int, deadline time.Time) (sent, failed uint64, err error) {
	runtime.LockOSThread()
	c, pc, err := udpConn(to, false)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if err := forceBuf(c, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, 4<<20); err != nil {
		// Go on with the default: it works, with more ENOBUFS.
		fmt.Fprintln(os.Stderr, "netbench udp-blast: send buffer:", err)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	ms := messages(batch, func(int) []byte { return payload })
	for i := 0; ; i++ {
		// Checking the clock every 16 batches keeps it off the profile.
		if i&15 == 0 && time.Now().After(deadline) {
			return sent, failed, nil
		}
		n, err := pc.WriteBatch(ms, 0)
		if err != nil {
			// ENOBUFS, ECONNREFUSED (an ICMP from a sink not yet bound) ...:
			// count the batch as not sent and go on.
			failed += uint64(len(ms))
			continue
		}
		// The socket is non-blocking (the netpoller waits when it is
		// full), so a call may take only part of a batch: n is what went.
		sent += uint64(n)
	}
}

// ---- TCP request/response

func rrServer(args []string) error {
	fs := flag.NewFlagSet("rr-server", flag.ExitOnError)
	listen := fs.String("listen", "", "address to listen on, ip:port")
	fs.Parse(args)
	sa, fam, err := sockaddr(*listen)
	if err != nil {
		return err
	}
	lfd, err := socket(fam, unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(lfd, sa); err != nil {
		return err
	}
	if err := unix.Listen(lfd, 16); err != nil {
		return err
	}
	for {
		fd, _, err := unix.Accept(lfd)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		go func() {
			runtime.LockOSThread()
			defer unix.Close(fd)
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
			b := make([]byte, 1)
			for {
				if n, err := unix.Read(fd, b); err != nil || n == 0 {
					return
				}
				if _, err := unix.Write(fd, b); err != nil {
					return
				}
			}
		}()
	}
}

func rrClient(args []string) error {
	fs := flag.NewFlagSet("rr-client", flag.ExitOnError)
	to := fs.String("to", "", "server, ip:port")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	fs.Parse(args)
	sa, fam, err := sockaddr(*to)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	fd, err := socket(fam, unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for i := 0; ; i++ {
		if err = unix.Connect(fd, sa); err == nil {
			break
		}
		if i == 50 {
			return err
		}
		time.Sleep(100 * time.Millisecond) // the server may still be starting
		unix.Close(fd)
		if fd, err = socket(fam, unix.SOCK_STREAM); err != nil {
			return err
		}
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	lat := make([]float64, 0, 1<<20)
	b := []byte{'x'}
	start := time.Now()
	deadline := start.Add(*duration)
	for {
		t0 := time.Now()
		if t0.After(deadline) {
			break
		}
		if _, err := unix.Write(fd, b); err != nil {
			return err
		}
		if n, err := unix.Read(fd, b); err != nil || n != 1 {
			return fmt.Errorf("read: %d, %v", n, err)
		}
		lat = append(lat, float64(time.Since(t0).Nanoseconds())/1e3)
	}
	secs := time.Since(start).Seconds()
	slices.Sort(lat)
	return printJSON(map[string]any{
		"transactions": len(lat), "per_sec": math.Round(float64(len(lat)) / secs),
		"p50_us": round1(q(lat, 0.50)), "p99_us": round1(q(lat, 0.99)),
	})
}

// ---- helpers for the script

// iperfSum prints the received throughput of an iperf3 -J run in Gbit/s and
// the sender's retransmits.
func iperfSum(f *os.File) error {
	var r struct {
		End struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(f).Decode(&r); err != nil {
		return err
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	fmt.Printf("%.3f %d\n", r.End.SumReceived.BitsPerSecond/1e9, r.End.SumSent.Retransmits)
	return nil
}

var firstNumber = regexp.MustCompile(`^\s*([-+0-9.eE]+)`)

// quantiles reads one number a line (other lines are skipped) and prints
// "n avg p50 p99".
func quantiles(f *os.File) error {
	var v []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := firstNumber.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if x, err := strconv.ParseFloat(m[1], 64); err == nil {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return errors.New("no numbers")
	}
	slices.Sort(v)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	fmt.Printf("%d %.4g %.4g %.4g\n", len(v), sum/float64(len(v)), q(v, 0.5), q(v, 0.99))
	return nil
}

// q is the nearest-rank quantile of sorted v.
func q(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

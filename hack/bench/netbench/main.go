// Command netbench is the traffic generator of hack/bench/run.sh: a UDP
// blaster that sends with sendmmsg(2) batches and a sink that receives with
// recvmmsg(2) (so neither end is the bottleneck of a packet-rate test), a TCP
// request/response pair that times every transaction, and small helpers that
// turn iperf3 and ping output into numbers. Every measuring subcommand prints
// one line of JSON on stdout.
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
	"unsafe"

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

func udpSink(args []string) error {
	fs := flag.NewFlagSet("udp-sink", flag.ExitOnError)
	listen := fs.String("listen", "", "address to bind, ip:port")
	duration := fs.Duration("duration", 12*time.Second, "how long to listen, from the start (start the sender after the sink, and give this the sender's duration plus a margin for the queues to drain)")
	idle := fs.Duration("idle", 0, "also stop after this long without a datagram once one has arrived (0: never)")
	rcvbuf := fs.Int("rcvbuf", 64<<20, "SO_RCVBUF(FORCE) in bytes")
	fs.Parse(args)
	sa, fam, err := sockaddr(*listen)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	fd, err := socket(fam, unix.SOCK_DGRAM)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, *rcvbuf); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, *rcvbuf)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	before := udpSnmp()

	const batch = 256
	bufs := make([][2048]byte, batch)
	iovs := make([]unix.Iovec, batch)
	msgs := make([]unix.Mmsghdr, batch)
	for i := range msgs {
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	var received uint64
	var first, last time.Time
	deadline := time.Now().Add(*duration)
	for {
		// MSG_WAITFORONE: block for the first datagram (at most SO_RCVTIMEO),
		// then take what is queued without waiting for a full batch.
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), batch, unix.MSG_WAITFORONE, 0, 0)
		now := time.Now()
		if errno == 0 && n > 0 {
			if received == 0 {
				first = now
			}
			received += uint64(n)
			last = now
		} else if errno != 0 && errno != unix.EAGAIN && errno != unix.EINTR {
			return errno
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
	sa, fam, err := sockaddr(*to)
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
			runtime.LockOSThread()
			fd, err := socket(fam, unix.SOCK_DGRAM)
			if err != nil {
				errc <- err
				return
			}
			defer unix.Close(fd)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
			if err := unix.Connect(fd, sa); err != nil {
				errc <- err
				return
			}
			payload := make([]byte, *size)
			for i := range payload {
				payload[i] = byte(i)
			}
			iov := unix.Iovec{Base: &payload[0]}
			iov.SetLen(len(payload))
			msgs := make([]unix.Mmsghdr, *batch)
			for i := range msgs {
				msgs[i].Hdr.Iov = &iov
				msgs[i].Hdr.SetIovlen(1)
			}
			var n, bad uint64
			for i := 0; ; i++ {
				// Checking the clock every 16 batches keeps it off the profile.
				if i&15 == 0 && time.Now().After(deadline) {
					break
				}
				r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
				if errno != 0 {
					// ENOBUFS, ECONNREFUSED (an ICMP from a sink not yet bound) ...:
					// count the batch as not sent and go on.
					bad += uint64(len(msgs))
					continue
				}
				n += uint64(r)
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

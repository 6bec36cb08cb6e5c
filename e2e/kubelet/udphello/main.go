// Command udphello is the UDP half of the kubelet end-to-end suite's
// hostPort checks (busybox nc, which serves the TCP hellos, has no UDP).
//
//	udphello -listen :8081 MESSAGE   answers every datagram with MESSAGE
//	udphello HOST:PORT               sends one datagram, prints the answer
//
// The client exits non-zero when no answer comes within -timeout (or the
// port is refused), so that a check can fail. Build it static
// (CGO_ENABLED=0): e2e/kubelet/run.sh packs it into the test image.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "", "serve on this UDP address")
	timeout := flag.Duration("timeout", 3*time.Second, "client: how long to wait for the answer")
	flag.Parse()
	var err error
	switch {
	case *listen != "" && flag.NArg() == 1:
		err = serve(*listen, []byte(flag.Arg(0)+"\n"))
	case *listen == "" && flag.NArg() == 1:
		err = ask(flag.Arg(0), *timeout)
	default:
		err = errors.New("usage: udphello -listen ADDR MESSAGE | udphello [-timeout D] HOST:PORT")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "udphello:", err)
		os.Exit(1)
	}
}

// serve answers each datagram with msg, to whoever sent it, until the
// socket fails.
func serve(addr string, msg []byte) error {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for {
		_, peer, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if _, err := c.WriteTo(msg, peer); err != nil {
			return fmt.Errorf("answer %v: %w", peer, err)
		}
	}
}

// ask sends one datagram to addr and prints the answer. The socket is
// connected, so only an answer from addr itself counts: through a DNAT,
// one that conntrack translated back.
func ask(addr string, timeout time.Duration) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("deadline: %w", err)
	}
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return fmt.Errorf("send to %s: %w", addr, err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("answer from %s: %w", addr, err)
	}
	_, err = os.Stdout.Write(buf[:n])
	return err
}

// Command forwarder is the reference row of `make bench`: the simplest
// userspace cable between two TAP devices, one goroutine per direction,
// each a blocking read then a write, the 12-byte virtio-net header passed
// through untouched so GSO super-frames cross whole. It has none of the
// queue core (no queues, no batching, no shaping or filtering), so epair
// is expected to be at least as fast on every row.
//
// Usage (as root): forwarder A B — creates TAPs A and B with the offloads
// epair asks for, prints "ready" and forwards until killed. Move the two
// devices into their namespaces after "ready"; the descriptors follow.
package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const vnetHdrLen = 12 // struct virtio_net_hdr_v1, as epair's TAPs use

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: forwarder TAP-A TAP-B")
		os.Exit(2)
	}
	a, err := openTap(os.Args[1])
	if err == nil {
		var b *os.File
		if b, err = openTap(os.Args[2]); err == nil {
			fmt.Println("ready")
			go forward(a, b)
			forward(b, a)
		}
	}
	fmt.Fprintln(os.Stderr, "forwarder:", err)
	os.Exit(1)
}

// openTap creates a TAP with a virtio-net header and checksum, TSO and (on
// kernels that know it) USO offloads, so the stack hands it super-frames.
// The descriptor is non-blocking so that os.File parks reads in Go's poller
// rather than in a thread.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("tap %s: TUNSETIFF: %w", name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		return nil, fmt.Errorf("tap %s: TUNSETVNETHDRSZ: %w", name, err)
	}
	tso := unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	if unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tso|unix.TUN_F_USO4|unix.TUN_F_USO6) != nil {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tso); err != nil {
			return nil, fmt.Errorf("tap %s: TUNSETOFFLOAD: %w", name, err)
		}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// forward copies frames from src to dst until either fails. A write the
// peer refuses (its link down, say) drops that frame, as a cable would.
func forward(src, dst *os.File) {
	buf := make([]byte, vnetHdrLen+65535+18)
	for {
		n, err := src.Read(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "forwarder: read:", err)
			os.Exit(1)
		}
		dst.Write(buf[:n])
	}
}

package tap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// requirePrivileges skips tests that need to create TAP devices and network
// namespaces when the process cannot.
func requirePrivileges(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create TAP devices and network namespaces")
	}
	f, err := os.OpenFile(tunPath, os.O_RDWR, 0)
	if err != nil {
		t.Skipf("needs root to create TAP devices and network namespaces: %v", err)
	}
	f.Close()
}

// inNS runs fn with the goroutine's thread inside a fresh network namespace
// that is deleted when the test ends. fn reports failure by returning an
// error, since t.Fatal must not be called from ns.Do's goroutine.
func inNS(t *testing.T, fn func(t *testing.T) error) {
	t.Helper()
	requirePrivileges(t)
	netns, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() {
		netns.Close()
		if err := testutils.UnmountNS(netns); err != nil {
			t.Errorf("unmount netns: %v", err)
		}
	})
	if err := netns.Do(func(ns.NetNS) error { return fn(t) }); err != nil {
		t.Fatal(err)
	}
}

// create makes a TAP device that is closed when the test ends, before the
// namespace goes (an open tun file keeps its namespace alive).
func create(t *testing.T, name string, queues int) (*Device, error) {
	d, err := Create(name, queues)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.Close() })
	return d, nil
}

// attach is Attach with the same cleanup as create.
func attach(t *testing.T, name string, queues int) (*Device, error) {
	d, err := Attach(name, queues)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.Close() })
	return d, nil
}

// tapLink looks name up and checks it is a TAP device.
func tapLink(name string) (*netlink.Tuntap, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	tt, ok := link.(*netlink.Tuntap)
	if !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
		return nil, fmt.Errorf("%s is %T (%s), not a tap", name, link, link.Type())
	}
	return tt, nil
}

func TestCreate(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		link, err := tapLink("t0")
		if err != nil {
			return err
		}
		t.Logf("offloads accepted: %#x", d.Offloads)
		switch {
		case d.Name != "t0" || d.Index != link.Index:
			return fmt.Errorf("device %s/%d, link %s/%d", d.Name, d.Index, link.Name, link.Index)
		case len(d.Queues) != 1:
			return fmt.Errorf("%d queues, want 1", len(d.Queues))
		case link.NonPersist:
			return errors.New("device is not persistent")
		case link.Flags&netlink.TUNTAP_VNET_HDR == 0 || link.Flags&netlink.TUNTAP_NO_PI == 0:
			return fmt.Errorf("flags %#x lack VNET_HDR or NO_PI", link.Flags)
		case d.Offloads&(OffloadCsum|OffloadTSO4|OffloadTSO6) != OffloadCsum|OffloadTSO4|OffloadTSO6:
			return fmt.Errorf("offloads %#x lack CSUM/TSO", d.Offloads)
		}
		return checkHdrLen(d.Queues[0])
	})
}

// checkHdrLen reads the header size back with TUNGETVNETHDRSZ.
func checkHdrLen(q *Queue) error {
	n, err := unix.IoctlGetInt(q.Fd(), unix.TUNGETVNETHDRSZ)
	if err != nil {
		return fmt.Errorf("TUNGETVNETHDRSZ: %w", err)
	}
	if n != epair.VnetHdrLen {
		return fmt.Errorf("vnet header size %d, want %d", n, epair.VnetHdrLen)
	}
	return nil
}

func TestCreateExisting(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		if _, err := Create("t0", 1); !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("second Create: got %v, want EEXIST", err)
		}
		link, err := tapLink("t0")
		if err != nil {
			return fmt.Errorf("after second Create: %w", err)
		}
		if link.Index != d.Index || link.NonPersist {
			return fmt.Errorf("existing tap disturbed: index %d (was %d), nonpersist %v", link.Index, d.Index, link.NonPersist)
		}
		return d.SetCarrier(true)
	})
}

func TestCreateOverOtherLink(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		tun := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "tun0"}, Mode: netlink.TUNTAP_MODE_TUN}
		if err := netlink.LinkAdd(tun); err != nil {
			return fmt.Errorf("add tun: %w", err)
		}
		for _, f := range tun.Fds {
			f.Close()
		}
		for _, name := range []string{"br0", "tun0"} {
			if err := createAndAttachFail(name); err != nil {
				return err
			}
		}
		return nil
	})
}

// createAndAttachFail checks that Create and Attach both refuse the
// non-tap link name and leave it alone.
func createAndAttachFail(name string) error {
	before, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if _, err := Create(name, 1); !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("Create over %s: got %v, want EEXIST", name, err)
	}
	_, err = Attach(name, 1)
	if err == nil {
		return fmt.Errorf("Attach to %s succeeded", name)
	}
	after, lerr := netlink.LinkByName(name)
	if lerr != nil || after.Attrs().Index != before.Attrs().Index {
		return fmt.Errorf("%s disturbed: %v", name, lerr)
	}
	return nil
}

func TestBadArguments(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		for _, tc := range []struct {
			name   string
			queues int
		}{{"", 1}, {"tap%d", 1}, {"a-name-far-too-long", 1}, {"t0", 0}} {
			if _, err := Create(tc.name, tc.queues); !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("Create(%q, %d): got %v, want EINVAL", tc.name, tc.queues, err)
			}
		}
		if linkThere("tap0") || linkThere("t0") {
			return errors.New("a rejected Create left a device behind")
		}
		return nil
	})
}

func TestAttachMissing(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		if _, err := Attach("nope0", 1); !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("Attach of a missing link: got %v, want ENODEV", err)
		}
		if linkThere("nope0") {
			return errors.New("Attach created a device")
		}
		return nil
	})
}

func TestPersistAndAttach(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		if err := d.Close(); err != nil {
			return err
		}
		if !linkThere("t0") {
			return errors.New("device gone after Close")
		}
		d2, err := attach(t, "t0", 1)
		if err != nil {
			return err
		}
		if d2.Index != d.Index || d2.Offloads != d.Offloads {
			return fmt.Errorf("attached %d/%#x, created %d/%#x", d2.Index, d2.Offloads, d.Index, d.Offloads)
		}
		return checkHdrLen(d2.Queues[0])
	})
}

func TestDestroy(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		if err := d.Destroy(); err != nil {
			return err
		}
		if linkThere("t0") {
			return errors.New("device still there after Destroy")
		}
		return nil
	})
}

func TestDestroyAfterAttach(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		d.Close()
		if d, err = attach(t, "t0", 1); err != nil {
			return err
		}
		if err := d.Destroy(); err != nil {
			return err
		}
		if linkThere("t0") {
			return errors.New("device still there after Destroy")
		}
		return nil
	})
}

func TestDestroyAfterClose(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		d.Close()
		if err := d.Destroy(); err != nil {
			return err
		}
		if linkThere("t0") {
			return errors.New("device still there after Close and Destroy")
		}
		return nil
	})
}

func TestMultiQueue(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 2)
		if err != nil {
			return err
		}
		if len(d.Queues) != 2 || d.Queues[0].Fd() == d.Queues[1].Fd() {
			return fmt.Errorf("queues %v, want 2 distinct", d.Queues)
		}
		link, err := tapLink("t0")
		if err != nil {
			return err
		}
		if link.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 || link.Queues != 2 {
			return fmt.Errorf("link flags %#x, %d queues; want multi-queue with 2", link.Flags, link.Queues)
		}
		d.Close()
		for _, n := range []int{2, 1} {
			d2, err := attach(t, "t0", n)
			if err != nil {
				return fmt.Errorf("Attach with %d queues: %w", n, err)
			}
			d2.Close()
		}
		return nil
	})
}

func TestAttachSingleQueueWithTwo(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		d.Close()
		if _, err := Attach("t0", 2); err == nil {
			return errors.New("attached 2 queues to a single-queue device")
		}
		return nil
	})
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data set; the kernel's ifreq is 40 bytes.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [40 - unix.IFNAMSIZ - 8]byte
}

// ethtoolGet runs one ETHTOOL_G* command that returns an ethtool_value.
func ethtoolGet(name string, cmd uint32) (uint32, error) {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(sock)
	val := ethtoolValue{cmd: cmd}
	ifr := ifreqData{data: unsafe.Pointer(&val)}
	copy(ifr.name[:], name)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(sock), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&val)
	if errno != 0 {
		return 0, fmt.Errorf("SIOCETHTOOL %#x: %w", cmd, errno)
	}
	return val.data, nil
}

func TestOffloadFeatures(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		if _, err := create(t, "t0", 1); err != nil {
			return err
		}
		for _, c := range []struct {
			name string
			cmd  uint32
		}{{"tx-checksumming", unix.ETHTOOL_GTXCSUM}, {"tcp-segmentation-offload", unix.ETHTOOL_GTSO}} {
			on, err := ethtoolGet("t0", c.cmd)
			if err != nil {
				return err
			}
			if on == 0 {
				return fmt.Errorf("%s is off", c.name)
			}
		}
		return nil
	})
}

// upWithAddr sets the device up with address cidr.
func upWithAddr(d *Device, cidr string) (netlink.Link, error) {
	link, err := netlink.LinkByIndex(d.Index)
	if err != nil {
		return nil, err
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return nil, err
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return nil, fmt.Errorf("add address: %w", err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set up: %w", err)
	}
	return link, nil
}

// sendUDP sends one datagram to addr from the calling thread's namespace,
// which makes the kernel resolve addr with ARP first.
func sendUDP(addr string) error {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte("hello"))
	return err
}

// frame is one result of ReadFrame.
type frame struct {
	b   []byte
	err error
}

// readFrames runs ReadFrame in a loop, sending each frame to the channel
// until the queue is closed.
func readFrames(q *Queue, size int) <-chan frame {
	ch := make(chan frame, 16)
	go func() {
		defer close(ch)
		for {
			buf, n, err := q.ReadFrame(func() []byte { return make([]byte, size) }, func([]byte) {})
			select {
			case ch <- frame{b: buf[:n], err: err}:
			default: // nobody is listening any more; do not block
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// nextARP returns the first ARP frame from ch, skipping other traffic such
// as the IPv6 router solicitations a new link sends.
func nextARP(ch <-chan frame) ([]byte, error) {
	timeout := time.After(5 * time.Second)
	for {
		select {
		case f := <-ch:
			if f.err != nil {
				return nil, f.err
			}
			if len(f.b) >= epair.VnetHdrLen+14 && binary.BigEndian.Uint16(f.b[epair.VnetHdrLen+12:]) == unix.ETH_P_ARP {
				return f.b[epair.VnetHdrLen:], nil
			}
		case <-timeout:
			return nil, errors.New("no ARP request within 5s")
		}
	}
}

// arpReply builds a vnet header and an Ethernet ARP reply answering req
// (an Ethernet ARP request) as if from hw.
func arpReply(req []byte, hw net.HardwareAddr) []byte {
	arp := req[14:]
	b := make([]byte, epair.VnetHdrLen, epair.VnetHdrLen+42)
	b = append(b, arp[8:14]...) // to the requester's MAC
	b = append(b, hw...)
	b = binary.BigEndian.AppendUint16(b, unix.ETH_P_ARP)
	b = append(b, arp[:6]...)               // htype, ptype, hlen, plen
	b = binary.BigEndian.AppendUint16(b, 2) // op: reply
	b = append(b, hw...)                    // sender MAC
	b = append(b, arp[24:28]...)            // sender IP: the target asked for
	b = append(b, arp[8:18]...)             // target MAC and IP: the requester
	return b
}

func TestTraffic(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		if _, err := upWithAddr(d, "10.99.0.1/24"); err != nil {
			return err
		}
		frames := readFrames(d.Queues[0], epair.FrameSize)
		if err := sendUDP("10.99.0.2:9"); err != nil {
			return err
		}
		req, err := nextARP(frames)
		if err != nil {
			return err
		}
		if op := binary.BigEndian.Uint16(req[14+6:]); op != 1 || !bytes.Equal(req[14+24:14+28], []byte{10, 99, 0, 2}) {
			return fmt.Errorf("ARP op %d for %v, want a request for 10.99.0.2", op, net.IP(req[14+24:14+28]))
		}
		hw := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
		reply := arpReply(req, hw)
		if n, err := d.Queues[0].WriteFrame(reply); err != nil || n != len(reply) {
			return fmt.Errorf("WriteFrame: %d, %v", n, err)
		}
		return waitNeigh(d.Index, net.IPv4(10, 99, 0, 2), hw)
	})
}

// waitNeigh waits until the neighbour table maps ip to hw on the link.
func waitNeigh(index int, ip net.IP, hw net.HardwareAddr) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		neighs, err := netlink.NeighList(index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if n.IP.Equal(ip) && bytes.Equal(n.HardwareAddr, hw) && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY) != 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no neighbour entry %v at %v: %+v", ip, hw, neighs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReadFrameTooSmall(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		if _, err := upWithAddr(d, "10.99.0.1/24"); err != nil {
			return err
		}
		frames := readFrames(d.Queues[0], epair.VnetHdrLen+20)
		if err := sendUDP("10.99.0.2:9"); err != nil {
			return err
		}
		select {
		case f := <-frames:
			if !errors.Is(f.err, ErrTruncated) {
				return fmt.Errorf("got %d bytes, %v; want ErrTruncated", len(f.b), f.err)
			}
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("no frame within 5s")
		}
	})
}

func TestCarrier(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		if _, err := upWithAddr(d, "10.99.0.1/24"); err != nil {
			return err
		}
		for _, on := range []bool{false, true, false} {
			if err := d.SetCarrier(on); err != nil {
				return err
			}
			if err := checkCarrier("t0", on); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkCarrier checks the carrier bit (IFF_LOWER_UP), which follows
// TUNSETCARRIER at once, and waits for the operstate, which the kernel's
// linkwatch updates a little later.
func checkCarrier(name string, on bool) error {
	want := netlink.LinkOperState(netlink.OperDown)
	if on {
		want = netlink.OperUp
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		link, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		attrs := link.Attrs()
		if lowerUp := attrs.RawFlags&unix.IFF_LOWER_UP != 0; lowerUp != on {
			return fmt.Errorf("carrier %v: flags %#x", on, attrs.RawFlags)
		}
		if attrs.OperState == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("carrier %v: operstate %v, want %v", on, attrs.OperState, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		var out atomic.Int64 // buffers taken and not given back
		get := func() []byte { out.Add(1); return make([]byte, epair.FrameSize) }
		put := func([]byte) { out.Add(-1) }
		done := make(chan error, 1)
		go func() {
			_, _, err := d.Queues[0].ReadFrame(get, put)
			done <- err
		}()
		time.Sleep(100 * time.Millisecond)
		if n := out.Load(); n != 0 {
			return fmt.Errorf("idle reader holds %d buffers", n)
		}
		if err := d.Close(); err != nil {
			return err
		}
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("ReadFrame after Close: %v, want os.ErrClosed", err)
			}
		case <-time.After(time.Second):
			return errors.New("ReadFrame still blocked 1s after Close")
		}
		if n := out.Load(); n != 0 {
			return fmt.Errorf("reader kept %d buffers", n)
		}
		return nil
	})
}

func TestWriteAfterClose(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "t0", 1)
		if err != nil {
			return err
		}
		q := d.Queues[0]
		d.Close()
		if _, err := q.WriteFrame(make([]byte, epair.VnetHdrLen+60)); !errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("WriteFrame after Close: %v, want os.ErrClosed", err)
		}
		if err := d.SetCarrier(true); err == nil {
			return errors.New("SetCarrier after Close succeeded")
		}
		return nil
	})
}

func TestCreateFailureCleansUp(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		// The kernel allows 256 queues, so the 257th TUNSETIFF fails after
		// the device was made and Create has to take it away again.
		d, err := Create("t0", 257)
		if err == nil {
			d.Destroy()
			return errors.New("Create with 257 queues succeeded")
		}
		t.Logf("Create with 257 queues: %v", err)
		if linkThere("t0") {
			return errors.New("failed Create left the device behind")
		}
		return nil
	})
}

// linkThere reports whether a link called name exists in the calling thread's
// network namespace. A failed lookup counts as not existing.
func linkThere(name string) bool {
	_, err := netlinksafe.LinkByName(name)
	return err == nil
}

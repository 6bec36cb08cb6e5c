// Package tap creates, re-opens and drives the Linux TAP devices that serve
// as pod interfaces in epair.
//
// Every device is opened with IFF_VNET_HDR, so each frame read from or
// written to a Queue starts with an epair.VnetHdrLen-byte virtio-net header that
// carries checksum and segmentation offload metadata. That lets the kernel
// hand the datapath whole TSO/USO super-frames instead of MTU-sized ones.
//
// All functions that take a device name act on the network namespace of the
// calling OS thread: the caller locks the thread and enters the namespace
// first (for example with ns.WithNetNSPath from containernetworking/plugins).
// Those that take a netlink handle act where the handle was made, and those
// that take a namespace path (Exists, LinkAt, Configure, DeleteAt) open it
// themselves; "" is the daemon's own namespace.
//
// The netlink work on a device that Create made (find it, tell it from
// somebody else's, configure it, delete it) is here too, so that the rules
// of what is ours live in one place (Identity).
package tap

import (
	"errors"
	"fmt"
	"strings"

	"github.com/epair-cni/epair/pkg/epair"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The frame layout is the queue core's: every frame read or written starts
// with an epair.VnetHdrLen-byte virtio-net header (virtio_net_hdr_v1, as set
// with TUNSETVNETHDRSZ: the legacy 10 bytes plus num_buffers, which the
// kernel zeroes on read and ignores on write), and none is longer than
// epair.FrameSize (a VLAN tag the kernel may insert, an Ethernet header and
// a 64 KiB packet, the most that a TAP's MTU or GSO size allows). Both are
// defined once, in pkg/epair, which makes no system calls.

// Offload flags for TUNSETOFFLOAD. Each one tells the kernel the reader of
// the device can cope with frames in that form, so the kernel may leave the
// work (checksumming, segmentation) to us.
const (
	// OffloadCsum accepts frames with a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM).
	OffloadCsum = unix.TUN_F_CSUM
	// OffloadTSO4 accepts unsegmented TCP over IPv4.
	OffloadTSO4 = unix.TUN_F_TSO4
	// OffloadTSO6 accepts unsegmented TCP over IPv6.
	OffloadTSO6 = unix.TUN_F_TSO6
	// OffloadTSOECN accepts unsegmented TCP with the ECN CWR bit set.
	OffloadTSOECN = unix.TUN_F_TSO_ECN
	// OffloadUSO4 accepts unsegmented UDP over IPv4 (kernel 6.2 and later).
	OffloadUSO4 = unix.TUN_F_USO4
	// OffloadUSO6 accepts unsegmented UDP over IPv6 (kernel 6.2 and later).
	OffloadUSO6 = unix.TUN_F_USO6
)

const (
	// wantOffloads is what Create and Attach ask for first.
	wantOffloads = OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN | OffloadUSO4 | OffloadUSO6
	// usoOffloads are dropped when the kernel predates USO and says EINVAL.
	usoOffloads = OffloadUSO4 | OffloadUSO6
)

// Device is an open TAP device: its name and ifindex in the namespace it was
// opened in, and one Queue per file descriptor attached to it.
type Device struct {
	// Name is the interface name.
	Name string
	// Index is the interface index, as netlink reported it when the device
	// was opened.
	Index int
	// Queues holds one Queue per attached file descriptor; there is more
	// than one only for a multi-queue device.
	Queues []*Queue
	// Offloads holds the Offload* flags the kernel accepted.
	Offloads uint32
}

// Create makes a new persistent TAP device called name with the given number
// of queues in the calling thread's network namespace. The device carries
// virtio-net headers (see epair.VnetHdrLen) and as many offloads as the kernel
// accepts; it is multi-queue when queues > 1.
//
// The tun file binds to the network namespace of whoever opens it, so
// /dev/net/tun is opened here, on the caller's thread, inside the namespace.
//
// Create fails with an error wrapping unix.EEXIST if any link called name
// already exists, rather than attaching to it as a plain TUNSETIFF would.
// A failed Create leaves no device behind.
func Create(name string, queues int) (*Device, error) {
	if err := validate(name, queues); err != nil {
		return nil, err
	}
	if _, err := lookup(name); err == nil {
		return nil, fmt.Errorf("tap %s: %w", name, unix.EEXIST)
	} else if !errors.Is(err, unix.ENODEV) {
		return nil, err
	}
	d := &Device{Name: name}
	if err := d.create(queues); err != nil {
		return nil, errors.Join(err, d.undo())
	}
	return d, nil
}

// create does the work of Create on d; on error the caller removes whatever
// it got as far as making.
func (d *Device) create(queues int) error {
	flags := tapFlags(queues > 1)
	// IFF_TUN_EXCL makes the kernel refuse with EBUSY instead of attaching
	// if a device of that name appeared since the netlink check above.
	q, err := openQueue(d.Name, 0, flags|unix.IFF_TUN_EXCL)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("tap %s: %w", d.Name, unix.EEXIST)
	}
	if err != nil {
		return err
	}
	d.Queues = append(d.Queues, q)
	link, err := lookup(d.Name)
	if err != nil {
		return err
	}
	d.Index = link.Attrs().Index
	if err := d.openQueues(flags, queues); err != nil {
		return err
	}
	if err := d.configure(); err != nil {
		return err
	}
	return d.setPersist(true)
}

// Attach re-opens the existing TAP device called name in the calling
// thread's network namespace with the given number of queues, using the same
// flags as Create. It is meant for a daemon restart: a persistent device
// keeps its ifindex, addresses and routes while nobody holds it open.
//
// Attach fails with an error wrapping unix.ENODEV if there is no such link,
// and with an error saying so if the link is not a TAP device.
func Attach(name string, queues int) (*Device, error) {
	if err := validate(name, queues); err != nil {
		return nil, err
	}
	link, err := lookupTap(name)
	if err != nil {
		return nil, err
	}
	d := &Device{Name: name, Index: link.Attrs().Index}
	if err := d.attach(isMultiQueue(link), queues); err != nil {
		return nil, errors.Join(err, d.closeQueues())
	}
	return d, nil
}

// attach does the work of Attach on d; on error the caller closes the
// queues it opened.
func (d *Device) attach(multiQueue bool, queues int) error {
	if queues > 1 && !multiQueue {
		return fmt.Errorf("tap %s: %d queues requested but the device is single-queue", d.Name, queues)
	}
	flags := tapFlags(multiQueue)
	q, err := openQueue(d.Name, 0, flags)
	if err != nil {
		return err
	}
	d.Queues = append(d.Queues, q)
	// Without an attach-only flag, TUNSETIFF creates a fresh device if the
	// old one vanished after the lookup. Such a device is not persistent,
	// so closing our queue (done by the caller) removes it again.
	if err := d.checkIndex(); err != nil {
		return err
	}
	if err := d.openQueues(flags, queues); err != nil {
		return err
	}
	return d.configure()
}

// checkIndex reports ENODEV if the device the first queue attached to is not
// the one Attach looked up.
func (d *Device) checkIndex() error {
	link, err := lookup(d.Name)
	if err != nil {
		return err
	}
	if link.Attrs().Index != d.Index {
		return fmt.Errorf("tap %s: removed while attaching: %w", d.Name, unix.ENODEV)
	}
	return nil
}

// openQueues attaches further queues until d has n of them.
func (d *Device) openQueues(flags uint16, n int) error {
	for len(d.Queues) < n {
		q, err := openQueue(d.Name, len(d.Queues), flags)
		if err != nil {
			return err
		}
		d.Queues = append(d.Queues, q)
	}
	return nil
}

// configure sets the header size and offloads, which are per device, so
// doing it through the first queue covers them all.
func (d *Device) configure() error {
	q := d.Queues[0]
	if err := q.ioctlPtrInt("TUNSETVNETHDRSZ", unix.TUNSETVNETHDRSZ, epair.VnetHdrLen); err != nil {
		return fmt.Errorf("tap %s: %w", d.Name, err)
	}
	offloads, err := setOffloads(q)
	if err != nil {
		return fmt.Errorf("tap %s: %w", d.Name, err)
	}
	d.Offloads = offloads
	return nil
}

// setOffloads asks for wantOffloads and retries without USO on kernels that
// do not know it, which reject the whole set with EINVAL.
func setOffloads(q *Queue) (uint32, error) {
	want := uint32(wantOffloads)
	err := q.ioctlValue("TUNSETOFFLOAD", unix.TUNSETOFFLOAD, uintptr(want))
	if errors.Is(err, unix.EINVAL) {
		want &^= usoOffloads
		err = q.ioctlValue("TUNSETOFFLOAD", unix.TUNSETOFFLOAD, uintptr(want))
	}
	if err != nil {
		return 0, err
	}
	return want, nil
}

// SetCarrier turns the link's carrier on or off, as a cable would. With the
// carrier off the kernel stops queueing frames to the device and routing
// treats the link as down.
func (d *Device) SetCarrier(on bool) error {
	q, err := d.firstQueue()
	if err != nil {
		return err
	}
	v := 0
	if on {
		v = 1
	}
	if err := q.ioctlPtrInt("TUNSETCARRIER", unix.TUNSETCARRIER, v); err != nil {
		return fmt.Errorf("tap %s: %w", d.Name, err)
	}
	return nil
}

// Close closes all queues. A persistent device stays, with its carrier off,
// until Attach opens it again or Destroy removes it. Any ReadFrame or
// WriteFrame blocked on a queue returns an error wrapping os.ErrClosed.
func (d *Device) Close() error {
	if err := d.closeQueues(); err != nil {
		return fmt.Errorf("tap %s: %w", d.Name, err)
	}
	return nil
}

// Destroy removes the device: it clears the persist flag and closes all
// queues, and the kernel deletes a TAP device when its last file closes
// while it is not persistent. If that cannot be done (the queues were closed
// already, say), Destroy deletes the link by netlink instead, which needs
// the calling thread in the device's network namespace.
func (d *Device) Destroy() error {
	if err := d.unpersistAndClose(); err == nil {
		return nil
	}
	if err := d.deleteLink(); err != nil {
		return fmt.Errorf("tap %s: destroy: %w", d.Name, err)
	}
	return nil
}

// undo removes what a failed Create made. Whatever the file descriptors
// managed, the netlink check afterwards decides whether anything is left.
func (d *Device) undo() error {
	_ = d.unpersistAndClose()
	return d.deleteLink()
}

// deleteLink deletes d's device by netlink in the calling thread's
// namespace, if it is still there and still d's: its name and ifindex,
// and a TAP (Delete). A stale ifindex, or a call from the wrong namespace,
// so deletes nothing.
func (d *Device) deleteLink() error {
	if d.Index == 0 {
		// Never looked up: what the first TUNSETIFF made was not
		// persistent and went with its file, and the name alone may be
		// somebody else's device (Create's EEXIST).
		return nil
	}
	// The zero Handle opens a socket per request in the calling thread's
	// namespace, as netlink's package-level functions do.
	return Delete(&netlink.Handle{}, Identity{Name: d.Name, Index: d.Index})
}

// unpersistAndClose clears the persist flag and closes all queues, which
// makes the kernel delete the device unless someone else holds it open.
func (d *Device) unpersistAndClose() error {
	return errors.Join(d.setPersist(false), d.closeQueues())
}

// setPersist sets or clears TUNSETPERSIST through the first open queue.
func (d *Device) setPersist(on bool) error {
	q, err := d.firstQueue()
	if err != nil {
		return err
	}
	var v uintptr
	if on {
		v = 1
	}
	if err := q.ioctlValue("TUNSETPERSIST", unix.TUNSETPERSIST, v); err != nil {
		return fmt.Errorf("tap %s: %w", d.Name, err)
	}
	return nil
}

// errNoQueue says a device has no open queue to issue an ioctl through.
var errNoQueue = errors.New("no open queue")

// firstQueue returns the first queue that is still open.
func (d *Device) firstQueue() (*Queue, error) {
	for _, q := range d.Queues {
		if !q.closed.Load() {
			return q, nil
		}
	}
	return nil, fmt.Errorf("tap %s: %w", d.Name, errNoQueue)
}

// closeQueues closes every queue not yet closed.
func (d *Device) closeQueues() error {
	var errs []error
	for _, q := range d.Queues {
		if !q.closed.Load() {
			errs = append(errs, q.Close())
		}
	}
	return errors.Join(errs...)
}

// tapFlags returns the TUNSETIFF flags for our TAP devices: Ethernet frames,
// no packet-information prefix (the vnet header carries what we need).
func tapFlags(multiQueue bool) uint16 {
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if multiQueue {
		flags |= unix.IFF_MULTI_QUEUE
	}
	return flags
}

// validate rejects arguments the kernel would misread rather than refuse.
func validate(name string, queues int) error {
	if err := epair.ValidIfName(name); err != nil {
		return fmt.Errorf("tap %q: %w", name, err)
	}
	// TUNSETIFF treats a name with %d as a template and picks a free name,
	// which would silently give the device a name nobody asked for.
	if strings.Contains(name, "%") {
		return fmt.Errorf("tap %q: invalid character in name: %w", name, unix.EINVAL)
	}
	if queues < 1 {
		return fmt.Errorf("tap %s: %d queues, need at least 1: %w", name, queues, unix.EINVAL)
	}
	return nil
}

package tap

import (
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// lookup finds the link called name, turning netlink's not-found error into
// one that wraps unix.ENODEV so callers can test for it with errors.Is.
func lookup(name string) (netlink.Link, error) {
	link, err := netlinksafe.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil, fmt.Errorf("tap %s: %w", name, unix.ENODEV)
	}
	if err != nil {
		return nil, fmt.Errorf("tap %s: look up link: %w", name, err)
	}
	return link, nil
}

// lookupTap finds the link called name and checks it is a TAP device, since
// TUNSETIFF on a TUN device of that name would fail with a bare EINVAL.
func lookupTap(name string) (*netlink.Tuntap, error) {
	link, err := lookup(name)
	if err != nil {
		return nil, err
	}
	if !isTap(link) {
		return nil, fmt.Errorf("tap %s: link is of type %q, not a TAP device", name, describe(link))
	}
	return link.(*netlink.Tuntap), nil
}

// isTap reports whether link is a TUN/TAP device in TAP mode.
func isTap(link netlink.Link) bool {
	t, ok := link.(*netlink.Tuntap)
	return ok && t.Mode == netlink.TUNTAP_MODE_TAP
}

// describe names a link's kind for error messages, telling TUN from TAP.
func describe(link netlink.Link) string {
	if t, ok := link.(*netlink.Tuntap); ok && t.Mode == netlink.TUNTAP_MODE_TUN {
		return "tun"
	}
	return link.Type()
}

// isMultiQueue reports whether the device was created with IFF_MULTI_QUEUE;
// TUNSETIFF must repeat that flag to attach to it.
func isMultiQueue(t *netlink.Tuntap) bool {
	return t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0
}

// deleteTap deletes the TAP device with the given index if it is still
// there. It checks name and kind as well as the index, so that a stale
// index, or a call from the wrong namespace, cannot delete another link.
func deleteTap(name string, index int) error {
	if index == 0 {
		return nil
	}
	link, err := netlink.LinkByIndex(index)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tap %s: look up ifindex %d: %w", name, index, err)
	}
	if link.Attrs().Name != name || !isTap(link) {
		return nil
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("tap %s: delete link: %w", name, err)
	}
	return nil
}

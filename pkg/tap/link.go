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

// Find finds id's device through h: by ifindex (by name while the
// ifindex is not known), and only if it is id's (Identity.Match). It
// returns nil and no error if there is no such link, and the link with a
// *ForeignError if the one there is somebody else's.
func Find(h *netlink.Handle, id Identity) (netlink.Link, error) {
	var l netlink.Link
	var err error
	if id.Index > 0 {
		l, err = h.LinkByIndex(id.Index)
	} else {
		l, err = netlinksafe.Handle{Handle: h}.LinkByName(id.Name)
	}
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s in %s: %w", id.Name, NetnsName(id.Netns), err)
	}
	return l, id.Match(l)
}

// Delete deletes id's device through h if it is there and is id's (Find).
// It is the one deletion by netlink, for a Device and for the daemon's
// ends alike. A device that is gone is no error, so that a delete can be
// repeated; one that is somebody else's is left alone, with a warning, and
// is no error either: nothing of id's is left to delete.
func Delete(h *netlink.Handle, id Identity) error {
	l, err := Find(h, id)
	var fe *ForeignError
	if errors.As(err, &fe) {
		fe.Warn("not deleting")
		return nil
	}
	if err != nil || l == nil {
		return err
	}
	// ENODEV: deleted by somebody else since the look-up.
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", l.Attrs().Name, err)
	}
	return nil
}

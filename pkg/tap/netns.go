package tap

import (
	"cmp"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/epair-cni/epair/pkg/nsfile"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NetnsName names the namespace at path in messages; "" is the daemon's.
func NetnsName(path string) string {
	return cmp.Or(path, "the daemon's netns")
}

// handleAt returns a netlink handle bound to the namespace at path ("" is
// the daemon's own).
func handleAt(path string) (*netlink.Handle, error) {
	if path == "" {
		return netlink.NewHandle()
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink in netns %s: %w", path, err)
	}
	return nh, nil
}

// Exists reports whether a link called name, of any kind, is in the
// namespace at path.
func Exists(path, name string) (bool, error) {
	h, err := handleAt(path)
	if err != nil {
		return false, err
	}
	defer h.Close()
	_, err = netlinksafe.Handle{Handle: h}.LinkByName(name)
	if err == nil {
		return true, nil
	}
	if _, ok := err.(netlink.LinkNotFoundError); ok {
		return false, nil
	}
	return false, fmt.Errorf("look up %s: %w", name, err)
}

// LinkAt returns the link with the given ifindex in the namespace at path.
func LinkAt(path string, index int) (netlink.Link, error) {
	h, err := handleAt(path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return h.LinkByIndex(index)
}

// Configure sets the MAC and MTU of the link with the given ifindex in the
// namespace at path and brings it up: what a new device needs after Create,
// which sets neither.
func Configure(path string, index int, mac net.HardwareAddr, mtu int) error {
	h, err := handleAt(path)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByIndex(index)
	if err != nil {
		return fmt.Errorf("find link %d: %w", index, err)
	}
	if err := h.LinkSetHardwareAddr(l, mac); err != nil {
		return fmt.Errorf("set MAC of %s: %w", l.Attrs().Name, err)
	}
	if err := h.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("set MTU of %s: %w", l.Attrs().Name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
	}
	return nil
}

// DeleteAt is Delete in the namespace at id.Netns. A namespace that is gone
// (or whose path is no namespace any more) took its devices with it, so
// there is nothing to delete and no error.
func DeleteAt(id Identity) error {
	if id.Netns != "" && nsfile.Check(id.Netns) != nil {
		return nil
	}
	h, err := handleAt(id.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	return Delete(h, id)
}

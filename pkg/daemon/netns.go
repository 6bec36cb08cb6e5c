package daemon

import (
	"fmt"
	"path/filepath"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// checkNetns accepts only an absolute, clean path that is a network
// namespace: a path from a request is never trusted further than that.
func checkNetns(path string) error {
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("%w: netns %q must be an absolute, clean path", errInvalid, path)
	}
	n, err := ns.GetNS(path)
	if err != nil {
		return fmt.Errorf("%w: netns %q: %w", errInvalid, path, err)
	}
	return n.Close()
}

// inNetns runs fn on a thread in the namespace at path ("" is the daemon's
// own), which is where a TAP must be opened to be created there.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return fn() })
}

// netlinkAt returns a netlink handle bound to the namespace at path.
func netlinkAt(path string) (*netlink.Handle, error) {
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

// linkExists reports whether a link named name exists in the namespace.
func linkExists(path, name string) (bool, error) {
	h, err := netlinkAt(path)
	if err != nil {
		return false, err
	}
	defer h.Close()
	_, err = h.LinkByName(name)
	if err == nil {
		return true, nil
	}
	if _, ok := err.(netlink.LinkNotFoundError); ok {
		return false, nil
	}
	return false, fmt.Errorf("look up %s: %w", name, err)
}

// configureLink sets the MAC and MTU of a link and brings it up.
func configureLink(path string, index int, mac string, mtu int) error {
	h, err := netlinkAt(path)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByIndex(index)
	if err != nil {
		return fmt.Errorf("find link %d: %w", index, err)
	}
	hw, err := parseMAC(mac)
	if err != nil {
		return err
	}
	if err := h.LinkSetHardwareAddr(l, hw); err != nil {
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

// findTap finds our TAP by ifindex (its name may have changed since) or,
// when the index is not known yet, by name. It returns nil if there is none
// or if what it finds is not a TAP: a device we did not make is never
// touched.
func findTap(h *netlink.Handle, index int, name string) netlink.Link {
	var l netlink.Link
	var err error
	if index > 0 {
		l, err = h.LinkByIndex(index)
	} else {
		l, err = h.LinkByName(name)
	}
	if err != nil || l.Type() != "tuntap" {
		return nil
	}
	return l
}

// deleteTap removes our TAP if it is still there; a namespace that is gone
// took its devices with it.
func deleteTap(path string, index int, name string) error {
	if path != "" {
		if err := checkNetns(path); err != nil {
			return nil
		}
	}
	h, err := netlinkAt(path)
	if err != nil {
		return err
	}
	defer h.Close()
	l := findTap(h, index, name)
	if l == nil {
		return nil
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s: %w", l.Attrs().Name, err)
	}
	return nil
}

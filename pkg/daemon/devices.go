package daemon

import (
	"fmt"

	"github.com/epair-cni/epair/pkg/state"
	"github.com/epair-cni/epair/pkg/tap"
)

// devices is what the Manager asks of the kernel about a pair's TAPs. The
// Manager's rules (units, names, phases on disk, restore after a crash) sit
// on top of it, so that tests can run them against a fake, as any user.
type devices interface {
	// exists reports whether an interface called name is in the namespace
	// at netns ("" is the daemon's).
	exists(netns, name string) (bool, error)
	// create makes e's TAP with its MAC and mtu, and records its ifindex
	// in e.
	create(e *state.End, queues, mtu int) (tap.Endpoint, error)
	// attach re-opens e's persistent TAP after a restart, if the device at
	// its ifindex is still its own.
	attach(e *state.End, queues int, nss *nsCache) (tap.Endpoint, error)
	// destroy deletes a TAP create just made.
	destroy(d tap.Endpoint) error
	// remove deletes e's TAP if it is still there and its own.
	remove(e *state.End, queues int) error
}

// kernelDevices is devices on real TAPs, through /dev/net/tun and netlink.
type kernelDevices struct{}

func (kernelDevices) exists(netns, name string) (bool, error) { return tap.Exists(netns, name) }

func (kernelDevices) create(e *state.End, queues, mtu int) (tap.Endpoint, error) {
	return createEnd(e, queues, mtu)
}

func (kernelDevices) attach(e *state.End, queues int, nss *nsCache) (tap.Endpoint, error) {
	return attachEnd(e, queues, nss)
}

func (kernelDevices) destroy(d tap.Endpoint) error {
	td, ok := d.(*tap.Device)
	if !ok {
		return fmt.Errorf("destroy %s: not a TAP device", d)
	}
	return td.Destroy()
}

func (kernelDevices) remove(e *state.End, queues int) error { return tap.DeleteAt(identity(e, queues)) }

// identity is what the state knows of an end's TAP, for telling it from
// somebody else's device at the same ifindex or name (tap.Identity.Match).
func identity(e *state.End, queues int) tap.Identity {
	return tap.Identity{Name: e.Name, Index: e.Index, MAC: e.MAC, Queues: queues, Netns: e.Netns}
}

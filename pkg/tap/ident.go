package tap

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
)

// ErrNotOurs is wrapped by Check's errors: the link is not a device that
// Create makes.
var ErrNotOurs = errors.New("not a TAP device made by epair")

// ErrForeign is wrapped by a ForeignError: the device where a TAP should be
// is somebody else's, and is neither re-opened nor deleted.
var ErrForeign = errors.New("not this pair's device")

// Check reports how link (as netlink describes it) differs from a device
// that Create(name, queues) makes — a persistent TAP, not a TUN, with vnet
// headers and no packet information, multi-queue exactly when queues > 1,
// and no owner or group — or nil if it does not. It only reads link.
//
// An ifindex, or a name, alone says little: in a namespace deleted and made
// again at the same path, the first new device gets the same ifindex and
// may get the same name. Check is the part of an identity that Create's
// flags give; Identity.Match adds the name, ifindex and MAC.
//
// The kernel reports an owner or group only when one is set, which Create
// never does; netlink shows an unset one as 0, so an owner of uid 0 set by
// hand passes.
func Check(link netlink.Link, queues int) error {
	if diffs := flagDiffs(link, queues); len(diffs) > 0 {
		return fmt.Errorf("%w: %s", ErrNotOurs, strings.Join(diffs, ", "))
	}
	return nil
}

// flagDiffs lists how link differs from a device of Create(name, queues).
// With queues 0 it checks the kind alone: a TAP, not a TUN or another link.
func flagDiffs(link netlink.Link, queues int) []string {
	t, ok := link.(*netlink.Tuntap)
	if !ok {
		return []string{fmt.Sprintf("a %q link", link.Type())}
	}
	var diffs []string
	if t.Mode != netlink.TUNTAP_MODE_TAP {
		diffs = append(diffs, "a "+describe(t)+" device, not a TAP")
	}
	if queues == 0 {
		return diffs
	}
	if t.Flags&netlink.TUNTAP_VNET_HDR == 0 {
		diffs = append(diffs, "no vnet header")
	}
	if t.Flags&netlink.TUNTAP_NO_PI == 0 {
		diffs = append(diffs, "packet information on")
	}
	if mq, want := isMultiQueue(t), queues > 1; mq != want {
		diffs = append(diffs, fmt.Sprintf("multi-queue %v, want %v", mq, want))
	}
	if t.NonPersist {
		diffs = append(diffs, "not persistent")
	}
	if t.Owner != 0 || t.Group != 0 {
		diffs = append(diffs, fmt.Sprintf("owner uid %d gid %d", t.Owner, t.Group))
	}
	return diffs
}

// Identity is what the maker of a TAP knows of it: enough to tell it from a
// device that somebody else made at the same place (Match). Name is always
// compared, and the device must be a TAP; every other field is compared
// when it is set.
type Identity struct {
	// Name is the interface name.
	Name string
	// Index is the ifindex. 0 means not known yet (a create that died
	// before it recorded one): the device is then found by name, and its
	// MAC, which may not have been set, is not compared.
	Index int
	// MAC is the hardware address the maker set, compared when Index is
	// set too.
	MAC string
	// Queues, if not 0, is the number of queues the device was created
	// with, and the flags that Create sets are compared too (Check).
	Queues int
	// Netns is the path of the device's namespace, "" for the daemon's
	// own: where DeleteAt looks, and what messages name.
	Netns string
}

// Match reports how link differs from id, as a *ForeignError, or nil if it
// does not. An ifindex alone identifies nothing: a namespace deleted and
// made again at the same path numbers its devices from 1 again, so its
// first TAP may get an old device's ifindex and name.
func (id Identity) Match(link netlink.Link) error {
	a := link.Attrs()
	var differ []string
	if a.Name != id.Name {
		differ = append(differ, fmt.Sprintf("named %s, want %s", a.Name, id.Name))
	}
	if id.Index != 0 {
		if a.Index != id.Index {
			differ = append(differ, fmt.Sprintf("ifindex %d, want %d", a.Index, id.Index))
		}
		if want, err := net.ParseMAC(id.MAC); id.MAC != "" && (err != nil || !bytes.Equal(a.HardwareAddr, want)) {
			differ = append(differ, fmt.Sprintf("MAC %s, want %s", a.HardwareAddr, id.MAC))
		}
	}
	if diffs := flagDiffs(link, id.Queues); len(diffs) > 0 {
		differ = append(differ, strings.Join(diffs, ", "))
	}
	if len(differ) == 0 {
		return nil
	}
	return &ForeignError{Name: id.Name, Netns: id.Netns, Index: a.Index, Differ: differ}
}

// ForeignError is an ErrForeign with what differs.
type ForeignError struct {
	// Name is the name the device should have.
	Name string
	// Netns is the path of the namespace it is in ("" the daemon's).
	Netns string
	// Index is the ifindex of the device found there.
	Index int
	// Differ says how it differs, one point each.
	Differ []string
}

func (e *ForeignError) Error() string {
	return fmt.Sprintf("end %s: the device at ifindex %d in %s is %s (%s)",
		e.Name, e.Index, NetnsName(e.Netns), ErrForeign, strings.Join(e.Differ, "; "))
}

// Unwrap returns ErrForeign.
func (e *ForeignError) Unwrap() error { return ErrForeign }

// Warn logs that the device is left alone, and why; what says what was not
// done ("not deleting").
func (e *ForeignError) Warn(what string) {
	slog.Warn(what+": the device there is not this pair's, left alone", "end", e.Name,
		"netns", NetnsName(e.Netns), "ifindex", e.Index, "differs", strings.Join(e.Differ, "; "))
}

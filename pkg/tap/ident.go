package tap

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
)

// ErrNotOurs is wrapped by Check's errors: the link is not a device that
// Create makes.
var ErrNotOurs = errors.New("not a TAP device made by epair")

// Check reports how link (as netlink describes it) differs from a device
// that Create(name, queues) makes — a persistent TAP, not a TUN, with vnet
// headers and no packet information, multi-queue exactly when queues > 1,
// and no owner or group — or nil if it does not. It only reads link.
//
// An ifindex, or a name, alone says little: in a namespace deleted and made
// again at the same path, the first new device gets the same ifindex and
// may get the same name. Check is the part of an identity that Create's
// flags give; the caller compares the name and MAC it set.
//
// The kernel reports an owner or group only when one is set, which Create
// never does; netlink shows an unset one as 0, so an owner of uid 0 set by
// hand passes.
func Check(link netlink.Link, queues int) error {
	t, ok := link.(*netlink.Tuntap)
	if !ok {
		return fmt.Errorf("%w: a %q link", ErrNotOurs, link.Type())
	}
	var diffs []string
	if t.Mode != netlink.TUNTAP_MODE_TAP {
		diffs = append(diffs, "a "+describe(t)+" device, not a TAP")
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
	if len(diffs) > 0 {
		return fmt.Errorf("%w: %s", ErrNotOurs, strings.Join(diffs, ", "))
	}
	return nil
}

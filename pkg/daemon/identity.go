package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/epair-cni/epair/pkg/state"
	"github.com/epair-cni/epair/pkg/tap"
	"github.com/vishvananda/netlink"
)

// errForeign says that the device where an end should be is somebody
// else's: the daemon neither adopts nor deletes it.
var errForeign = errors.New("not this pair's device")

// foreignError is an errForeign with what differs.
type foreignError struct {
	end    string // the end's name in the state
	netns  string
	index  int
	differ []string
}

func (e *foreignError) Error() string {
	return fmt.Sprintf("end %s: the device at ifindex %d in %s is %s (%s)",
		e.end, e.index, nsName(e.netns), errForeign, strings.Join(e.differ, "; "))
}

func (e *foreignError) Unwrap() error { return errForeign }

// warn logs that the device is left alone, and why.
func (e *foreignError) warn(what string) {
	slog.Warn(what+": the device there is not this pair's, left alone", "end", e.end,
		"netns", nsName(e.netns), "ifindex", e.index, "differs", strings.Join(e.differ, "; "))
}

// matchEnd reports how l differs from the end e of a pair of queues queues,
// as the state remembers it: ifindex, name, MAC and the TAP flags that
// tap.Create sets (tap.Check). An ifindex alone identifies nothing: a
// namespace deleted and made again at the same path numbers its devices
// from 1 again, so its first TAP may get an old end's ifindex and name.
//
// An end without an ifindex yet (a create that died before it was saved
// Ready) is matched on name and TAP flags only: its MAC may not have been
// set when the daemon died.
func matchEnd(l netlink.Link, e *state.End, queues int) error {
	a := l.Attrs()
	var differ []string
	if a.Name != e.Name {
		differ = append(differ, fmt.Sprintf("named %s, want %s", a.Name, e.Name))
	}
	if e.Index != 0 {
		if a.Index != e.Index {
			differ = append(differ, fmt.Sprintf("ifindex %d, want %d", a.Index, e.Index))
		}
		if want, err := net.ParseMAC(e.MAC); err != nil || !bytes.Equal(a.HardwareAddr, want) {
			differ = append(differ, fmt.Sprintf("MAC %s, want %s", a.HardwareAddr, e.MAC))
		}
	}
	if err := tap.Check(l, queues); err != nil {
		differ = append(differ, strings.TrimPrefix(err.Error(), tap.ErrNotOurs.Error()+": "))
	}
	if len(differ) == 0 {
		return nil
	}
	return &foreignError{end: e.Name, netns: e.Netns, index: a.Index, differ: differ}
}

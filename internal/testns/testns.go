// Package testns gives privileged unit tests a network namespace of their
// own with a netlink handle into it, both removed at cleanup.
package testns

import (
	"os"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// New makes the namespace, or skips the test, saying why, when not root.
func New(t *testing.T) (ns.NetNS, *netlink.Handle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create a network namespace")
	}
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(); testutils.UnmountNS(n) })
	h, err := netlink.NewHandleAt(netns.NsHandle(n.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return n, h
}

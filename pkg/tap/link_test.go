package tap

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/internal/testns"
	"github.com/vishvananda/netlink"
)

// TestDeleteLeavesOthersAlone: Delete removes the device of its identity
// and nothing else. A device at the ifindex under another name, MAC or
// queue count, a TUN of the name and ifindex, or no device at all is no
// error, and is left as it was.
func TestDeleteLeavesOthersAlone(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "del0", 1)
		if err != nil {
			return err
		}
		mac, _ := net.ParseMAC("02:00:00:00:00:0a")
		if err := Configure("", d.Index, mac, 1400); err != nil {
			return err
		}
		tun := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "tun0"}, Mode: netlink.TUNTAP_MODE_TUN}
		if err := netlink.LinkAdd(tun); err != nil {
			return fmt.Errorf("add tun: %w", err)
		}
		for _, f := range tun.Fds {
			f.Close()
		}
		h := &netlink.Handle{}
		ours := Identity{Name: "del0", Index: d.Index, MAC: mac.String(), Queues: 1}
		others := map[string]Identity{
			"other MAC":     {Name: "del0", Index: d.Index, MAC: "02:00:00:00:00:0b", Queues: 1},
			"other name":    {Name: "del1", Index: d.Index},
			"other ifindex": {Name: "del0", Index: d.Index + 100},
			"other queues":  {Name: "del0", Index: d.Index, Queues: 2},
			"a tun":         {Name: "tun0", Index: tun.Index},
		}
		for what, id := range others {
			if err := Delete(h, id); err != nil {
				return fmt.Errorf("Delete, %s: %w", what, err)
			}
			if !linkThere("del0") || !linkThere("tun0") {
				return fmt.Errorf("Delete, %s, removed a device that is not its", what)
			}
		}
		for i := range 2 { // a second Delete finds nothing: no error
			if err := Delete(h, ours); err != nil {
				return fmt.Errorf("Delete %d: %w", i+1, err)
			}
			if linkThere("del0") {
				return fmt.Errorf("Delete %d left its own device", i+1)
			}
		}
		return nil
	})
}

// TestDeleteAt: DeleteAt deletes in the namespace at the identity's path,
// and a namespace that is gone is no error.
func TestDeleteAt(t *testing.T) {
	requirePrivileges(t)
	n, h := testns.New(t)
	var d *Device
	err := n.Do(func(ns.NetNS) (err error) {
		d, err = Create("at0", 1)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Close() // persistent: it stays
	if err := DeleteAt(Identity{Name: "at0", Index: d.Index, Queues: 1, Netns: n.Path()}); err != nil {
		t.Fatal(err)
	}
	var notFound netlink.LinkNotFoundError
	if _, err := h.LinkByName("at0"); !errors.As(err, &notFound) {
		t.Fatalf("after DeleteAt: look up at0: %v, want not found", err)
	}
	gone := Identity{Name: "at0", Index: d.Index, Netns: n.Path() + "-gone"}
	if err := DeleteAt(gone); err != nil {
		t.Fatalf("DeleteAt in a namespace that is gone: %v, want nil", err)
	}
}

package daemon

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/epair-cni/epair/pkg/state"
	"github.com/vishvananda/netlink"
)

func TestMatchEnd(t *testing.T) {
	mac, _ := net.ParseMAC("02:2c:2b:33:6b:0a")
	other, _ := net.ParseMAC("6a:2e:f1:f5:2e:09")
	tap := func(name string, index int, hw net.HardwareAddr, flags netlink.TuntapFlag) netlink.Link {
		return &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name, Index: index, HardwareAddr: hw},
			Mode: netlink.TUNTAP_MODE_TAP, Flags: flags}
	}
	ours := netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_NO_PI
	end := &state.End{Name: "eth0", Index: 2, MAC: "02:2C:2B:33:6B:0A", Netns: "/var/run/netns/pod"}
	for _, c := range []struct {
		name string
		link netlink.Link
		end  *state.End
		want string // "" for a match
	}{
		{"ours", tap("eth0", 2, mac, ours), end, ""},
		{"other MAC", tap("eth0", 2, other, ours), end, "MAC 6a:2e:f1:f5:2e:09, want 02:2C:2B:33:6B:0A"},
		{"other name", tap("eth1", 2, mac, ours), end, "named eth1, want eth0"},
		{"plain TAP", tap("eth0", 2, mac, netlink.TUNTAP_NO_PI), end, "no vnet header"},
		{"veth", &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: 2, HardwareAddr: mac}}, end, `a "veth" link`},
		// A create that died before it was saved Ready: no ifindex, and
		// the MAC may not be set yet.
		{"by name", tap("epair7b", 5, other, ours), &state.End{Name: "epair7b", MAC: "02:00:00:00:07:0b"}, ""},
	} {
		err := matchEnd(c.link, c.end, 1)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want a match", c.name, err)
		case c.want != "" && (!errors.Is(err, errForeign) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want errForeign saying %q", c.name, err, c.want)
		}
	}
}

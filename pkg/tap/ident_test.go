package tap

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestCheck(t *testing.T) {
	ours := func(mod func(*netlink.Tuntap)) netlink.Link {
		l := &netlink.Tuntap{Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_NO_PI}
		if mod != nil {
			mod(l)
		}
		return l
	}
	for _, c := range []struct {
		name   string
		link   netlink.Link
		queues int
		want   string // "" for a match
	}{
		{"ours", ours(nil), 1, ""},
		{"ours, multi-queue", ours(func(l *netlink.Tuntap) { l.Flags |= netlink.TUNTAP_MULTI_QUEUE }), 4, ""},
		{"tun", ours(func(l *netlink.Tuntap) { l.Mode = netlink.TUNTAP_MODE_TUN }), 1, "a tun device, not a TAP"},
		{"plain ip tuntap", ours(func(l *netlink.Tuntap) { l.Flags = netlink.TUNTAP_NO_PI }), 1, "no vnet header"},
		{"pi", ours(func(l *netlink.Tuntap) { l.Flags = netlink.TUNTAP_VNET_HDR }), 1, "packet information on"},
		{"single-queue for 2", ours(nil), 2, "multi-queue false, want true"},
		{"multi-queue for 1", ours(func(l *netlink.Tuntap) { l.Flags |= netlink.TUNTAP_MULTI_QUEUE }), 1, "multi-queue true, want false"},
		{"not persistent", ours(func(l *netlink.Tuntap) { l.NonPersist = true }), 1, "not persistent"},
		{"owned", ours(func(l *netlink.Tuntap) { l.Owner = 1000 }), 1, "owner uid 1000"},
		{"dummy", &netlink.Dummy{}, 1, `a "dummy" link`},
	} {
		err := Check(c.link, c.queues)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want a match", c.name, err)
		case c.want != "" && (err == nil || !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want ErrNotOurs saying %q", c.name, err, c.want)
		}
	}
}

// TestCheckCreated: what Create makes passes Check as netlink reports it,
// and a TAP made by hand with the same name does not.
func TestCheckCreated(t *testing.T) {
	inNS(t, func(t *testing.T) error {
		d, err := create(t, "ident0", 1)
		if err != nil {
			return err
		}
		l, err := netlink.LinkByName("ident0")
		if err != nil {
			return err
		}
		if err := Check(l, 1); err != nil {
			return err
		}
		if err := Check(l, 2); err == nil {
			return errors.New("a single-queue device passed Check for 2 queues")
		}
		if err := d.Destroy(); err != nil {
			return err
		}
		byHand := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "ident0"}, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE}
		if err := netlink.LinkAdd(byHand); err != nil {
			return err
		}
		defer func() {
			for _, f := range byHand.Fds { // LinkAdd keeps them open
				f.Close()
			}
			netlink.LinkDel(byHand)
		}()
		if l, err = netlink.LinkByName("ident0"); err != nil {
			return err
		}
		if err := Check(l, 1); err == nil {
			return errors.New("a TAP without vnet headers passed Check")
		}
		return nil
	})
}

func TestMatch(t *testing.T) {
	mac, _ := net.ParseMAC("02:2c:2b:33:6b:0a")
	other, _ := net.ParseMAC("6a:2e:f1:f5:2e:09")
	tap := func(name string, index int, hw net.HardwareAddr, flags netlink.TuntapFlag) netlink.Link {
		return &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name, Index: index, HardwareAddr: hw},
			Mode: netlink.TUNTAP_MODE_TAP, Flags: flags}
	}
	ours := netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_NO_PI
	end := Identity{Name: "eth0", Index: 2, MAC: "02:2C:2B:33:6B:0A", Queues: 1, Netns: "/var/run/netns/pod"}
	device := Identity{Name: "t0", Index: 7} // what a Device knows: no MAC, no queue count
	tun := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "t0", Index: 7}, Mode: netlink.TUNTAP_MODE_TUN}
	for _, c := range []struct {
		name string
		link netlink.Link
		id   Identity
		want string // "" for a match
	}{
		{"ours", tap("eth0", 2, mac, ours), end, ""},
		{"other MAC", tap("eth0", 2, other, ours), end, "MAC 6a:2e:f1:f5:2e:09, want 02:2C:2B:33:6B:0A"},
		{"other name", tap("eth1", 2, mac, ours), end, "named eth1, want eth0"},
		{"other ifindex", tap("eth0", 3, mac, ours), end, "ifindex 3, want 2"},
		{"plain TAP", tap("eth0", 2, mac, netlink.TUNTAP_NO_PI), end, "no vnet header"},
		{"veth", &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: 2, HardwareAddr: mac}}, end, `a "veth" link`},
		{"where", tap("eth1", 2, mac, ours), end, "end eth0: the device at ifindex 2 in /var/run/netns/pod is not this pair's device"},
		// A create that died before it was saved Ready: no ifindex, and
		// the MAC may not be set yet.
		{"by name", tap("epair7b", 5, other, ours), Identity{Name: "epair7b", MAC: "02:00:00:00:07:0b", Queues: 1}, ""},
		// Without a queue count the flags are not compared, the kind is.
		{"device, plain TAP", tap("t0", 7, other, netlink.TUNTAP_NO_PI), device, ""},
		{"device, tun", tun, device, "a tun device, not a TAP"},
		{"device, other name", tap("t1", 7, other, ours), device, "named t1, want t0"},
	} {
		err := c.id.Match(c.link)
		var fe *ForeignError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want a match", c.name, err)
		case c.want != "" && (!errors.As(err, &fe) || !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want a ForeignError saying %q", c.name, err, c.want)
		}
	}
}

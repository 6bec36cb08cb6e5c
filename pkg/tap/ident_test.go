package tap

import (
	"errors"
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

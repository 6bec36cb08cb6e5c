package daemon

import (
	"net/netip"
	"testing"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/state"
)

func TestSpoofFilterFromState(t *testing.T) {
	off := false
	owner := &api.Owner{ContainerID: "c", IfName: "eth0", Network: "n", IPs: []string{"10.1.0.5/24", "fd00::5/64"}}
	for _, c := range []struct {
		name string
		p    state.Pair
		want bool
	}{
		{"no owner", state.Pair{}, false},
		{"owner without IPs", state.Pair{Owner: &api.Owner{ContainerID: "c"}}, true},
		{"owner with IPs", state.Pair{Owner: owner}, true},
		{"turned off", state.Pair{Owner: owner, AntiSpoofing: &off}, false},
	} {
		c.p.A = state.End{Name: "eth0", MAC: "02:00:00:00:00:0a"}
		f, err := spoofFilter(&c.p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (f != nil) != c.want || antiSpoofing(&c.p) != c.want {
			t.Errorf("%s: filter %v, antiSpoofing %v; want %v", c.name, f != nil, antiSpoofing(&c.p), c.want)
		}
		if f == nil || len(c.p.Owner.IPs) == 0 {
			continue
		}
		want := []netip.Addr{netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("fd00::5")}
		if got := f.Addrs(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("%s: addrs %v, want %v", c.name, got, want)
		}
		if f.MAC().String() != "02:00:00:00:00:0a" {
			t.Errorf("%s: MAC %v", c.name, f.MAC())
		}
	}
}

func TestOwnerAddrsRejectsGarbage(t *testing.T) {
	if _, err := ownerAddrs(&api.Owner{IPs: []string{"10.0.0.1/24", "nonsense"}}); err == nil {
		t.Fatal("ownerAddrs took nonsense")
	}
	got, err := ownerAddrs(&api.Owner{IPs: []string{"10.0.0.1"}})
	if err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("bare address: %v, %v", got, err)
	}
}

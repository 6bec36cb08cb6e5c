package daemon

import (
	"testing"

	"github.com/epair-cni/epair/pkg/api"
)

func TestShapersByDirection(t *testing.T) {
	a, b, err := shapers(&api.Bandwidth{IngressRate: 1000, IngressBurst: 100, EgressRate: 2000, EgressBurst: 200})
	if err != nil {
		t.Fatal(err)
	}
	if a.Rate() != 1000 || a.Burst() != 100 || b.Rate() != 2000 || b.Burst() != 200 {
		t.Fatalf("a %d/%d b %d/%d: ingress belongs on a, egress on b", a.Rate(), a.Burst(), b.Rate(), b.Burst())
	}
	a, b, err = shapers(&api.Bandwidth{EgressRate: 2000, EgressBurst: 200})
	if err != nil || a != nil || b == nil {
		t.Fatalf("egress only: a %v b %v err %v", a, b, err)
	}
	if a, b, err = shapers(nil); a != nil || b != nil || err != nil {
		t.Fatal("nil bandwidth shapes")
	}
}

func TestValidateBandwidth(t *testing.T) {
	m := &Manager{queues: 1}
	for _, tc := range []struct {
		bw *api.Bandwidth
		ok bool
	}{
		{&api.Bandwidth{IngressRate: 1e6, IngressBurst: 1e5}, true},
		{&api.Bandwidth{EgressRate: 1e6, EgressBurst: 1e5}, true},
		{&api.Bandwidth{}, true},
		{&api.Bandwidth{IngressRate: 1e6}, false},
		{&api.Bandwidth{EgressBurst: 1e5}, false},
		{&api.Bandwidth{EgressRate: api.MaxRate + 1, EgressBurst: 1}, false},
		{&api.Bandwidth{EgressRate: 1, EgressBurst: api.MaxBurst + 1}, false},
	} {
		r := &api.CreateRequest{Bandwidth: tc.bw}
		err := m.validate(r)
		if (err == nil) != tc.ok {
			t.Errorf("%+v: err %v, want ok %v", *tc.bw, err, tc.ok)
		}
		if tc.ok && tc.bw.IsZero() && r.Bandwidth != nil {
			t.Errorf("an empty bandwidth is kept: %+v", r.Bandwidth)
		}
	}
}

package daemon

import (
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/epair"
)

// shapers returns the token buckets for bw: the pod's ingress paces what
// is delivered to the a end (frames the b end sent), its egress what is
// delivered to the b end, as the reference bandwidth plugin shapes the
// host side's egress for the pod's ingress and the pod's egress on an ifb.
// A direction without a rate gets nil, no shaping.
func shapers(bw *api.Bandwidth) (a, b *epair.Shaper, err error) {
	if bw == nil {
		return nil, nil, nil
	}
	if a, err = shaper(bw.IngressRate, bw.IngressBurst); err != nil {
		return nil, nil, err
	}
	if b, err = shaper(bw.EgressRate, bw.EgressBurst); err != nil {
		return nil, nil, err
	}
	return a, b, nil
}

func shaper(rate, burst uint64) (*epair.Shaper, error) {
	if rate == 0 {
		return nil, nil
	}
	return epair.NewShaper(rate, burst)
}

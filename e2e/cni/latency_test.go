package cni_test

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/epair-cni/epair/e2e/harness"
)

// TestADDDELLatency times sequential ADD and DEL of epair against the
// reference ptp plugin (a veth pair), both with host-local, in the same host
// namespace. Set EPAIR_LATENCY=1 to run it.
func TestADDDELLatency(t *testing.T) {
	if os.Getenv("EPAIR_LATENCY") != "1" {
		t.Skip("set EPAIR_LATENCY=1 to measure ADD/DEL latency")
	}
	const rounds = 50
	e := newEnv(t, false)
	p := e.pod(t)
	epair := e.list(t, netw{name: "lat-epair", subnets: []string{"10.23.0.0/16"}})
	ptpConf := map[string]any{
		"cniVersion": "1.1.0", "name": "lat-ptp",
		"plugins": []any{map[string]any{
			"type": "ptp",
			"ipam": map[string]any{
				"type": "host-local", "dataDir": e.dataDir,
				"ranges": []any{[]any{map[string]any{"subnet": "10.24.0.0/16"}}},
				"routes": []any{map[string]any{"dst": "0.0.0.0/0"}},
			},
		}},
	}
	ptp, err := libcni.ConfListFromBytes(mustJSON(t, ptpConf))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*libcni.NetworkConfigList{epair, ptp} {
		var add, del, both []time.Duration
		for i := 0; i < rounds; i++ {
			rt := harness.RuntimeConf(newID(t), p, "eth0")
			t0 := time.Now()
			if _, err := e.cni.Add(l, rt); err != nil {
				t.Fatalf("%s ADD %d: %v", l.Name, i, err)
			}
			t1 := time.Now()
			if err := e.cni.Del(l, rt); err != nil {
				t.Fatalf("%s DEL %d: %v", l.Name, i, err)
			}
			t2 := time.Now()
			add, del, both = append(add, t1.Sub(t0)), append(del, t2.Sub(t1)), append(both, t2.Sub(t0))
		}
		t.Logf("%-9s %d rounds: median ADD %v, DEL %v, ADD+DEL %v (p90 ADD+DEL %v)", l.Name, rounds,
			quantile(add, 0.5), quantile(del, 0.5), quantile(both, 0.5), quantile(both, 0.9))
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)].Round(10 * time.Microsecond)
}

package cni_test

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
)

// TestADDDELLatency times ADD and DEL of epair against the reference ptp
// plugin (a veth pair), both with host-local, in the same host namespace:
// EPAIR_LATENCY_N pods (default 100), each in its own network namespace, are
// added one after the other and then deleted one after the other ("seq"),
// then added and deleted again by EPAIR_LATENCY_PAR workers at once ("par",
// default 8; 1 or less skips it). Set EPAIR_LATENCY=1 to run it. The daemon
// logs at info, as on a node; EPAIR_DAEMON_ARGS adds daemon flags.
//
// Besides the test log it prints one line per plugin and mode on stdout for
// hack/bench/run.sh:
//
//	LATENCY plugin=epair mode=seq n=100 par=1 add_p50_ms=.. add_p99_ms=.. del_p50_ms=.. del_p99_ms=.. wall_s=..
func TestADDDELLatency(t *testing.T) {
	if os.Getenv("EPAIR_LATENCY") != "1" {
		t.Skip("set EPAIR_LATENCY=1 to measure ADD/DEL latency")
	}
	n := envInt(t, "EPAIR_LATENCY_N", 100)
	par := envInt(t, "EPAIR_LATENCY_PAR", 8)

	harness.RequireRoot(t)
	e := &env{dataDir: t.TempDir()}
	e.host = track(t, harness.NewNS(t))
	e.daemonNS = e.host
	e.d = harness.StartDaemonIn(t, e.host, append([]string{"--log-level", "info"}, strings.Fields(os.Getenv("EPAIR_DAEMON_ARGS"))...)...)
	e.cni = harness.NewCNI(t, e.host)

	pods := make([]ns.NetNS, n)
	for i := range pods {
		pods[i] = e.pod(t)
	}
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
	plugins := []struct {
		name string
		list *libcni.NetworkConfigList
	}{{"epair", epair}, {"ptp", ptp}}
	modes := []int{1}
	if par > 1 {
		modes = append(modes, par)
	}
	for _, workers := range modes {
		mode := "seq"
		if workers > 1 {
			mode = "par"
		}
		for _, p := range plugins {
			rts := make([]*libcni.RuntimeConf, n)
			for i := range rts {
				rts[i] = harness.RuntimeConf(newID(t), pods[i], "eth0")
			}
			t0 := time.Now()
			add := timeAll(t, workers, rts, func(rt *libcni.RuntimeConf) error {
				_, err := e.cni.Add(p.list, rt)
				return err
			}, func(rt *libcni.RuntimeConf) { e.cni.Del(p.list, rt) })
			if t.Failed() {
				t.FailNow()
			}
			del := timeAll(t, workers, rts, func(rt *libcni.RuntimeConf) error { return e.cni.Del(p.list, rt) }, nil)
			wall := time.Since(t0)
			if t.Failed() {
				t.FailNow()
			}
			t.Logf("%-5s %s: %d pods, %d at once: ADD p50 %v p99 %v, DEL p50 %v p99 %v, all in %v", p.name, mode, n, workers,
				quantile(add, 0.5), quantile(add, 0.99), quantile(del, 0.5), quantile(del, 0.99), wall.Round(time.Millisecond))
			fmt.Printf("LATENCY plugin=%s mode=%s n=%d par=%d add_p50_ms=%.2f add_p99_ms=%.2f del_p50_ms=%.2f del_p99_ms=%.2f wall_s=%.2f\n",
				p.name, mode, n, workers, ms(quantile(add, 0.5)), ms(quantile(add, 0.99)), ms(quantile(del, 0.5)), ms(quantile(del, 0.99)), wall.Seconds())
		}
	}
}

// timeAll runs op on every rt with workers at once and returns how long each
// call took. On an error it records it, waits for the calls under way, and
// runs undo (when not nil) on the ones that succeeded.
func timeAll(t *testing.T, workers int, rts []*libcni.RuntimeConf, op func(*libcni.RuntimeConf) error, undo func(*libcni.RuntimeConf)) []time.Duration {
	t.Helper()
	took := make([]time.Duration, len(rts))
	ok := make([]bool, len(rts))
	next := make(chan int)
	var mu sync.Mutex
	var failed error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				err := op(rts[i])
				took[i] = time.Since(t0)
				mu.Lock()
				if err != nil && failed == nil {
					failed = fmt.Errorf("pod %d (%s): %w", i, rts[i].ContainerID, err)
				}
				ok[i] = err == nil
				mu.Unlock()
			}
		}()
	}
	for i := range rts {
		mu.Lock()
		stop := failed != nil
		mu.Unlock()
		if stop {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if failed != nil {
		t.Error(failed)
		if undo != nil {
			for i, rt := range rts {
				if ok[i] {
					undo(rt)
				}
			}
		}
	}
	return took
}

func envInt(t *testing.T, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 && key == "EPAIR_LATENCY_N" {
		t.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile is the nearest-rank quantile q of d.
func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(float64(len(s))*q)) - 1
	return s[max(0, min(i, len(s)-1))].Round(10 * time.Microsecond)
}

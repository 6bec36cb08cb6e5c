// Package containerd is the containerd end-to-end suite: epair as the CNI
// plugin of a real container runtime, driven through the CRI with crictl,
// as kubelet would. e2e/containerd/up.sh brings up a private containerd and
// an `epair daemon` in a private network namespace; the checks here are
// subtests run in order, each named as in the old run.sh, and the first one
// that fails stops the rest; e2e/containerd/down.sh removes everything, by
// t.Cleanup, whatever the outcome. See README.md.
package containerd

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
)

// gate is the variable `make e2e-containerd` sets: without it `go test
// ./...` does not install and start containerd.
const gate = "EPAIR_E2E_CONTAINERD"

// shapeRate is the annotations' "10M" in bit/s.
const shapeRate = 10_000_000

// check runs one named check as a subtest and stops the test at its first
// failure: every later check builds on the state the earlier ones made.
func check(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

// must fails the check on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// logged fails the check on a call's error, else logs its output:
// logged(t)(s.cri(...)).
func logged(t *testing.T) func(out string, err error) {
	return func(out string, err error) {
		t.Helper()
		must(t, err)
		t.Log(strings.TrimSpace(out))
	}
}

func TestContainerd(t *testing.T) {
	if os.Getenv(gate) != "1" {
		t.Skipf("containerd suite: installs and starts containerd; run it with `make e2e-containerd` (sets %s=1)", gate)
	}
	harness.RequireRoot(t)
	churnN := 20
	if v := os.Getenv("EPAIR_E2E_CHURN"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("EPAIR_E2E_CHURN=%q: want a count of pods, at least 1", v)
		}
		churnN = n
	}
	s := up(t)
	s.node(t)
	s.twoPods(t)
	s.traffic(t)
	s.shaping(t)
	s.cleanupAndChurn(t, churnN)
}

// node: the daemon and containerd answer, the images and the CNI config
// are loaded.
func (s *suite) node(t *testing.T) {
	check(t, "daemon-answers", func(t *testing.T) {
		harness.Eventually(t, 5*time.Second, "the epair daemon to answer", func() error { _, err := s.pairs(); return err })
	})
	check(t, "containerd-ready", func(t *testing.T) {
		harness.Eventually(t, 10*time.Second, "containerd's CRI to answer", func() error { _, err := s.cri("info"); return err })
	})
	check(t, "import-pause", func(t *testing.T) { logged(t)(s.ctr("images", "import", s.path("img/pause.tar"))) })
	check(t, "import-busybox", func(t *testing.T) { logged(t)(s.ctr("images", "import", s.path("img/busybox.tar"))) })
	check(t, "images-visible-to-cri", func(t *testing.T) {
		out, err := s.cri("images")
		must(t, err)
		if !strings.Contains(out, "epair-e2e/pause") || !strings.Contains(out, "epair-e2e/busybox") {
			t.Fatalf("crictl images lacks the suite's images:\n%s", out)
		}
	})
	check(t, "cni-config-loaded", func(t *testing.T) { must(t, s.cniLoaded(s.env["NET"])) })
}

// twoPods: two pods with a busybox container each, their IPs and the host
// side of their pairs.
func (s *suite) twoPods(t *testing.T) {
	check(t, "runp-pod-a", func(t *testing.T) { must(t, s.runpNamed("epair-a", nil)) })
	check(t, "runp-pod-b", func(t *testing.T) { must(t, s.runpNamed("epair-b", nil)) })
	check(t, "create-start-container-a", func(t *testing.T) { must(t, s.create("epair-a")) })
	check(t, "create-start-container-b", func(t *testing.T) { must(t, s.create("epair-b")) })
	check(t, "pod-a-ip-in-subnet", func(t *testing.T) { must(t, s.podIP("epair-a")) })
	check(t, "pod-b-ip-in-subnet", func(t *testing.T) { must(t, s.podIP("epair-b")) })
	t.Logf("pod a %s (%.12s), pod b %s (%.12s)", s.ips["epair-a"], s.pods["epair-a"], s.ips["epair-b"], s.pods["epair-b"])
	check(t, "pod-a-eth0-ip-equals-inspectp", func(t *testing.T) { must(t, s.eth0IP("epair-a")) })
	check(t, "pod-b-eth0-ip-equals-inspectp", func(t *testing.T) { must(t, s.eth0IP("epair-b")) })
	check(t, "host-side-pairs-and-routes", func(t *testing.T) { must(t, s.hostSide("epair-a", "epair-b")) })
}

// viaBEnd is a route through an epair b end.
var viaBEnd = regexp.MustCompile(`dev epair[0-9]*b`)

// hostSide: two pairs, b ends in the node namespace, a /32 route per pod
// via a b end, the gateway on a b end.
func (s *suite) hostSide(pods ...string) error {
	ps, err := s.pairs()
	if err != nil {
		return err
	}
	if len(ps) != len(pods) {
		return fmt.Errorf("pair list has %d pairs, want %d: %+v", len(ps), len(pods), ps)
	}
	for _, pod := range pods {
		out, err := s.ip("-4", "route", "show", s.ips[pod]+"/32")
		if err != nil {
			return err
		}
		if !viaBEnd.MatchString(out) {
			all, _ := s.ip("-4", "route")
			return fmt.Errorf("no host route to %s via an epair b end:\n%s", s.ips[pod], all)
		}
	}
	out, err := s.ip("-4", "addr", "show")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "inet "+s.env["EPAIR_GW"]+"/32") {
		return fmt.Errorf("no gateway %s/32 on a b end:\n%s", s.env["EPAIR_GW"], out)
	}
	return nil
}

// traffic: ping both ways and to the gateway, 10 MiB over TCP, iperf3.
func (s *suite) traffic(t *testing.T) {
	ping := func(from, to string) func(t *testing.T) {
		return func(t *testing.T) { logged(t)(s.exec(from, "ping", "-c", "3", "-i", "0.2", "-W", "2", to)) }
	}
	check(t, "ping-pod-a-to-pod-b", ping("epair-a", s.ips["epair-b"]))
	check(t, "ping-pod-b-to-pod-a", ping("epair-b", s.ips["epair-a"]))
	check(t, "ping-pod-a-to-gateway", ping("epair-a", s.env["EPAIR_GW"]))
	check(t, "ping-pod-b-to-gateway", ping("epair-b", s.env["EPAIR_GW"]))
	check(t, "tcp-10MiB-pod-a-to-pod-b-sha256", func(t *testing.T) { logged(t)(s.tcpTransfer("epair-a", "epair-b")) })
	check(t, "iperf3-pod-a-to-pod-b", func(t *testing.T) {
		out, err := s.iperf("epair-a", "epair-b", 3)
		must(t, err)
		s.unshaped = harness.IperfReceived(t, out)
		t.Logf("iperf3 a->b: %.0f Mbit/s", s.unshaped/1e6)
	})
}

// shaping: a third pod annotated with kubernetes.io/ingress-bandwidth and
// egress-bandwidth: containerd's CRI passes them to the plugins that
// declare the bandwidth capability (the conflist does) as runtimeConfig
// bandwidth, rates in bits/s, and a burst of its own (math.MaxUint32 bits,
// about 512 MiB, in containerd 1.6: the annotations have no burst).
func (s *suite) shaping(t *testing.T) {
	ann := map[string]string{"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "10M"}
	check(t, "runp-pod-shaped", func(t *testing.T) { must(t, s.runpNamed("epair-s", ann)) })
	check(t, "create-start-container-shaped", func(t *testing.T) {
		must(t, s.create("epair-s"))
		sb, err := s.inspectp(s.pods["epair-s"])
		must(t, err)
		s.ips["epair-s"] = sb.ip
		t.Logf("pod s %s (%.12s)", sb.ip, s.pods["epair-s"])
	})
	var burst uint64
	check(t, "pod-s-pair-shaped-10M", func(t *testing.T) {
		bw := s.bandwidth(t)[s.pods["epair-s"]]
		t.Logf("pod s pair bandwidth: %+v", bw)
		if bw == nil || bw.IngressRate != shapeRate || bw.EgressRate != shapeRate || bw.IngressBurst == 0 || bw.EgressBurst == 0 {
			t.Fatalf("pod s pair bandwidth %+v, want rate %d each way and a burst", bw, shapeRate)
		}
		burst = bw.EgressBurst
	})
	check(t, "pods-a-b-pairs-unshaped", func(t *testing.T) {
		bws := s.bandwidth(t)
		for _, pod := range []string{"epair-a", "epair-b"} {
			if bw, ok := bws[s.pods[pod]]; !ok || bw != nil {
				t.Fatalf("pod %s: pair found %v, bandwidth %+v; want a pair without", pod, ok, bw)
			}
		}
	})
	// iperf3 s -> b for 10 s, near the rate once the burst is spent; pod
	// a's unshaped iperf3 above must be over 3 times the rate.
	check(t, "iperf3-pod-s-to-pod-b-near-10M", func(t *testing.T) {
		out, err := s.iperf("epair-s", "epair-b", 10)
		must(t, err)
		logged(t)(shapedVerdict(out, shapeRate, float64(burst)))
		t.Logf("pod a unshaped: %.0f Mbit/s", s.unshaped/1e6)
		if s.unshaped <= 3*shapeRate {
			t.Fatalf("pod a unshaped %.0f bit/s, want over 3 × %d", s.unshaped, shapeRate)
		}
	})
}

// bandwidth is each pair's shaping by its owner's sandbox id.
func (s *suite) bandwidth(t *testing.T) map[string]*api.Bandwidth {
	t.Helper()
	ps, err := s.pairs()
	must(t, err)
	bws := map[string]*api.Bandwidth{}
	for _, p := range ps {
		if p.Owner != nil {
			bws[p.Owner.ContainerID] = p.Bandwidth
		}
	}
	return bws
}

// cleanupAndChurn: the three pods removed and nothing left, then churns
// with epair and with the reference bridge plugin, and their runp times.
func (s *suite) cleanupAndChurn(t *testing.T, n int) {
	ids := []string{s.pods["epair-a"], s.pods["epair-b"], s.pods["epair-s"]}
	check(t, "stop-pods", func(t *testing.T) { logged(t)(s.cri(append([]string{"stopp"}, ids...)...)) })
	check(t, "remove-pods", func(t *testing.T) { logged(t)(s.cri(append([]string{"rmp"}, ids...)...)) })
	check(t, "nothing-left-after-three-pods", func(t *testing.T) {
		must(t, s.nothingLeft(s.env["NET"], []string{s.ips["epair-a"], s.ips["epair-b"], s.ips["epair-s"]}))
	})
	epair := s.churnChecks(t, "epair", s.env["NET"], n)
	check(t, "cni-config-reloaded-bridge", func(t *testing.T) {
		must(t, os.Remove(s.path("cni-conf/10-"+s.env["NET"]+".conflist")))
		b, err := os.ReadFile(s.path("bridge.conflist"))
		must(t, err)
		must(t, os.WriteFile(s.path("cni-conf/10-"+s.env["NET"]+"-bridge.conflist"), b, 0o600))
		// containerd reloads conf_dir by itself.
		harness.Eventually(t, 10*time.Second, "containerd to load the bridge conflist", func() error { return s.cniLoaded(s.env["NET"] + "-bridge") })
	})
	bridge := s.churnChecks(t, "bridge", s.env["NET"]+"-bridge", n)
	t.Logf("crictl runp median over %d pods: epair %.0f ms, bridge %.0f ms", n, epair, bridge)
}

// churnChecks runs churn-LABEL and nothing-left-after-LABEL-churn and
// returns the median runp time in ms.
func (s *suite) churnChecks(t *testing.T, label, network string, n int) float64 {
	var ips []string
	var took []time.Duration
	check(t, "churn-"+label, func(t *testing.T) {
		var err error
		ips, took, err = s.churn(label, n)
		t.Logf("runp ms: %v", took)
		must(t, err)
	})
	check(t, "nothing-left-after-"+label+"-churn", func(t *testing.T) { must(t, s.nothingLeft(network, ips)) })
	m := median(took)
	t.Logf("%s: crictl runp median %.0f ms over %d pods", label, m, n)
	return m
}

package cni_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
)

// addPod ADDs pod to network list as kubelet's runtime does, with
// K8S_POD_* in CNI_ARGS.
func (e *env) addPod(t *testing.T, list string, pod ns.NetNS, namespace, name string) *attachment {
	t.Helper()
	rt := harness.RuntimeConf(newID(t), pod, "eth0")
	rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", namespace}, {"K8S_POD_NAME", name},
		{"K8S_POD_INFRA_CONTAINER_ID", rt.ContainerID}, {"K8S_POD_UID", "0c8f5e1c-5b8e-4d0e-9a0e-3f1f0b0a0c0d"}}
	a, err := e.tryAdd(t, e.list(t, netw{name: list}), rt, pod)
	if err != nil {
		t.Fatalf("ADD %s/%s: %v", namespace, name, err)
	}
	return a
}

// TestMetricsThroughPrometheus is the metrics' real caller: a daemon with
// --metrics-addr, two pods ADDed through libcni with kubelet's CNI_ARGS,
// Debian's prometheus scraping it every second. Through Prometheus's query
// API: the sending pod's transmit counters (found by its pod labels) rose
// by at least the pings sent and their bytes, the receiving pod's receive
// counters too; the CNI results are counted as the runtime saw them (a
// refused ADD among them); a pod's series vanish once it is DELeted. The
// exposition passes `promtool check metrics`.
func TestMetricsThroughPrometheus(t *testing.T) {
	harness.RequireRoot(t)
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("needs Debian's prometheus (promtool): make deps")
	}
	host := track(t, harness.NewNS(t))
	maddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, host))
	e := newEnvIn(t, host, "--metrics-addr", maddr)
	prom := harness.StartPrometheus(t, host, maddr)

	podA, podB := e.pod(t), e.pod(t)
	a := e.addPod(t, "metricsnet", podA, "shop", "client-7d4b9")
	b := e.addPod(t, "metricsnet", podB, "shop", "server-0")
	bad := harness.RuntimeConf(newID(t), e.pod(t), "eth0")
	bad.Args = [][2]string{{"K8S_POD_NAMESPACE", "Shop"}, {"K8S_POD_NAME", "x"}}
	if _, err := e.tryAdd(t, e.list(t, netw{name: "metricsnet"}), bad, nil); err == nil {
		t.Fatal("ADD with a namespace breaking Kubernetes' rules succeeded")
	} else if code, msg := cniCodeMsg(err); code != fmt.Sprint(types.ErrInvalidEnvironmentVariables) {
		t.Fatalf("ADD with a namespace breaking Kubernetes' rules: code %s (%s), want 4", code, msg)
	}

	sent := `epair_transmit_packets_total{job="epair",pod_namespace="shop",pod_name="client-7d4b9",interface="eth0",end="a"}`
	sentBytes := strings.Replace(sent, "packets", "bytes", 1)
	recv := `epair_receive_packets_total{job="epair",pod_namespace="shop",pod_name="server-0",end="a"}`
	one := func(s []harness.Sample) bool { return len(s) == 1 }
	before := prom.WaitFor(t, sent, 20*time.Second, one)[0]
	if l := before.Labels; l["container_id"] != a.id || l["device"] != "eth0" || l["pair"] == "" {
		t.Errorf("labels of the pod's series: %v", l)
	}
	bytesBefore := prom.WaitFor(t, sentBytes, 5*time.Second, one)[0].Value
	recvBefore := prom.WaitFor(t, recv, 5*time.Second, one)[0].Value

	const n, payload = 20, 1000
	frame := payload + 8 + 20 + 14 // ICMP, IPv4 and Ethernet headers
	harness.MustRun(t, podA, "ping", "-c", fmt.Sprint(n), "-i", "0.05", "-s", fmt.Sprint(payload), "-W", "2", b.ip(t, 4).Address.IP.String())
	after := prom.WaitFor(t, sent, 15*time.Second, func(s []harness.Sample) bool { return one(s) && s[0].Value >= before.Value+n })[0]
	bytesAfter := prom.WaitFor(t, sentBytes, 15*time.Second, func(s []harness.Sample) bool {
		return one(s) && s[0].Value >= bytesBefore+float64(n*frame)
	})[0].Value
	recvAfter := prom.WaitFor(t, recv, 15*time.Second, func(s []harness.Sample) bool { return one(s) && s[0].Value >= recvBefore+n })[0].Value
	t.Logf("query %s: %+v", sent, after)
	t.Logf("pod shop/client-7d4b9 sent %v frames, %v bytes for %d pings of %d bytes; shop/server-0 received %v",
		after.Value-before.Value, bytesAfter-bytesBefore, n, frame, recvAfter-recvBefore)

	prom.WaitFor(t, `epair_cni_commands_total{command="ADD"}`, 15*time.Second, func(s []harness.Sample) bool {
		got := map[string]float64{}
		for _, x := range s {
			got[x.Labels["code"]] = x.Value
		}
		return len(got) == 2 && got["0"] == 2 && got["4"] == 1
	})
	prom.WaitFor(t, `epair_api_requests_total{verb="POST /v1/pairs",code="201"}`, 15*time.Second, func(s []harness.Sample) bool {
		return one(s) && s[0].Value == 2
	})

	checkExposition(t, host, maddr)

	e.del(t, b)
	prom.WaitFor(t, `{job="epair",pod_name="server-0"}`, 15*time.Second, func(s []harness.Sample) bool { return len(s) == 0 })
	prom.WaitFor(t, `epair_cni_commands_total{command="DEL",code="0"}`, 15*time.Second, func(s []harness.Sample) bool {
		return one(s) && s[0].Value >= 1
	})
	if s, err := prom.Query(sent); err != nil || len(s) != 1 {
		t.Errorf("the other pod's series after the DEL: %+v %v", s, err)
	}
}

// newEnvIn is an env whose daemon and runtime share host (made by the
// caller, so that it can pick a port in it first).
func newEnvIn(t *testing.T, host ns.NetNS, daemonArgs ...string) *env {
	t.Helper()
	e := &env{dataDir: t.TempDir(), host: host, daemonNS: host}
	e.d = harness.StartDaemonIn(t, host, daemonArgs...)
	e.cni = harness.NewCNI(t, host)
	return e
}

// checkExposition runs `promtool check metrics` on what the daemon serves:
// it must pass without a complaint.
func checkExposition(t *testing.T, n ns.NetNS, addr string) {
	t.Helper()
	body := []byte(getMetrics(t, n, addr))
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if strings.Contains(l, `pod_name="client-7d4b9"`) && strings.Contains(l, `end="a"`) && !strings.Contains(l, "drops") {
			t.Logf("exposition: %s", l)
		}
	}
	for _, want := range []string{`pod_name="client-7d4b9"`, `reason="drop_mtu"`, "epair_daemon_starts_total 1", "epair_restore_duration_seconds "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition has no %s", want)
		}
	}
}

// TestPodIdentityThroughCLI: `epair pair list` and `epair stats` show the
// pod of each pair, and `epair stats` takes the pod as namespace/name or
// as a name only it has; a name two pods share is an error naming both.
func TestPodIdentityThroughCLI(t *testing.T) {
	e := newEnv(t, placements[0], false)
	e.addPod(t, "podnet", e.pod(t), "shop", "web-0")
	e.addPod(t, "podnet", e.pod(t), "staging", "web-0")
	e.addPod(t, "podnet", e.pod(t), "shop", "db-0")

	out, err := e.d.Epair("pair", "list")
	if err != nil {
		t.Fatalf("pair list: %v\n%s", err, out)
	}
	var ps []api.Pair
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatal(err)
	}
	pods := map[string]bool{}
	for _, p := range ps {
		pods[p.Pod] = p.Owner.Pod != nil && p.Owner.Pod.UID != "" && p.Owner.Pod.InfraContainerID == p.Owner.ContainerID
	}
	if len(pods) != 3 || !pods["shop/web-0"] || !pods["staging/web-0"] || !pods["shop/db-0"] {
		t.Errorf("pair list pods: %v\n%s", pods, out)
	}
	for _, id := range []string{"shop/web-0", "db-0"} {
		out, err := e.d.Epair("stats", id)
		var s api.Stats
		if err != nil || json.Unmarshal([]byte(out), &s) != nil || !strings.HasSuffix(s.Pod, id) {
			t.Errorf("stats %s: %v\n%s", id, err, out)
		}
	}
	out, err = e.d.Epair("stats", "web-0")
	if err == nil || !strings.Contains(out, "pod shop/web-0") || !strings.Contains(out, "pod staging/web-0") {
		t.Errorf("stats of a name two pods share: %v\n%s", err, out)
	}
	if _, err := e.d.Client.Stats(context.Background(), "shop/nope"); err == nil {
		t.Error("stats of an unknown pod succeeded")
	}
}

// TestMetricsAcrossRestart: a daemon killed with SIGKILL and started again
// on the same state and --metrics-addr serves its metrics again (the port
// is retried while the dead one's socket closes), counts the second start
// and says how long its restore took.
func TestMetricsAcrossRestart(t *testing.T) {
	harness.RequireRoot(t)
	host := track(t, harness.NewNS(t))
	maddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, host))
	e := newEnvIn(t, host, "--metrics-addr", maddr)
	e.addPod(t, "restartnet", e.pod(t), "shop", "web-0")
	e.d.Kill()
	e.d.Start()
	// The restore runs after the API serves, so its duration shows once
	// it is over.
	harness.Eventually(t, 10*time.Second, "the restarted daemon's metrics", func() error {
		body := getMetrics(t, host, maddr)
		for _, want := range []string{"\nepair_daemon_starts_total 2\n", "\nepair_restore_duration_seconds ", `pod_name="web-0"`} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("after the restart the exposition has no %q", want)
			}
		}
		return nil
	})
}

// TestMetricsAddrRefused: a taken port or a malformed --metrics-addr stops
// the daemon at start, saying why (exit 1 and 2), before it serves anything.
func TestMetricsAddrRefused(t *testing.T) {
	harness.RequireRoot(t)
	host := track(t, harness.NewNS(t))
	port := harness.FreePort(t, host)
	// Another program's listener on the port, in the namespace made here.
	holder := exec.Command("nsenter", "--net="+host.Path(), "--", "python3", "-c",
		fmt.Sprintf("import socket,time; s=socket.socket(); s.bind(('127.0.0.1',%d)); s.listen(); print('up', flush=True); time.sleep(60)", port))
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	if _, err := io.ReadFull(out, make([]byte, 3)); err != nil {
		t.Fatalf("the port holder did not start: %v", err)
	}
	for addr, want := range map[string]struct {
		code int
		msg  string
	}{
		fmt.Sprintf("127.0.0.1:%d", port): {1, "is in use"},
		"localhost:9808":                  {2, "is not an IP address"},
	} {
		dir := t.TempDir()
		cmd := exec.Command("nsenter", "--net="+host.Path(), "--", harness.Binary(t), "daemon",
			"--socket", dir+"/epair.sock", "--state-dir", dir+"/state", "--metrics-addr", addr)
		b, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != want.code || !strings.Contains(string(b), want.msg) {
			t.Errorf("--metrics-addr %s: exit %d (%v), want %d saying %q:\n%s", addr, code, err, want.code, want.msg, b)
		}
	}
}

// getMetrics reads the exposition at addr in n.
func getMetrics(t *testing.T, n ns.NetNS, addr string) string {
	t.Helper()
	resp, err := harness.HTTPClientIn(n).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

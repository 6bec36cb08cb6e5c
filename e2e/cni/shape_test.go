package cni_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
)

// shapeRate is what the shaped pod gets each way: 16 Mbit/s, with a burst
// of 10 ms.
const (
	shapeRate  = 16_000_000
	shapeBurst = 160_000
	payload    = 4 << 20
)

// TestShaping: a pod shaped through runtimeConfig.bandwidth sends and
// receives 4 MiB over TCP in about payload/rate (±20 %), while an unshaped
// pod of the same network is much faster.
func TestShaping(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		list := e.list(t, netw{name: "shape", epair: bandwidthCaps})
		p := e.pod(t)
		rt := harness.RuntimeConf(newID(t), p, "eth0")
		rt.CapabilityArgs = map[string]any{"bandwidth": map[string]any{
			"ingressRate": shapeRate, "ingressBurst": shapeBurst,
			"egressRate": shapeRate, "egressBurst": shapeBurst,
		}}
		shaped, err := e.tryAdd(t, list, rt, p)
		if err != nil {
			t.Fatalf("ADD: %v", err)
		}
		free := e.add(t, list, e.pod(t))

		want := time.Duration(float64(payload*8) / shapeRate * float64(time.Second))
		for _, dir := range []struct {
			name string
			fn   func(*testing.T, ns.NetNS, ns.NetNS) time.Duration
		}{{"egress", upload}, {"ingress", download}} {
			d := dir.fn(t, e.host, shaped.pod)
			ratio := float64(d) / float64(want)
			t.Logf("%s: shaped pod took %v for %d bytes at %d bit/s, want %v: %.2f", dir.name, d, payload, shapeRate, want, ratio)
			if ratio < 0.8 || ratio > 1.2 {
				t.Errorf("%s: shaped transfer took %v, want %v ±20 %%", dir.name, d, want)
			}
			if u := dir.fn(t, e.host, free.pod); u > want/4 {
				t.Errorf("%s: unshaped transfer took %v, want well under %v", dir.name, u, want)
			} else {
				t.Logf("%s: unshaped pod took %v", dir.name, u)
			}
		}
		if err := e.cni.Check(list, rt); err != nil {
			t.Errorf("CHECK: %v", err)
		}
	})
}

// listenHost listens on the gateway in the host namespace.
func listenHost(t *testing.T, host ns.NetNS) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := host.Do(func(ns.NetNS) (err error) {
		ln, err = net.Listen("tcp", gw4+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialFromPod connects from the pod to the host's listener.
func dialFromPod(t *testing.T, pod ns.NetNS, ln net.Listener) net.Conn {
	t.Helper()
	var c net.Conn
	if err := pod.Do(func(ns.NetNS) (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 3*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// upload sends payload bytes from the pod to the host and returns how long
// until the host has read them all.
func upload(t *testing.T, host, pod ns.NetNS) time.Duration {
	t.Helper()
	ln := listenHost(t, host)
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if err == nil && n != payload {
			err = fmt.Errorf("host read %d bytes, want %d", n, payload)
		}
		got <- err
	}()
	start := time.Now()
	c := dialFromPod(t, pod, ln)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(make([]byte, payload)); err != nil {
		t.Fatalf("pod write: %v", err)
	}
	c.Close()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// download sends payload bytes from the host to the pod and returns how
// long until the pod has read them all.
func download(t *testing.T, host, pod ns.NetNS) time.Duration {
	t.Helper()
	ln := listenHost(t, host)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		c.Write(make([]byte, payload))
	}()
	start := time.Now()
	c := dialFromPod(t, pod, ln)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != payload {
		t.Fatalf("pod read %d bytes, %v; want %d", n, err, payload)
	}
	return time.Since(start)
}

// bandwidthCaps is the epair entry of a conflist that takes runtime
// bandwidth, as the agent writes it.
var bandwidthCaps = map[string]any{"capabilities": map[string]any{"bandwidth": true}}

// shapedPod adds a pod through list shaped at rate bit/s both ways, with a
// burst of 10 ms of the rate.
func (e *env) shapedPod(t *testing.T, list *libcni.NetworkConfigList, rate uint64) ns.NetNS {
	t.Helper()
	p := e.pod(t)
	rt := harness.RuntimeConf(newID(t), p, "eth0")
	rt.CapabilityArgs = map[string]any{"bandwidth": map[string]any{
		"ingressRate": rate, "ingressBurst": rate / 100, "egressRate": rate, "egressBurst": rate / 100,
	}}
	if _, err := e.tryAdd(t, list, rt, p); err != nil {
		t.Fatalf("ADD of a pod shaped at %d bit/s: %v", rate, err)
	}
	return p
}

// iperfServer starts a one-shot iperf3 server on the host's gateway
// address and returns its port.
func iperfServer(t *testing.T, host ns.NetNS, port int) string {
	t.Helper()
	p := strconv.Itoa(port)
	harness.MustRun(t, host, "iperf3", "-s", "-1", "-D", "-B", gw4, "-p", p)
	time.Sleep(200 * time.Millisecond) // -D returns before it listens
	return p
}

// TestShapingAccuracyIperf measures iperf3 TCP (one stream, 5 s) through a
// pod shaped at 1, 10, 100 and 1000 Mbit/s, both ways, with a burst of
// 10 ms of the rate, and logs measured/configured (measured in frame bytes,
// as the bucket charges them). It takes a minute and
// wants quiet cores, so it runs only with EPAIR_MEASURE=1; it fails
// outside ±10 %. EPAIR_TCP_CC=cubic (say) sets the congestion control;
// EPAIR_SHAPE_MBITS="1 10" the rates.
func TestShapingAccuracyIperf(t *testing.T) {
	if os.Getenv("EPAIR_MEASURE") == "" {
		t.Skip("set EPAIR_MEASURE=1 to measure")
	}
	e := newEnv(t, placements[0], false)
	list := e.list(t, netw{name: "shapeperf", epair: bandwidthCaps})
	for i, mbit := range shapeRates(t) {
		rate := mbit * 1_000_000
		p := e.shapedPod(t, list, rate)
		setCC(t, "", e.host, p)
		for _, dir := range []string{"egress", "ingress"} {
			// A port per run: a -1 server may still hold the last one.
			port := iperfServer(t, e.host, 15201+2*i+len(dir)%2)
			args := []string{"iperf3", "-c", gw4, "-p", port, "-t", "5", "-J"}
			if dir == "ingress" {
				args = append(args, "-R")
			}
			res := harness.ParseIperf(t, harness.MustRun(t, p, args...))
			// iperf3 counts TCP payload; the bucket charges whole frames:
			// 1448 bytes of payload in 1514 (MSS 1448 with timestamps).
			ratio := res.Received / float64(rate) * 1514 / 1448
			t.Logf("%4d Mbit/s %-7s: measured %.2f Mbit/s goodput, measured/configured %.3f in frame bytes, %d retransmits",
				mbit, dir, res.Received/1e6, ratio, res.Retransmits)
			if ratio < 0.9 || ratio > 1.1 {
				t.Errorf("%d Mbit/s %s: measured/configured %.3f, want within ±10 %%", mbit, dir, ratio)
			}
		}
	}
}

// TestShapedQueueLatency measures ping RTT from a pod shaped at 10 Mbit/s
// each way while iperf3 TCP saturates it, uploading and downloading: the
// pings wait behind the TCP flow in the shaped queue, which holds at most
// 25 ms of the rate plus the burst. TCP is Reno (EPAIR_TCP_CC to change
// it), loss-based like CUBIC, which fills whatever queue there is (BBR,
// this machine's default, keeps queues short by itself; a namespace may
// pick only from net.ipv4.tcp_allowed_congestion_control). It logs
// the RTT quantiles and fails when the median is over 100 ms (with an
// 8 MiB queue it is seconds). EPAIR_MEASURE=1 only, like
// TestShapingAccuracyIperf.
func TestShapedQueueLatency(t *testing.T) {
	if os.Getenv("EPAIR_MEASURE") == "" {
		t.Skip("set EPAIR_MEASURE=1 to measure")
	}
	const rate = 10_000_000
	e := newEnv(t, placements[0], false)
	list := e.list(t, netw{name: "shapelat", epair: bandwidthCaps})
	p := e.shapedPod(t, list, rate)
	setCC(t, "reno", e.host, p)
	for i, dir := range []string{"egress", "ingress"} {
		port := iperfServer(t, e.host, 15301+i)
		args := []string{"iperf3", "-c", gw4, "-p", port, "-t", "8"}
		if dir == "ingress" {
			args = append(args, "-R")
		}
		done := make(chan string, 1)
		go func() { out, _ := harness.Run(t, p, args...); done <- out }()
		time.Sleep(2 * time.Second) // TCP has filled the queue by now
		out, _ := harness.Run(t, p, "ping", "-n", "-c", "20", "-i", "0.2", "-W", "10", gw4)
		<-done
		rtts := pingRTTs(out)
		if len(rtts) == 0 {
			t.Fatalf("%s: no ping answered under load:\n%s", dir, out)
		}
		sort.Float64s(rtts)
		med := rtts[len(rtts)/2]
		t.Logf("%s at %d Mbit/s under iperf3: ping RTT min %.1f / median %.1f / max %.1f ms (%d of 20 answered)",
			dir, rate/1_000_000, rtts[0], med, rtts[len(rtts)-1], len(rtts))
		if med > 100 {
			t.Errorf("%s: median RTT %.1f ms under load, want under 100 (25 ms of queue + the burst)", dir, med)
		}
	}
}

// shapeRates are the rates TestShapingAccuracyIperf measures, in Mbit/s.
func shapeRates(t *testing.T) []uint64 {
	t.Helper()
	env := os.Getenv("EPAIR_SHAPE_MBITS")
	if env == "" {
		return []uint64{1, 10, 100, 1000}
	}
	var out []uint64
	for _, f := range strings.Fields(env) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil || v == 0 {
			t.Fatalf("EPAIR_SHAPE_MBITS %q: %q is not a rate in Mbit/s", env, f)
		}
		out = append(out, v)
	}
	return out
}

// setCC sets the TCP congestion control of the namespaces: EPAIR_TCP_CC,
// else def ("" keeps the namespaces' own).
func setCC(t *testing.T, def string, nss ...ns.NetNS) {
	t.Helper()
	cc := os.Getenv("EPAIR_TCP_CC")
	if cc == "" {
		cc = def
	}
	if cc == "" {
		return
	}
	for _, n := range nss {
		harness.MustRun(t, n, "sysctl", "-qw", "net.ipv4.tcp_congestion_control="+cc)
	}
	t.Logf("TCP congestion control: %s", cc)
}

// pingRTTs are the time= values of ping's output, in ms.
func pingRTTs(out string) []float64 {
	var rtts []float64
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "time="); ok {
			if ms, err := strconv.ParseFloat(v, 64); err == nil {
				rtts = append(rtts, ms)
			}
		}
	}
	return rtts
}

package cni_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

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
		caps := map[string]any{"capabilities": map[string]any{"bandwidth": true}}
		list := e.list(t, netw{name: "shape", epair: caps})
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

// TestShapingAccuracyIperf measures iperf3 TCP (one stream, 5 s) through a
// pod shaped at 1, 10, 100 and 1000 Mbit/s, both ways, with a burst of
// 10 ms of the rate, and logs measured/configured (measured in frame bytes,
// as the bucket charges them). It takes a minute and
// wants quiet cores, so it runs only with EPAIR_MEASURE=1; it fails
// outside ±10 %.
func TestShapingAccuracyIperf(t *testing.T) {
	if os.Getenv("EPAIR_MEASURE") == "" {
		t.Skip("set EPAIR_MEASURE=1 to measure")
	}
	e := newEnv(t, placements[0], false)
	caps := map[string]any{"capabilities": map[string]any{"bandwidth": true}}
	list := e.list(t, netw{name: "shapeperf", epair: caps})
	for i, mbit := range []uint64{1, 10, 100, 1000} {
		rate := mbit * 1_000_000
		p := e.pod(t)
		rt := harness.RuntimeConf(newID(t), p, "eth0")
		rt.CapabilityArgs = map[string]any{"bandwidth": map[string]any{
			"ingressRate": rate, "ingressBurst": rate / 100, "egressRate": rate, "egressBurst": rate / 100,
		}}
		if _, err := e.tryAdd(t, list, rt, p); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		for _, dir := range []string{"egress", "ingress"} {
			// A port per run: a -1 server may still hold the last one.
			port := strconv.Itoa(15201 + 2*i + len(dir)%2)
			harness.MustRun(t, e.host, "iperf3", "-s", "-1", "-D", "-B", gw4, "-p", port)
			time.Sleep(200 * time.Millisecond)
			args := []string{"iperf3", "-c", gw4, "-p", port, "-t", "5", "-J"}
			if dir == "ingress" {
				args = append(args, "-R")
			}
			out := harness.MustRun(t, p, args...)
			var res struct {
				End struct {
					SumReceived struct {
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("iperf3 output: %v\n%s", err, out)
			}
			// iperf3 counts TCP payload; the bucket charges whole frames:
			// 1448 bytes of payload in 1514 (MSS 1448 with timestamps).
			ratio := res.End.SumReceived.BitsPerSecond / float64(rate) * 1514 / 1448
			t.Logf("%4d Mbit/s %-7s: measured %.2f Mbit/s goodput, measured/configured %.3f in frame bytes",
				mbit, dir, res.End.SumReceived.BitsPerSecond/1e6, ratio)
			if ratio < 0.9 || ratio > 1.1 {
				t.Errorf("%d Mbit/s %s: measured/configured %.3f, want within ±10 %%", mbit, dir, ratio)
			}
		}
	}
}

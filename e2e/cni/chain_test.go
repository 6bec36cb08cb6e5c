package cni_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
)

var (
	portmap   = map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}}
	bandwidth = map[string]any{"type": "bandwidth", "capabilities": map[string]any{"bandwidth": true}}
	tuning    = map[string]any{"type": "tuning", "sysctl": map[string]any{"net.core.somaxconn": "512"}}
	firewall  = map[string]any{"type": "firewall", "backend": "iptables"}
)

const hostPort, podPort = 18080, 8080

// shapedEgress is runtimeConfig.bandwidth for 8 Mbit/s out of the pod.
var shapedEgress = map[string]any{"egressRate": 8_000_000, "egressBurst": 80_000}

var portMappings = []map[string]any{{"hostPort": hostPort, "containerPort": podPort, "protocol": "tcp"}}

// serveOnce listens on podPort inside the pod and answers the first
// connection with a greeting.
func serveOnce(t *testing.T, pod ns.NetNS, greeting string) {
	t.Helper()
	var ln net.Listener
	if err := pod.Do(func(ns.NetNS) (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", podPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, greeting)
	}()
}

// dialFromHost connects from the host netns to addr and reads what comes.
func dialFromHost(t *testing.T, host ns.NetNS, addr string) (string, error) {
	t.Helper()
	var got []byte
	err := host.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	return string(got), err
}

// rulesMentioning are the iptables and nftables lines of n that name ip.
func rulesMentioning(t *testing.T, n ns.NetNS, ip string) []string {
	t.Helper()
	ipt, _ := harness.Run(t, n, "iptables-save")
	nft, _ := harness.Run(t, n, "nft", "list", "ruleset")
	var out []string
	for _, l := range strings.Split(ipt+"\n"+nft, "\n") {
		for _, f := range strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == '/' || r == ',' || r == '{' || r == '}' }) {
			if f == ip {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// TestChain: epair chained with the reference meta plugins.
func TestChain(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		t.Run("portmap tuning firewall", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pl, false)
			list := e.list(t, netw{name: "chain", chain: []map[string]any{portmap, tuning, firewall}})
			p := e.pod(t)
			rt := harness.RuntimeConf(newID(t), p, "eth0")
			rt.CapabilityArgs = map[string]any{"portMappings": portMappings}
			a, err := e.tryAdd(t, list, rt, p)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			checkAttachment(t, e, a, "routed", 1500)
			ip := a.ip(t, 4).Address.IP.String()
			if v := readSysctl(t, p, "net.core.somaxconn"); v != "512" {
				t.Errorf("tuning did not set somaxconn in the pod: %s", v)
			}
			serveOnce(t, p, "hello from the pod")
			got, err := dialFromHost(t, e.host, fmt.Sprintf("%s:%d", gw4, hostPort))
			if err != nil || got != "hello from the pod" {
				t.Errorf("host port %d did not reach the pod's listener: %q %v\n%s", hostPort, got, err, harness.MustRun(t, e.host, "iptables-save", "-t", "nat"))
			}
			if err := e.cni.Check(list, rt); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			e.del(t, a)
			if err := e.cni.Del(list, rt); err != nil {
				t.Errorf("second DEL: %v", err)
			}
			e.assertGone(t, a)
			if r := rulesMentioning(t, e.host, ip); len(r) != 0 {
				t.Errorf("rules for %s left after DEL:\n%s", ip, strings.Join(r, "\n"))
			}
		})

		// A chain with the reference bandwidth plugin after epair. That
		// plugin finds the host side of a pod through the veth peer ifindex,
		// which a TAP pair does not have: its CHECK, and its ADD when a rate
		// is asked for, fail whatever epair does ("container interface eth0
		// has no veth peer"). That is why conf/40 and the agent's conflist
		// leave it out and declare the bandwidth capability on epair, which
		// shapes by itself. ADD without a rate and DEL still work.
		t.Run("reference bandwidth plugin", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pl, false)
			list := e.list(t, netw{name: "chainbw", chain: []map[string]any{portmap, bandwidth}})
			p := e.pod(t)
			rt := harness.RuntimeConf(newID(t), p, "eth0")
			rt.CapabilityArgs = map[string]any{"portMappings": portMappings}
			a, err := e.tryAdd(t, list, rt, p)
			if err != nil {
				t.Fatalf("ADD without a rate: %v", err)
			}
			checkAttachment(t, e, a, "routed", 1500)
			if err := e.cni.Check(list, rt); err == nil || !strings.Contains(err.Error(), "veth peer") {
				t.Errorf("CHECK: %v, want the bandwidth plugin's veth peer error", err)
			}
			e.del(t, a)
			e.assertGone(t, a)

			rt = harness.RuntimeConf(newID(t), p, "eth0")
			rt.CapabilityArgs = map[string]any{"bandwidth": shapedEgress}
			if _, err := e.tryAdd(t, list, rt, p); err == nil || !strings.Contains(err.Error(), "veth peer") {
				t.Errorf("ADD with a rate: %v, want the bandwidth plugin's veth peer error", err)
			}
			// A runtime DELs after a failed ADD.
			if err := e.cni.Del(list, rt); err != nil {
				t.Errorf("DEL after the failed ADD: %v", err)
			}
			e.assertNothingLeft(t, list.Name, p)
		})

		// The conf/40 chain: epair declares the bandwidth capability and
		// shapes; portmap, tuning and firewall follow.
		t.Run("bandwidth capability on epair", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pl, false)
			caps := map[string]any{"capabilities": map[string]any{"mac": true, "bandwidth": true}}
			list := e.list(t, netw{name: "chainshape", epair: caps, chain: []map[string]any{portmap, tuning, firewall}})
			p := e.pod(t)
			rt := harness.RuntimeConf(newID(t), p, "eth0")
			rt.CapabilityArgs = map[string]any{"portMappings": portMappings, "bandwidth": shapedEgress}
			a, err := e.tryAdd(t, list, rt, p)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			checkAttachment(t, e, a, "routed", 1500)
			want := api.Bandwidth{EgressRate: 8_000_000, EgressBurst: 80_000}
			if bw := e.pairOf(t, a).Bandwidth; bw == nil || *bw != want {
				t.Errorf("pair shaped %+v, want %+v", bw, want)
			}
			if err := e.cni.Check(list, rt); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			rt.CapabilityArgs["bandwidth"] = map[string]any{"egressRate": 1_000_000, "egressBurst": 80_000}
			if code, _ := harness.ErrorCode(e.cni.Check(list, rt)); code != 105 {
				t.Errorf("CHECK with another rate: code %d, want 105", code)
			}
			e.del(t, a)
			e.assertGone(t, a)
		})
	})
}

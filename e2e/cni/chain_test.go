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
)

var (
	portmap   = map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}}
	bandwidth = map[string]any{"type": "bandwidth", "capabilities": map[string]any{"bandwidth": true}}
	tuning    = map[string]any{"type": "tuning", "sysctl": map[string]any{"net.core.somaxconn": "512"}}
	firewall  = map[string]any{"type": "firewall", "backend": "iptables"}
)

const hostPort, podPort = 18080, 8080

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

		// The conf/40 chain: with bandwidth in it. The reference bandwidth
		// plugin finds the host side of a pod through the veth peer ifindex, which
		// a TAP pair does not have: so its CHECK, and its ADD when a rate is asked
		// for, fail whatever epair does. ADD without a rate and DEL must work.
		t.Run("portmap bandwidth tuning firewall", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pl, false)
			list := e.list(t, netw{name: "chainbw", chain: []map[string]any{portmap, bandwidth, tuning, firewall}})
			p := e.pod(t)
			rt := harness.RuntimeConf(newID(t), p, "eth0")
			rt.CapabilityArgs = map[string]any{"portMappings": portMappings}
			a, err := e.tryAdd(t, list, rt, p)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			checkAttachment(t, e, a, "routed", 1500)
			serveOnce(t, p, "hi")
			if got, err := dialFromHost(t, e.host, fmt.Sprintf("%s:%d", gw4, hostPort)); err != nil || got != "hi" {
				t.Errorf("host port %d did not reach the pod: %q %v", hostPort, got, err)
			}
			if err := e.cni.Check(list, rt); err != nil {
				if !strings.Contains(err.Error(), "veth peer") {
					t.Errorf("CHECK: %v", err)
				} else {
					t.Logf("CHECK fails in the reference bandwidth plugin (it needs a veth): %v", err)
				}
			}
			e.del(t, a)
			if err := e.cni.Del(list, rt); err != nil {
				t.Errorf("second DEL: %v", err)
			}
			e.assertGone(t, a)
			e.assertNothingLeft(t, list.Name, p)

			rt = harness.RuntimeConf(newID(t), p, "eth0")
			rt.CapabilityArgs = map[string]any{
				"portMappings": portMappings,
				"bandwidth":    map[string]any{"ingressRate": 8_000_000, "ingressBurst": 80_000, "egressRate": 8_000_000, "egressBurst": 80_000},
			}
			a, err = e.tryAdd(t, list, rt, p)
			if err == nil {
				t.Logf("ADD with a bandwidth limit succeeded: %+v", a.res.Interfaces)
				e.del(t, a)
			} else {
				if !strings.Contains(err.Error(), "bandwidth") {
					t.Errorf("ADD with a bandwidth limit failed outside the bandwidth plugin: %v", err)
				}
				t.Logf("ADD with a bandwidth limit: %v", err)
				// A runtime DELs after a failed ADD.
				if err := e.cni.Del(list, rt); err != nil {
					t.Errorf("DEL after the failed ADD: %v", err)
				}
			}
			e.assertNothingLeft(t, list.Name, p)
		})
	})
}

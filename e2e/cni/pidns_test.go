package cni_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/epair-cni/epair/e2e/harness"
)

// TestDaemonInOwnPidNS: a daemon in a pid namespace of its own (a
// DaemonSet pod without hostPID) cannot open /proc/<plugin pid>. In the
// runtime's network namespace (a hostNetwork pod) it needs not: ADD works.
// In another network namespace too it cannot reach the runtime's, and ADD
// fails saying so, leaving nothing.
func TestDaemonInOwnPidNS(t *testing.T) {
	for _, apart := range []bool{false, true} {
		name := "same-netns"
		if apart {
			name = "other-netns"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			harness.RequireRoot(t)
			e := &env{dataDir: t.TempDir()}
			e.host = e.newNS(t)
			e.daemonNS = e.host
			if apart {
				e.daemonNS = e.newNS(t)
			}
			e.d = harness.StartDaemonInPidNS(t, e.daemonNS)
			e.cni = harness.NewCNI(t, e.host)
			list := e.list(t, netw{name: "pidns"})
			p := e.pod(t)
			a, err := e.tryAdd(t, list, harness.RuntimeConf(newID(t), p, "eth0"), p)
			if !apart {
				if err != nil {
					t.Fatalf("ADD with the daemon in its own pid namespace: %v", err)
				}
				checkAttachment(t, e, a, "routed", 1500)
				ping(t, e.host, a.ip(t, 4).Address.IP.String())
				e.del(t, a)
				e.assertGone(t, a)
				return
			}
			if err == nil {
				t.Fatalf("ADD succeeded with a daemon that cannot see the runtime's namespace: %+v", a.res)
			}
			code, _ := harness.ErrorCode(err)
			if code != 100 || !strings.Contains(err.Error(), "hostPID") {
				t.Errorf("ADD: %v (code %d), want code 100 saying how to run the daemon", err, code)
			}
			t.Logf("INPUT daemon in other netns and pid ns -> code %d: %v; left: none", code, err)
			e.assertNothingLeft(t, list.Name, p)
		})
	}
}

// TestRestartFindsHostSide: after kill -9 and a restart the daemon finds
// each b end again where the runtime has it (for a runtime apart from the
// daemon: through the namespace it pinned), traffic and CHECK work, DEL
// removes everything, and no pin is left.
func TestRestartFindsHostSide(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		list := e.list(t, netw{name: "restart"})
		a := e.add(t, list, e.pod(t))
		ip := a.ip(t, 4).Address.IP.String()
		ping(t, e.host, ip)
		e.d.Kill()
		e.d.Start()
		ping(t, e.host, ip)
		if err := e.cni.Check(list, a.rt); err != nil {
			t.Errorf("CHECK after the restart: %v", err)
		}
		e.del(t, a)
		e.assertGone(t, a)
		pins, _ := filepath.Glob(filepath.Join(filepath.Dir(e.d.Socket), "netns", "*"))
		if len(pins) != 0 {
			t.Errorf("namespace pins left after the last DEL: %v", pins)
		}
	})
}

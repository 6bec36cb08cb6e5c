package cni_test

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/epair-cni/epair/e2e/harness"
)

// TestDelKeepsLiveAddress shows that DEL never frees an address a pod may
// still hold: with the daemon down, DEL fails with code 11 (try again) and
// leaves the IPAM reservation and the pod's address alone, so no other pod
// can be given that address while the first still has it. Once the daemon
// is back, DEL works, and only then does the address go to another pod.
func TestDelKeepsLiveAddress(t *testing.T) {
	eachPlacement(t, func(t *testing.T, pl placement) {
		e := newEnv(t, pl, false)
		const name, only = "delnet", "10.22.0.10"
		list := e.oneAddressList(t, name, only)
		pa, pb := e.pod(t), e.pod(t)
		a := e.add(t, list, pa)
		if got := a.ip(t, 4).Address.IP.String(); got != only {
			t.Fatalf("pod A got %s, want the range's one address %s", got, only)
		}
		// Runs before the cleanup DEL of A (cleanups run last first): the
		// daemon is up again for it, whatever failed.
		down := false
		t.Cleanup(func() {
			if down {
				e.d.Start()
			}
		})
		// held checks that pod A still has its address and host-local its
		// reservation, and that nothing of pod B is there; it says so, for
		// the INPUT line.
		held := func(when string) string {
			t.Helper()
			ok := true
			if r := e.reservations(t, name); len(r) != 1 || r[0] != only {
				t.Errorf("%s: host-local holds %v, want just %s (pod A's, which A still has)", when, r, only)
				ok = false
			}
			if cidr, _ := addrCIDR(t, pa, "eth0", only); cidr == "" {
				t.Errorf("%s: pod A's eth0 lost %s:\n%s", when, only, harness.MustRun(t, pa, "ip", "addr"))
				ok = false
			}
			if out := harness.MustRun(t, pb, "ip", "-o", "link"); len(strings.Split(strings.TrimSpace(out), "\n")) != 1 {
				t.Errorf("%s: pod B has more than lo:\n%s", when, out)
				ok = false
			}
			if ok {
				return "A's address and reservation, nothing of B"
			}
			return "WRONG (see the failures above)"
		}

		e.d.Kill()
		down = true
		err := e.cni.Del(a.list, a.rt)
		if err == nil {
			t.Fatalf("DEL of A with the daemon down succeeded")
		}
		wantCNIError(t, "DEL of A with the daemon down", err, types.ErrTryAgainLater)
		code, msg := cniCodeMsg(err)
		left := held("after the failed DEL of A")
		t.Logf("INPUT DEL of a live pod A with the daemon down -> code %s: %s; left: %s", code, msg, left)

		b, err := e.tryAdd(t, list, harness.RuntimeConf(newID(t), pb, "eth0"), pb)
		if err == nil {
			t.Fatalf("ADD of B with the daemon down succeeded: %+v", b.res)
		}
		if _, ok := harness.ErrorCode(err); !ok {
			t.Errorf("ADD of B with the daemon down: not a CNI error: %v", err)
		}
		code, msg = cniCodeMsg(err)
		left = held("after the failed ADD of B")
		t.Logf("INPUT ADD of B (daemon down, A's DEL failed) -> code %s: %s; left: %s", code, msg, left)

		e.d.Start()
		down = false
		b, err = e.tryAdd(t, list, harness.RuntimeConf(newID(t), pb, "eth0"), pb)
		if err == nil {
			t.Fatalf("ADD of B while A holds the one address succeeded: %+v", b.res)
		}
		wantCNIError(t, "ADD of B while A holds the one address", err, 101, "no IP addresses available")
		code, msg = cniCodeMsg(err)
		left = held("after ADD of B was refused")
		if ps := e.pairs(t); len(ps) != 1 || e.pairOf(t, a) == nil {
			t.Errorf("daemon pairs %+v, want only A's", ps)
			left = "WRONG (see the failures above)"
		}
		ping(t, e.host, only)
		t.Logf("INPUT ADD of B (daemon up, A not yet deleted) -> code %s: %s; left: %s", code, msg, left)

		e.del(t, a)
		e.assertGone(t, a)
		t.Logf("INPUT DEL of A (daemon up) -> code 0: ok; left: none")

		b = e.add(t, list, pb)
		if got := b.ip(t, 4).Address.IP.String(); got != only {
			t.Errorf("pod B got %s, want %s (A's, now free)", got, only)
		}
		checkAttachment(t, e, b, "routed", 1500)
		ping(t, e.host, only)
		if ps := e.pairs(t); len(ps) != 1 || e.pairOf(t, b) == nil {
			t.Errorf("daemon pairs %+v, want only B's", ps)
		}
		t.Logf("INPUT ADD of B after A's DEL -> code 0: ok, B has %s; left: n/a (B attached)", only)
	})
}

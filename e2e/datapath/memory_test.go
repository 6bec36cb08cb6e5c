package datapath_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
)

// rssBound is the documented bound on the daemon's resident memory while
// every queue is flooded with the default byte bounds: 64 MiB of queued
// buffers (--max-queued-bytes), the Go heap's headroom over them, and the
// daemon itself.
const rssBound = 192 << 20

// vmKB reads a "VmXXX:  N kB" line of /proc/PID/status, in bytes.
func vmKB(t *testing.T, pid int, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key+":" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}

// flood sends UDP datagrams of size bytes from n to dst until stop is
// closed.
func flood(t *testing.T, n ns.NetNS, dst string, size int, stop <-chan struct{}, wg *sync.WaitGroup) {
	t.Helper()
	var c net.Conn
	if err := n.Do(func(ns.NetNS) (err error) {
		c, err = net.Dial("udp4", dst+":9")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer c.Close()
		payload := make([]byte, size)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := 0; i < 256; i++ {
				c.Write(payload) // ECONNREFUSED from ICMP is fine: keep sending
			}
			// About 25k frames/s a sender: together faster than the
			// one worker writes, without taking every CPU from it.
			time.Sleep(10 * time.Millisecond)
		}
	}()
}

// TestFloodIntoStalledQueuesIsBoundedInBytes: pairs whose queues cannot
// drain as fast as they are fed (the deferred policy's one worker writes
// more slowly than twelve readers read), flooded with 64- and 1400-byte
// frames, keep the daemon's memory under rssBound — every queued frame held
// a 64 KiB buffer before, so one full queue of 4096 could pin 256 MiB;
// measured here 252 MiB before, 95 MiB after — and a quiet pair beside them
// keeps forwarding (slowly: the worker serves the full queues too).
func TestFloodIntoStalledQueuesIsBoundedInBytes(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.StartDaemon(t, "--dispatch", "deferred")
	addPair := func(net int) (ns.NetNS, ns.NetNS, api.Pair) {
		na, nb := harness.NewNS(t), harness.NewNS(t)
		out, err := d.Epair("pair", "add", "--a-netns", na.Path(), "--b-netns", nb.Path(), "--a-name", "eth0")
		if err != nil {
			t.Fatalf("pair add: %v\n%s", err, out)
		}
		p := &api.Pair{}
		if err := json.Unmarshal([]byte(out), p); err != nil {
			t.Fatalf("pair add printed %q: %v", out, err)
		}
		harness.MustRun(t, na, "ip", "addr", "add", fmt.Sprintf("10.251.%d.1/24", net), "dev", "eth0")
		harness.MustRun(t, nb, "ip", "addr", "add", fmt.Sprintf("10.251.%d.2/24", net), "dev", p.B.Name)
		// The receiver's neighbour entry is fixed, so no ARP is needed
		// through queues that are full.
		harness.MustRun(t, na, "ip", "neigh", "replace", fmt.Sprintf("10.251.%d.2", net), "lladdr", p.B.MAC, "dev", "eth0", "nud", "permanent")
		return na, nb, *p
	}
	qa, _, _ := addPair(0)
	ping(t, qa, "10.251.0.2")
	const flooded = 12
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var pairs []api.Pair
	for i := 1; i <= flooded; i++ {
		na, _, p := addPair(i)
		pairs = append(pairs, p)
		size := 64
		if i%2 == 0 {
			size = 1400 // a 2 KiB buffer each: these fill the byte bounds
		}
		flood(t, na, fmt.Sprintf("10.251.%d.2", i), size, stop, &wg)
	}
	pid := d.Pid()
	deadline := time.Now().Add(4 * time.Second)
	var peak int64
	for time.Now().Before(deadline) {
		if rss := vmKB(t, pid, "VmRSS"); rss > peak {
			peak = rss
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The quiet pair still forwards under the flood: at least one of five
	// answers comes back.
	pingOut, pingErr := harness.Run(t, qa, "ping", "-c", "5", "-i", "0.2", "-W", "5", "10.251.0.2")
	close(stop)
	wg.Wait()
	hwm := vmKB(t, pid, "VmHWM")
	var drops uint64
	for _, p := range pairs {
		st, err := d.Client.Stats(context.Background(), p.B.Name)
		if err != nil {
			t.Fatal(err)
		}
		drops += st.A.OQDrops
	}
	t.Logf("%d pairs flooded with 64- and 1400-byte UDP for 4 s: daemon RSS peak %d MiB (VmHWM %d MiB), %d frames dropped at full queues; bound %d MiB",
		flooded, peak>>20, hwm>>20, drops, rssBound>>20)
	if drops == 0 {
		t.Fatalf("no queue filled up: the flood did not stall any queue, so the bound was not tested")
	}
	if pingErr != nil {
		t.Errorf("the quiet pair did not forward during the flood: %v\n%s", pingErr, pingOut)
	}
	if hwm > rssBound {
		t.Errorf("daemon RSS reached %d MiB under the flood, bound %d MiB", hwm>>20, rssBound>>20)
	}
}

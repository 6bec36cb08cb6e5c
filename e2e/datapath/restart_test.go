package datapath_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/state"
	"golang.org/x/sys/unix"
)

// restartPairs is how many pairs TestRestartForwardsEveryPairSoon makes
// (EPAIR_RESTART_PAIRS): about 6 s of pair adds on 2 cores at 200.
func restartPairs(t *testing.T) int {
	if s := os.Getenv("EPAIR_RESTART_PAIRS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			t.Fatalf("EPAIR_RESTART_PAIRS=%q: want a number of at least 2", s)
		}
		return n
	}
	return 200
}

// TestRestartForwardsEveryPairSoon: after kill -9, with 200 pairs and one
// more whose namespace file cannot even be opened (a FIFO stands for a
// namespace on a hung filesystem: open blocks), the new daemon answers its
// API, and traffic is back on the first pair and on the last one it
// re-attaches, within 3 s of its start; the stuck pair is reported as being
// re-attached, then, once its open fails, kept with its problem, and can be
// deleted. A restore that re-attaches one pair after the other before the
// API serves never answers here.
func TestRestartForwardsEveryPairSoon(t *testing.T) {
	harness.RequireRoot(t)
	n := restartPairs(t)
	host, pods := harness.NewNS(t), harness.NewNS(t)
	d := harness.StartDaemonIn(t, host)
	t0 := time.Now()
	makePairs(t, d, pods, n)
	t.Logf("%d pairs made in %v", n, time.Since(t0).Round(time.Millisecond))
	first, last := probe{unit: 0}, probe{unit: n - 1}
	first.address(t, host, pods)
	last.address(t, host, pods)
	first.ping(t, pods, time.Now().Add(5*time.Second))

	d.Kill()
	hung := n
	fifo := addHungPair(t, d, hung)
	start := time.Now()
	d.Start() // returns once the API answers
	t.Logf("API answers %v after the start", time.Since(start).Round(time.Millisecond))
	deadline := start.Add(3 * time.Second)
	for _, p := range []probe{first, last} {
		if !p.ping(t, pods, deadline) {
			t.Fatalf("no traffic on unit %d within 3 s of the restart", p.unit)
		}
		t.Logf("traffic back on unit %d %v after the start", p.unit, time.Since(start).Round(time.Millisecond))
	}

	p, err := d.Client.GetPair(context.Background(), strconv.Itoa(hung))
	if err != nil || p.Forwarding || !strings.Contains(p.Problem, "being re-attached") {
		t.Fatalf("the stuck pair: %+v %v, want not forwarding, being re-attached", p, err)
	}
	releaseFIFO(t, fifo)
	waitProblem(t, d, hung, "not a network namespace")
	if out, err := d.Epair("pair", "del", strconv.Itoa(hung)); err != nil {
		t.Fatalf("pair del of the stuck pair: %v\n%s", err, out)
	}
	ps, err := d.Client.ListPairs(context.Background())
	if err != nil || len(ps) != n {
		t.Fatalf("after the restart: %d pairs (%v), want %d", len(ps), err, n)
	}
	for _, p := range ps {
		if !p.Forwarding {
			t.Errorf("unit %d not forwarding after the restart: %s", p.Unit, p.Problem)
		}
	}
}

// makePairs makes units 0..n-1, a ends p<unit> in pods, b ends in the
// daemon's namespace, a few at once as a node's pods come up.
func makePairs(t *testing.T, d *harness.Daemon, pods ns.NetNS, n int) {
	t.Helper()
	units := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range units {
				req := &api.CreateRequest{Unit: &u, ANetns: pods.Path(), AName: fmt.Sprintf("p%d", u)}
				if _, err := d.Client.CreatePair(context.Background(), req); err != nil {
					errs <- fmt.Errorf("unit %d: %w", u, err)
				}
			}
		}()
	}
	for u := range n {
		units <- u
	}
	close(units)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// probe is a pair with addresses: 10.(230+unit/256).(unit%256).1 on its a
// end, .2 on its b end, with static neighbours so that no ARP runs while
// it is timed.
type probe struct{ unit int }

func (p probe) net() string { return fmt.Sprintf("10.%d.%d", 230+p.unit/256, p.unit%256) }

func (p probe) address(t *testing.T, host, pods ns.NetNS) {
	t.Helper()
	a, b := fmt.Sprintf("p%d", p.unit), fmt.Sprintf("epair%db", p.unit)
	harness.MustRun(t, pods, "ip", "addr", "add", p.net()+".1/24", "dev", a)
	harness.MustRun(t, host, "ip", "addr", "add", p.net()+".2/24", "dev", b)
	harness.MustRun(t, pods, "ip", "neigh", "replace", p.net()+".2", "lladdr", macOf(t, host, b), "dev", a, "nud", "permanent")
	harness.MustRun(t, host, "ip", "neigh", "replace", p.net()+".1", "lladdr", macOf(t, pods, a), "dev", b, "nud", "permanent")
}

// ping pings the b end from the a end until it answers or the deadline
// passes, and reports whether it answered.
func (p probe) ping(t *testing.T, pods ns.NetNS, deadline time.Time) bool {
	t.Helper()
	for time.Now().Before(deadline) {
		if _, err := harness.Run(t, pods, "ping", "-c", "1", "-W", "0.05", p.net()+".2"); err == nil {
			return true
		}
	}
	return false
}

// addHungPair writes into the stopped daemon's state a ready pair whose
// namespaces are a FIFO, and returns the FIFO.
func addHungPair(t *testing.T, d *harness.Daemon, unit int) string {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "hung-netns")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseFIFO(t, fifo) }) // before the daemon stops
	path := filepath.Join(d.StateDir, "state.json")
	st := readState(t, path)
	st.Pairs[unit] = &state.Pair{Unit: unit, Phase: state.Ready, MTU: 1500, Queues: 1,
		A: state.End{Name: "hung0", Index: 2, MAC: "02:00:00:00:01:0a", Netns: fifo},
		B: state.End{Name: fmt.Sprintf("epair%db", unit), Index: 2, MAC: "02:00:00:00:01:0b", Netns: fifo}}
	writeState(t, path, st)
	return fifo
}

// releaseFIFO lets an open of the FIFO blocked for reading return, and puts
// a plain file in its place, which every later look fails on at once.
func releaseFIFO(t *testing.T, fifo string) {
	t.Helper()
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	// No reader: ENXIO, and nothing to release.
	if fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
		unix.Close(fd)
	}
	os.Remove(fifo)
	if err := os.WriteFile(fifo, nil, 0o600); err != nil {
		t.Error(err)
	}
}

// waitProblem polls the pair until its problem says want.
func waitProblem(t *testing.T, d *harness.Daemon, unit int, want string) {
	t.Helper()
	var p *api.Pair
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if p, err = d.Client.GetPair(context.Background(), strconv.Itoa(unit)); err == nil && strings.Contains(p.Problem, want) {
			return
		}
	}
	t.Fatalf("unit %d: %+v %v, want a problem saying %q", unit, p, err, want)
}

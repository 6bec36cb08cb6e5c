// Package harness runs the real epair binary and network namespaces for the
// privileged suites. Everything it creates is removed by t.Cleanup.
package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/epair-cni/epair/pkg/client"
)

// RequireRoot skips the test unless it can create namespaces and TAPs.
func RequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces and TAP devices (run `sudo make test`)")
	}
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("privileged test: /dev/net/tun unusable: %v", err)
	}
	f.Close()
}

// RepoRoot finds the module root from the test's working directory.
func RepoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of bin/epair built from this tree (once per test
// binary), or $EPAIR_BIN when set.
func Binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("EPAIR_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "epair-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "epair")
		cmd := exec.Command("go", "build", "-o", binPath, "./plugins/epair")
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// NewNS makes a network namespace with IPv6 off (so no router solicitations
// muddle the counters) and loopback up; it is deleted at cleanup.
func NewNS(t *testing.T) ns.NetNS {
	t.Helper()
	return newNS(t, false)
}

func newNS(t *testing.T, ipv6 bool) ns.NetNS {
	t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { RemoveNS(t, n) })
	off := "1"
	if ipv6 {
		off = "0"
	}
	err = n.Do(func(ns.NetNS) error {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if _, err := sysctl.Sysctl(k, off); err != nil {
				return err
			}
		}
		return exec.Command("ip", "link", "set", "lo", "up").Run()
	})
	if err != nil {
		t.Fatalf("set up netns: %v", err)
	}
	return n
}

// Run runs a command inside the namespace and returns its combined output.
func Run(t *testing.T, n ns.NetNS, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"--net=" + n.Path(), "--"}, args...)
	out, err := exec.Command("nsenter", full...).CombinedOutput()
	return string(out), err
}

// MustRun is Run that fails the test on error.
func MustRun(t *testing.T, n ns.NetNS, args ...string) string {
	t.Helper()
	out, err := Run(t, n, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Daemon is an `epair daemon` process.
type Daemon struct {
	Socket, StateDir string
	// Netns is the namespace the daemon runs in (nil: the test's own): it
	// stands for the node's host namespace, where the b ends live.
	Netns  ns.NetNS
	Client *client.Client
	cmd    *exec.Cmd
	log    *os.File
	args   []string
	t      *testing.T
	// pidNS: the daemon runs in a pid namespace of its own, as in a
	// DaemonSet pod without hostPID, and sees no process of the test's.
	pidNS bool
}

// StartDaemon starts a daemon on a private socket and state dir; cleanup
// stops it. Extra args go to `epair daemon`.
func StartDaemon(t *testing.T, args ...string) *Daemon {
	t.Helper()
	return StartDaemonIn(t, nil, args...)
}

// StartDaemonIn starts a daemon inside the namespace host (nil: the test's
// own), so that the b ends, host routes and forwarding settings of a suite
// stay in a namespace the suite made.
func StartDaemonIn(t *testing.T, host ns.NetNS, args ...string) *Daemon {
	t.Helper()
	return startDaemon(t, host, false, args)
}

// StartDaemonInPidNS is StartDaemonIn with the daemon in a pid namespace
// (and a mount namespace with its own /proc) of its own, as in a DaemonSet
// pod without hostPID: the pids the plugin knows mean nothing to it.
func StartDaemonInPidNS(t *testing.T, host ns.NetNS, args ...string) *Daemon {
	t.Helper()
	return startDaemon(t, host, true, args)
}

func startDaemon(t *testing.T, host ns.NetNS, pidNS bool, args []string) *Daemon {
	t.Helper()
	dir := t.TempDir()
	d := &Daemon{Socket: filepath.Join(dir, "epair.sock"), StateDir: filepath.Join(dir, "state"), args: args, t: t, Netns: host, pidNS: pidNS}
	d.Client = client.New(d.Socket)
	var err error
	if d.log, err = os.Create(filepath.Join(dir, "daemon.log")); err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(d.log.Name())
			t.Logf("daemon log:\n%s", b)
		}
	})
	return d
}

// Start (re)starts the daemon process and waits until it answers.
func (d *Daemon) Start() {
	t := d.t
	t.Helper()
	args := append([]string{"daemon", "--socket", d.Socket, "--state-dir", d.StateDir, "--log-level", "debug"}, d.args...)
	args = append([]string{Binary(t)}, args...)
	if d.Netns != nil {
		args = append([]string{"nsenter", "--net=" + d.Netns.Path(), "--"}, args...)
	}
	if d.pidNS {
		// New mounts (the pods' netns) reach it as with HostToContainer
		// propagation; unshare ignores SIGTERM, and when it dies the
		// daemon gets SIGTERM.
		args = append([]string{"unshare", "--pid", "--fork", "--mount-proc", "--propagation", "slave", "--kill-child=TERM"}, args...)
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.Client.Status(context.Background()); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("daemon did not answer on %s", d.Socket)
}

// Pid is the daemon's process id (of unshare, for a daemon in its own pid
// namespace), or 0 when it is not running.
func (d *Daemon) Pid() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Kill sends SIGKILL, as a crash would.
func (d *Daemon) Kill() {
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
		d.cmd = nil
	}
}

// Stop deletes every pair the daemon still has, then stops it with SIGTERM.
func (d *Daemon) Stop() {
	if d.cmd == nil {
		return
	}
	ctx := context.Background()
	if ps, err := d.Client.ListPairs(ctx); err == nil {
		for _, p := range ps {
			d.Client.DeletePair(ctx, fmt.Sprint(p.Unit))
		}
	}
	sig := syscall.SIGTERM
	if d.pidNS {
		sig = syscall.SIGKILL // to unshare: the daemon gets SIGTERM
	}
	d.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
}

// Epair runs the CLI against this daemon.
func (d *Daemon) Epair(args ...string) (string, error) {
	full := append(args, "--socket", d.Socket)
	out, err := exec.Command(Binary(d.t), full...).CombinedOutput()
	return string(out), err
}

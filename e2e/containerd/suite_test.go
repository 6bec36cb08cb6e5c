package containerd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
	"golang.org/x/sys/unix"
)

// criTimeout bounds one crictl, ctr or epair call, as the old script's
// `timeout 120` did: a hung containerd fails the check instead of the run.
const criTimeout = 120 * time.Second

// suite is one bring-up of e2e/containerd/up.sh: its directory, what up.sh
// wrote into its env file, and the pods the checks made.
type suite struct {
	dir string
	env map[string]string
	// pods, containers and ips by pod name (epair-a, ...).
	pods, ctrs, ips map[string]string
	// unshaped is pod a's iperf3 rate to pod b, in bit/s.
	unshaped float64
}

// up runs up.sh in a fresh directory and registers down.sh (and the
// reaping of what up.sh started) with t.Cleanup first, so that a failed
// bring-up or check still tears everything down.
func up(t *testing.T) *suite {
	t.Helper()
	// up.sh starts the daemon and containerd in the background and exits;
	// as a subreaper this process inherits them (and containerd's shims),
	// so the teardown can reap them: PID 1 here may not.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	dir, err := os.MkdirTemp("/tmp", "epair-ctrd.")
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{dir: dir, env: map[string]string{}, pods: map[string]string{}, ctrs: map[string]string{}, ips: map[string]string{}}
	t.Cleanup(func() { s.down(t) })
	script := filepath.Join(harness.RepoRoot(t), "e2e", "containerd", "up.sh")
	if err := runScript(script, dir); err != nil {
		t.Fatalf("bring-up: %v", err)
	}
	if s.env, err = readEnv(filepath.Join(dir, "env")); err != nil {
		t.Fatal(err)
	}
	return s
}

// runScript runs a bring-up or teardown script with its output on the
// test's, so that a slow apt-get or crictl build shows as it happens.
func runScript(script string, args ...string) error {
	cmd := exec.Command(script, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", script, err)
	}
	return nil
}

// down shows the logs of a failed run, runs down.sh and reaps what it
// stopped.
func (s *suite) down(t *testing.T) {
	if t.Failed() {
		for _, f := range []string{"containerd.log", "daemon.log"} {
			t.Logf("----- %s (last 150 lines) -----\n%s", f, tail(filepath.Join(s.dir, f), 150))
		}
	}
	// down.sh waits (kill -0) for each to exit, which a zombie never does.
	env, _ := readEnv(filepath.Join(s.dir, "env"))
	for _, k := range []string{"CTRD_PID", "DAEMON_PID"} {
		if pid, err := strconv.Atoi(env[k]); err == nil {
			go unix.Wait4(pid, nil, 0, nil)
		}
	}
	if err := runScript(filepath.Join(harness.RepoRoot(t), "e2e", "containerd", "down.sh"), s.dir); err != nil {
		t.Errorf("teardown: %v", err)
	}
	// The shims down.sh killed, and any other orphan inherited meanwhile;
	// no exec.Cmd of the test runs now, so none of its children is taken.
	for {
		pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			break
		}
	}
}

// readEnv reads up.sh's env file: KEY='value' lines.
func readEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("env file of up.sh: %w", err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = strings.Trim(v, "'")
		}
	}
	return env, nil
}

// tail is the last n lines of a file (or why there are none).
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// path is a file of the run's directory.
func (s *suite) path(name string) string { return filepath.Join(s.dir, name) }

// run runs a command with the suite's per-call bound and returns its
// stdout; an error carries the command and its stderr.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), criTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out), nil
}

// criArgs is a crictl command line on this run's containerd, inside the
// node's namespace (crictl exec's streaming connects there).
func (s *suite) criArgs(args ...string) []string {
	return append([]string{"--net=" + s.env["NSPATH"], s.env["CRICTL"], "--config", s.path("crictl.yaml")}, args...)
}

// cri runs crictl.
func (s *suite) cri(args ...string) (string, error) { return run("nsenter", s.criArgs(args...)...) }

// ctr runs ctr in containerd's CRI namespace.
func (s *suite) ctr(args ...string) (string, error) {
	return run("ctr", append([]string{"--address", s.path("containerd.sock"), "-n", "k8s.io"}, args...)...)
}

// ip runs ip(8) in the node's namespace.
func (s *suite) ip(args ...string) (string, error) {
	return run("ip", append([]string{"-n", s.env["NS"]}, args...)...)
}

// pairs is the daemon's `epair pair list`.
func (s *suite) pairs() ([]api.Pair, error) {
	out, err := run(s.env["EPAIR"], "pair", "list", "--socket", s.path("epair.sock"))
	if err != nil {
		return nil, err
	}
	var ps []api.Pair
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return nil, fmt.Errorf("pair list: %w\n%s", err, out)
	}
	return ps, nil
}

// appendLine adds a line to one of the lists down.sh reads (pod-ids,
// netns-paths).
func (s *suite) appendLine(name, line string) error {
	f, err := os.OpenFile(s.path(name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeJSON writes v as a file of the run's directory and returns its path.
func (s *suite) writeJSON(name string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return s.path(name), os.WriteFile(s.path(name), b, 0o600)
}

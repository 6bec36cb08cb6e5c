package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// ReferencePlugins are the CNI reference plugins hack/cni-plugins.sh installs.
var ReferencePlugins = []string{"host-local", "static", "dhcp", "portmap", "bandwidth", "tuning", "firewall", "ptp", "bridge"}

var (
	refOnce sync.Once
	refDir  string
	refErr  error
)

// referencePluginDir is $EPAIR_CNI_PLUGINS, or bin/cni of this tree filled by
// hack/cni-plugins.sh (once per test binary; quick when already there).
func referencePluginDir(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("EPAIR_CNI_PLUGINS"); p != "" {
		return p
	}
	refOnce.Do(func() {
		root := RepoRoot(t)
		refDir = filepath.Join(root, "bin", "cni")
		cmd := exec.Command(filepath.Join(root, "hack", "cni-plugins.sh"), refDir)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			refErr = fmt.Errorf("hack/cni-plugins.sh: %v\n%s", err, out)
		}
	})
	if refErr != nil {
		t.Fatal(refErr)
	}
	return refDir
}

// PluginDir returns a fresh directory (removed at cleanup) holding the
// reference plugins and `epair` (this tree's binary), to be CNI_PATH.
func PluginDir(t *testing.T) string {
	t.Helper()
	src := referencePluginDir(t)
	dir := t.TempDir()
	for _, p := range ReferencePlugins {
		from := filepath.Join(src, p)
		if _, err := os.Stat(from); err != nil {
			t.Fatalf("reference plugin %s missing (run `make cni-plugins`): %v", p, err)
		}
		if err := os.Symlink(from, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(Binary(t), filepath.Join(dir, "epair")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// NewNSWithIPv6 is NewNS with IPv6 left on (for dual-stack suites).
func NewNSWithIPv6(t *testing.T) ns.NetNS {
	t.Helper()
	return newNS(t, true)
}

// DeleteNS removes a namespace made by NewNS before the test ends, as a
// runtime does when a pod's sandbox is gone.
func DeleteNS(t *testing.T, n ns.NetNS) {
	t.Helper()
	RemoveNS(t, n)
	if _, err := os.Stat(n.Path()); err == nil {
		t.Fatalf("netns %s still there", n.Path())
	}
}

// RemoveNS closes n and removes its bind mount and file; a namespace already
// removed is no error. Something that opens the file at the same moment
// (`ip netns list` does, for one) makes the unmount fail with EBUSY: it is
// retried for a while, then detached, and the holders are logged.
func RemoveNS(t *testing.T, n ns.NetNS) {
	t.Helper()
	n.Close()
	path := n.Path()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return
	}
	var err error
	first := true
	for deadline := time.Now().Add(2 * time.Second); ; {
		if err = unix.Unmount(path, 0); err != unix.EBUSY || time.Now().After(deadline) {
			break
		}
		if first {
			t.Logf("netns %s busy (held by %s): retrying", path, nsHolders(path))
			first = false
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == unix.EBUSY {
		t.Logf("netns %s busy for 2s (held by %s): detaching it", path, nsHolders(path))
		err = unix.Unmount(path, unix.MNT_DETACH)
	}
	if err != nil && err != unix.EINVAL && err != unix.ENOENT {
		t.Errorf("unmount netns %s: %v", path, err)
		return
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		t.Errorf("remove netns %s: %v", path, err)
	}
}

// nsHolders names the processes with a file open on the mount at path.
func nsHolders(path string) string {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "?"
	}
	id := ""
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == path || "/var"+f[4] == path) {
			id = f[0]
		}
	}
	if id == "" {
		return "?"
	}
	var who []string
	fdinfos, _ := filepath.Glob("/proc/[0-9]*/fdinfo/*")
	for _, fi := range fdinfos {
		b, err := os.ReadFile(fi)
		if err != nil || !strings.Contains(string(b), "mnt_id:\t"+id+"\n") {
			continue
		}
		pid := strings.Split(fi, "/")[2]
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		who = append(who, fmt.Sprintf("%s[%s]", strings.TrimSpace(string(comm)), pid))
	}
	if len(who) == 0 {
		return "no process now"
	}
	return strings.Join(who, ", ")
}

// CNI runs conflists through libcni the way a runtime does, from inside a
// "host" namespace: the thread that execs the plugins is locked into Host, so
// the plugins (and what they set up on the host side) land there.
type CNI struct {
	Host      ns.NetNS
	PluginDir string
	CacheDir  string
	Config    *libcni.CNIConfig
	// Timeout bounds one libcni call (default 60s).
	Timeout time.Duration
}

// NewCNI returns a runner with its own plugin dir and result cache.
func NewCNI(t *testing.T, host ns.NetNS) *CNI {
	t.Helper()
	dir := PluginDir(t)
	return NewCNIWithPlugins(t, host, dir)
}

// NewCNIWithPlugins is NewCNI sharing an existing plugin dir; its result
// cache is new (so a runner made this way knows no earlier attachments).
func NewCNIWithPlugins(t *testing.T, host ns.NetNS, pluginDir string) *CNI {
	t.Helper()
	cache := t.TempDir()
	return &CNI{
		Host:      host,
		PluginDir: pluginDir,
		CacheDir:  cache,
		Config:    libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, cache, nil),
		Timeout:   60 * time.Second,
	}
}

// RuntimeConf is the attachment of container id to netns as ifName.
func RuntimeConf(id string, netns ns.NetNS, ifName string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netns.Path(), IfName: ifName}
}

func (c *CNI) in(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	var inner error
	if err := c.Host.Do(func(ns.NetNS) error {
		inner = fn(ctx)
		return nil
	}); err != nil {
		return fmt.Errorf("enter host netns %s: %w", c.Host.Path(), err)
	}
	return inner
}

// AddRaw runs ADD of the list and returns the result as libcni decoded it
// (in the list's cniVersion).
func (c *CNI) AddRaw(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error) {
	var res types.Result
	err := c.in(func(ctx context.Context) (err error) {
		res, err = c.Config.AddNetworkList(ctx, list, rt)
		return err
	})
	return res, err
}

// Add runs ADD of the list and converts the result to types100.
func (c *CNI) Add(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (*types100.Result, error) {
	res, err := c.AddRaw(list, rt)
	if err != nil {
		return nil, err
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert result %v: %w", res, err)
	}
	return r, nil
}

// Check runs CHECK of the list against the cached result of its ADD.
func (c *CNI) Check(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return c.in(func(ctx context.Context) error { return c.Config.CheckNetworkList(ctx, list, rt) })
}

// Del runs DEL of the list.
func (c *CNI) Del(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return c.in(func(ctx context.Context) error { return c.Config.DelNetworkList(ctx, list, rt) })
}

// GC runs GC of the list with valid the attachments to keep. Note that
// libcni first DELs the attachments in this runner's own cache that are not
// valid; a runner from NewCNIWithPlugins has an empty cache, so only the
// plugins' GC does the work.
func (c *CNI) GC(list *libcni.NetworkConfigList, valid []types.GCAttachment) error {
	return c.in(func(ctx context.Context) error {
		return c.Config.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: valid})
	})
}

// Status runs STATUS of the list.
func (c *CNI) Status(list *libcni.NetworkConfigList) error {
	return c.in(func(ctx context.Context) error { return c.Config.GetStatusNetworkList(ctx, list) })
}

// ErrorCode returns the code of the CNI error inside err.
func ErrorCode(err error) (uint, bool) {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code, true
	}
	return 0, false
}

// Exec runs the plugin binary named plugin from c.PluginDir directly, without
// libcni, inside the host namespace, with the CNI_* variables of env (CNI_PATH
// is added) and stdin. It returns stdout, stderr, and the CNI error the
// plugin printed when it exited non-zero (or a plain error when that was not
// a CNI error).
func (c *CNI) Exec(plugin string, env map[string]string, stdin []byte) (stdout, stderr string, err error) {
	var out, errb strings.Builder
	runErr := c.in(func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, filepath.Join(c.PluginDir, plugin))
		cmd.Env = append(os.Environ(), "CNI_PATH="+c.PluginDir)
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Stdin = strings.NewReader(string(stdin))
		cmd.Stdout, cmd.Stderr = &out, &errb
		return cmd.Run()
	})
	stdout, stderr = out.String(), errb.String()
	if runErr == nil {
		return stdout, stderr, nil
	}
	var e types.Error
	if json.Unmarshal([]byte(stdout), &e) == nil && e.Code != 0 {
		return stdout, stderr, &e
	}
	return stdout, stderr, fmt.Errorf("%s: %w (stdout %q, stderr %q)", plugin, runErr, stdout, stderr)
}

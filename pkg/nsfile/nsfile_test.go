package nsfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheck: only a network namespace passes; the error says what else
// the path is. Reading one's own /proc/self/ns needs no privilege.
func TestCheck(t *testing.T) {
	if err := Check("/proc/self/ns/net"); err != nil {
		t.Fatalf("own netns: %v", err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{"/proc/self/ns/mnt", "mount namespace"},
		{"/proc/self/ns/pid", "pid namespace"},
		{"/proc/self/ns/user", "user namespace"},
		{"/proc/self/ns/uts", "uts namespace"},
		{"/proc/self/status", "procfs"},
		{plain, "not a namespace"},
	} {
		err := Check(c.path)
		if !errors.Is(err, ErrNotNetns) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%s) = %v, want ErrNotNetns saying %q", c.path, err, c.want)
		}
	}
	if err := Check("/no/such/netns"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: %v, want os.ErrNotExist", err)
	}
}

// TestPin: a pin is the same namespace, pinning twice gives one pin, and
// Unpin removes it (root only: it bind-mounts).
func TestPin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: pinning bind-mounts a namespace file (run as root)")
	}
	dir := t.TempDir()
	want, err := Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Pin("/proc/self/ns/net", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unpin(p) })
	if got, err := Inode(p); err != nil || got != want {
		t.Fatalf("pinned %s: inode %d (%v), want %d", p, got, err, want)
	}
	if again, err := Pin("/proc/thread-self/ns/net", dir); err != nil || again != p {
		t.Errorf("second pin: %s %v, want %s", again, err, p)
	}
	if err := Unpin(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("pin still there after Unpin: %v", err)
	}
	if err := Unpin(p); err != nil {
		t.Errorf("second Unpin: %v", err)
	}
}

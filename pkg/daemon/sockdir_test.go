package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/epair-cni/epair/internal/impostor"
	"github.com/epair-cni/epair/pkg/client"
)

func TestMain(m *testing.M) {
	impostor.ServeIfAsked()
	os.Exit(m.Run())
}

// owner returns the uid, gid and permission bits of path.
func owner(t *testing.T, path string) (uint32, uint32, os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
}

// mustListen runs listen and closes the listener at cleanup.
func mustListen(t *testing.T, socket string) net.Listener {
	t.Helper()
	l, err := listen(socket)
	if err != nil {
		t.Fatalf("listen %s: %v", socket, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestListenClosesOpenDir: a socket dir left 0777 is made 0700 (as any
// user: the daemon's own uid owns it).
func TestListenClosesOpenDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777|os.ModeSticky)
	socket := filepath.Join(dir, "epair.sock")
	mustListen(t, socket)
	if uid, _, mode := owner(t, dir); mode != 0o700 || uid != uint32(os.Geteuid()) {
		t.Fatalf("socket dir uid %d mode %v, want uid %d 0700", uid, mode, os.Geteuid())
	}
	if _, _, mode := owner(t, socket); mode != 0o600 {
		t.Fatalf("socket mode %v, want 0600", mode)
	}
}

// TestListenTakesDirOfOtherUser (root): a socket dir of another user, open
// to all, becomes root's, 0700.
func TestListenTakesDirOfOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to hand a dir to another user and take it back")
	}
	dir := impostor.OpenDir(t)
	if err := os.Chown(dir, impostor.UID, impostor.GID); err != nil {
		t.Fatal(err)
	}
	mustListen(t, filepath.Join(dir, "epair.sock"))
	if uid, gid, mode := owner(t, dir); uid != 0 || gid != 0 || mode != 0o700 {
		t.Fatalf("socket dir %d:%d mode %v, want 0:0 0700", uid, gid, mode)
	}
}

// TestListenRefusesSymlinkOrFile: a socket dir that is a symlink, or not a
// directory, stops the daemon with a reason, and nothing is changed.
func TestListenRefusesSymlinkOrFile(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "elsewhere")
	if err := os.Mkdir(target, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(target, 0o777)
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{link: "is a symlink", file: "not a directory"} {
		l, err := listen(filepath.Join(dir, "epair.sock"))
		if err == nil {
			l.Close()
			t.Fatalf("listen in %s succeeded", dir)
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("listen in %s: %q, want it to say %q", dir, err, want)
		}
	}
	if _, _, mode := owner(t, target); mode != 0o777 {
		t.Fatalf("the symlink's target was changed to %v", mode)
	}
}

// TestListenReplacesImpostor (root): a socket another user put in the open
// dir before the daemon started neither keeps the daemon from starting nor
// stays: the daemon's socket takes its place, and serves root.
func TestListenReplacesImpostor(t *testing.T) {
	dir := impostor.OpenDir(t)
	socket := filepath.Join(dir, "epair.sock")
	impostor.Start(t, socket)
	l := mustListen(t, socket)
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"version":"daemon"}`)
	}))
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if uid, ok := peerUID(c); !ok || uid != 0 {
		t.Fatalf("the socket is served by uid %d (%v), want the daemon's 0", uid, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := client.New(socket).Status(ctx); err != nil || st.Version != "daemon" {
		t.Fatalf("the client, after the daemon took its socket back: %+v %v", st, err)
	}
}

package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epair-cni/epair/internal/impostor"
)

func TestMain(m *testing.M) {
	impostor.ServeIfAsked()
	os.Exit(m.Run())
}

// fakeDaemon serves GET /v1/status on a socket of the test's own uid and
// counts the requests it gets.
func fakeDaemon(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "epair.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		fmt.Fprintln(w, `{"version":"fake","can_create":true}`)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return socket, &n
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestRefusesPeerOfOwnUIDByDefault: a socket served by a user other than
// root is refused before anything is sent, with ErrNotRoot and not
// ErrUnreachable (which the plugin turns into "try again later").
func TestRefusesPeerOfOwnUIDByDefault(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("as root the in-process fake daemon is root; TestRefusesOtherUser checks the refusal with another uid")
	}
	socket, n := fakeDaemon(t)
	_, err := New(socket).Status(ctx(t))
	if !errors.Is(err, ErrNotRoot) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("status from a non-root socket: %v; want ErrNotRoot, not ErrUnreachable", err)
	}
	if want := fmt.Sprintf("uid %d", os.Getuid()); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), socket) {
		t.Fatalf("error %q does not name the socket and %s", err, want)
	}
	if got := n.Load(); got != 0 {
		t.Fatalf("the fake daemon got %d requests; want none", got)
	}
}

// TestAllowOwnUID: with the option, a fake daemon of the test's own uid is
// talked to.
func TestAllowOwnUID(t *testing.T) {
	socket, n := fakeDaemon(t)
	st, err := New(socket, AllowOwnUID()).Status(ctx(t))
	if err != nil || st.Version != "fake" || n.Load() != 1 {
		t.Fatalf("status with AllowOwnUID: %+v %v (requests %d)", st, err, n.Load())
	}
}

// TestNoDaemonIsUnreachable: no listener stays ErrUnreachable.
func TestNoDaemonIsUnreachable(t *testing.T) {
	_, err := New(filepath.Join(t.TempDir(), "none.sock")).Status(ctx(t))
	if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNotRoot) {
		t.Fatalf("status without a daemon: %v; want ErrUnreachable", err)
	}
}

// TestRefusesOtherUser (root): a socket served by a process of another
// uid, put where the daemon's socket should be, gets no byte from the
// client, with or without AllowOwnUID.
func TestRefusesOtherUser(t *testing.T) {
	socket := filepath.Join(impostor.OpenDir(t), "epair.sock")
	im := impostor.Start(t, socket)
	for _, opts := range [][]Option{nil, {AllowOwnUID()}} {
		_, err := New(socket, opts...).Status(ctx(t))
		if !errors.Is(err, ErrNotRoot) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("status from an impostor (options %d): %v; want ErrNotRoot", len(opts), err)
		}
		if want := fmt.Sprintf("served by uid %d", impostor.UID); !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
		if l := im.Next(t, 5*time.Second); l != "conn 0 bytes" {
			t.Fatalf("the impostor says %q; want a connection that carried nothing", l)
		}
	}
}

// AllowOwnUID makes the client trust a socket served by its own uid as well
// as one served by root. Only tests, which run a fake daemon as an
// unprivileged user, need it, so it lives here and not in the client.
func AllowOwnUID() Option { return func(c *Client) { c.allowOwnUID = true } }

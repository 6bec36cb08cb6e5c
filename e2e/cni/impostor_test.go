package cni_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/internal/impostor"
	"github.com/epair-cni/epair/pkg/cni"
)

// TestImpostorSocket: a socket served by a process that is not root (an
// unprivileged user who replaced the daemon's socket) gets nothing from the
// plugin: ADD and DEL fail with code 106, STATUS with 50, each saying why,
// and no request body reaches the impostor; nothing is left.
func TestImpostorSocket(t *testing.T) {
	e := newEnv(t, placements[0], false)
	socket := filepath.Join(impostor.OpenDir(t), "epair.sock")
	im := impostor.Start(t, socket)
	list := e.list(t, netw{name: "imp", epair: map[string]any{"socket": socket}})
	p := e.pod(t)
	rt := harness.RuntimeConf(newID(t), p, "eth0")
	for _, c := range []struct {
		verb string
		run  func() error
		code uint
	}{
		{"ADD", func() error { _, err := e.cni.Add(list, rt); return err }, cni.ErrImpostor},
		{"DEL", func() error { return e.cni.Del(list, rt) }, cni.ErrImpostor},
		{"STATUS", func() error { return e.cni.Status(list) }, types.ErrPluginNotAvailable},
	} {
		err := c.run()
		code, _ := harness.ErrorCode(err)
		if code != c.code || !strings.Contains(err.Error(), "not served by root") {
			t.Errorf("%s against an impostor: %v (code %d), want code %d saying it is not served by root", c.verb, err, code, c.code)
		}
		t.Logf("INPUT %s with a socket served by uid %d -> code %d: %v; left: none", c.verb, impostor.UID, code, err)
		if l := im.Next(t, 5*time.Second); l != "conn 0 bytes" {
			t.Errorf("%s: the impostor says %q, want a connection that carried nothing", c.verb, l)
		}
	}
	e.assertNothingLeft(t, list.Name, p)
}

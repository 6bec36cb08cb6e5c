package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/nsfile"
)

// checkNetns accepts only an absolute, clean path that is a network
// namespace (not a namespace of another kind, not some other file): a path
// from a request is never trusted further than that.
func checkNetns(path string) error {
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("%w: netns %q must be an absolute, clean path", errInvalid, path)
	}
	if err := nsfile.Check(path); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	return nil
}

// hostNetns decides where a new pair's b end goes and returns the path the
// state keeps for it: "" for the daemon's own namespace, the request's path
// when it is a lasting one (/var/run/netns/NAME), or a pin of it when it is
// a process's (/proc/PID/ns/net, which the CNI plugin sends: its own, the
// runtime's namespace). With BNetnsInode set, the namespace must be that
// one; when it is the daemon's own, the path is not even opened, so a
// daemon in a pid namespace of its own (a DaemonSet without hostPID) serves
// a plugin in its network namespace. Called with m.mu held.
func (m *Manager) hostNetns(r *api.CreateRequest) (string, error) {
	if r.BNetns == "" {
		return "", nil
	}
	if r.BNetnsInode != 0 && r.BNetnsInode == m.selfNetns {
		return "", nil
	}
	if err := checkNetns(r.BNetns); err != nil {
		if r.BNetnsInode != 0 {
			return "", callerUnreachable(r, err)
		}
		return "", err
	}
	ino, err := nsfile.Inode(r.BNetns)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errInvalid, err)
	}
	switch {
	case r.BNetnsInode != 0 && ino != r.BNetnsInode:
		return "", callerUnreachable(r, fmt.Errorf("%s is another namespace (inode %d, the caller's is %d)", r.BNetns, ino, r.BNetnsInode))
	case ino == m.selfNetns:
		return "", nil
	case !strings.HasPrefix(r.BNetns, "/proc/"):
		return r.BNetns, nil
	}
	if m.pinDir == "" {
		return "", fmt.Errorf("%w: b_netns %s is a process's namespace and this daemon pins none (no pin dir)", errInvalid, r.BNetns)
	}
	p, err := nsfile.Pin(r.BNetns, m.pinDir)
	if err != nil {
		return "", fmt.Errorf("keep the b end's netns: %w", err)
	}
	return p, nil
}

// callerUnreachable says why the daemon cannot put a b end where the caller
// runs. It is not the request's fault (no 400): the caller names its own
// namespace by its pid, which means nothing in a pid namespace other than
// the caller's.
func callerUnreachable(r *api.CreateRequest, err error) error {
	return fmt.Errorf("the caller runs in a network namespace other than the daemon's, and the daemon cannot open it at %s (%v): run the daemon in the runtime's network namespace, or in its pid namespace (hostPID)", r.BNetns, err)
}

// unpinUnused removes every pin of a namespace that no pair uses any more
// (after a delete, a failed create, or a crash in either). Called with m.mu
// held, or before the manager serves.
func (m *Manager) unpinUnused() {
	if m.pinDir == "" {
		return
	}
	ents, err := os.ReadDir(m.pinDir)
	if err != nil {
		return
	}
	used := map[string]bool{}
	for _, p := range m.st.Pairs {
		used[p.A.Netns], used[p.B.Netns] = true, true
	}
	for _, e := range ents {
		path := filepath.Join(m.pinDir, e.Name())
		if used[path] || !strings.HasPrefix(e.Name(), "net-") {
			continue
		}
		if err := nsfile.Unpin(path); err != nil {
			slog.Warn("unpin netns", "path", path, "err", err)
		}
	}
}

// inNetns runs fn on a thread in the namespace at path ("" is the daemon's
// own), which is where a TAP must be opened to be created there.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return fn() })
}

// Package nsfile checks, identifies and pins network namespace files: the
// paths a runtime passes as CNI_NETNS, a caller passes to the daemon, or
// the daemon keeps in its state.
//
// A path is a network namespace only if it is a file of the nsfs filesystem
// whose type (ioctl NS_GET_NSTYPE) is CLONE_NEWNET. ns.GetNS of the CNI
// plugins accepts any nsfs or procfs file, so /proc/self/ns/mnt or
// /proc/self/status would pass it and fail much later, as an internal error.
package nsfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrNotNetns is wrapped by every error saying that a path exists but is
// not a network namespace.
var ErrNotNetns = errors.New("not a network namespace")

// Check reports whether path is a network namespace, with an error that
// says what the path is instead: missing (wrapping os.ErrNotExist),
// another kind of namespace, or some other file.
func Check(path string) error {
	_, err := Inode(path)
	return err
}

// Inode returns the inode number of the network namespace at path. Every
// namespace has its own inode on the one nsfs of a machine, so two paths
// name the same namespace exactly when their inodes are equal.
func Inode(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("netns %s: %w", path, err)
	}
	defer f.Close()
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return 0, fmt.Errorf("netns %s: statfs: %w", path, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return 0, fmt.Errorf("netns %s is %s: %w", path, fileKind(f, sfs.Type), ErrNotNetns)
	}
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return 0, fmt.Errorf("netns %s: NS_GET_NSTYPE: %w", path, err)
	}
	if t != unix.CLONE_NEWNET {
		return 0, fmt.Errorf("netns %s is a %s namespace: %w", path, nsKind(t), ErrNotNetns)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("netns %s: stat: %w", path, err)
	}
	return st.Ino, nil
}

// fileKind says what a file that is not a namespace is.
func fileKind(f *os.File, magic int64) string {
	if magic == unix.PROC_SUPER_MAGIC {
		return "a procfs file, not a namespace"
	}
	kind := "a file"
	if fi, err := f.Stat(); err == nil {
		switch {
		case fi.IsDir():
			kind = "a directory"
		case fi.Mode().IsRegular():
			kind = "a regular file"
		}
	}
	return kind + ", not a namespace (a network namespace is a file of nsfs: /proc/PID/ns/net, or bind-mounted by `ip netns add` or the runtime)"
}

func nsKind(t int) string {
	switch t {
	case unix.CLONE_NEWNS:
		return "mount"
	case unix.CLONE_NEWUSER:
		return "user"
	case unix.CLONE_NEWPID:
		return "pid"
	case unix.CLONE_NEWUTS:
		return "uts"
	case unix.CLONE_NEWIPC:
		return "ipc"
	case unix.CLONE_NEWCGROUP:
		return "cgroup"
	case unix.CLONE_NEWTIME:
		return "time"
	}
	return fmt.Sprintf("type %#x", t)
}

// Pin bind-mounts the network namespace at src (typically a transient
// /proc/PID/ns/net) onto a file in dir, named after its inode, so that it
// can be entered again after the process that had it is gone — and after
// our own restart. It returns the pinned path; pinning a namespace that is
// already pinned returns the same path.
func Pin(src, dir string) (string, error) {
	ino, err := Inode(src)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create netns pin dir: %w", err)
	}
	dst := filepath.Join(dir, "net-"+strconv.FormatUint(ino, 10))
	if got, err := Inode(dst); err == nil && got == ino {
		return dst, nil
	}
	f, err := os.OpenFile(dst, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create netns pin %s: %w", dst, err)
	}
	if f != nil {
		f.Close()
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		os.Remove(dst)
		return "", fmt.Errorf("pin netns %s at %s: %w", src, dst, err)
	}
	return dst, nil
}

// Unpin undoes Pin: the namespace lives on only while something else holds
// it. A path that is not pinned is no error.
func Unpin(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns pin %s: %w", path, err)
	}
	return nil
}

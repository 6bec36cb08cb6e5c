package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// secureSocketDir makes dir, the socket's directory, the daemon's own
// (root's, uid and gid) with mode 0700, creating it if missing. Only then
// can no other user move the socket aside and put a socket of theirs in its
// place, which the plugin would talk to. An existing dir is fixed through a
// descriptor opened without following a symlink, so that what is fixed is
// what was checked. A symlink, something not a directory, or a dir the
// daemon cannot fix is an error: the daemon does not start.
func secureSocketDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create socket dir: %w", err)
		}
		fi, err = os.Lstat(dir)
	}
	switch {
	case err != nil:
		return fmt.Errorf("socket dir: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("socket dir %s is a symlink: refusing it, whoever owns the link decides where the socket is", dir)
	case !fi.IsDir():
		return fmt.Errorf("socket dir %s is not a directory (%v)", dir, fi.Mode().Type())
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open socket dir %s (was it replaced just now?): %w", dir, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat socket dir %s: %w", dir, err)
	}
	uid, gid := os.Geteuid(), os.Getegid()
	if st.Uid != uint32(uid) || st.Gid != uint32(gid) {
		slog.Warn("socket dir belongs to someone else; taking it", "dir", dir, "uid", st.Uid, "gid", st.Gid)
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fmt.Errorf("socket dir %s belongs to uid %d and cannot be made uid %d's: %w", dir, st.Uid, uid, err)
		}
	}
	// Fchown cleared any setuid/setgid bit; the mode is set all the same.
	if st.Mode&0o7777 != 0o700 {
		slog.Warn("socket dir is open to others; making it 0700", "dir", dir, "mode", fmt.Sprintf("%04o", st.Mode&0o7777))
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		return fmt.Errorf("chmod 0700 socket dir %s: %w", dir, err)
	}
	return nil
}

// liveDaemon reports whether a process of the daemon's own uid listens on
// socket. A listener of another uid got there while the dir was open to
// others (secureSocketDir has closed it since): an impostor, whose socket is
// logged and replaced rather than let it keep the daemon from starting.
func liveDaemon(socket string) bool {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return false
	}
	defer c.Close()
	uid, ok := peerUID(c)
	if ok && uid == uint32(os.Geteuid()) {
		return true
	}
	slog.Warn("a process of another user listens on the daemon's socket; replacing its socket", "socket", socket, "uid", uid, "known", ok)
	return false
}

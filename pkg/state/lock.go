package state

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLockWait is how long Open waits for another process to let go of
// the state dir. A daemon killed with SIGKILL keeps its flock until the
// kernel has closed all its descriptors, which takes a while with many
// TAP queues open (about 100 pairs were enough for its successor, started
// at once, to find the dir still locked); 30 s covers that with a wide
// margin, and a real second daemon still fails, saying why, within half a
// minute.
const DefaultLockWait = 30 * time.Second

// lockPoll is how often a waiting Open tries the lock again. Polling, rather
// than a blocking flock in a goroutine, leaves no goroutine behind that
// could take the lock after OpenWait has given up.
const lockPoll = 50 * time.Millisecond

const lockName = "lock"

// ErrLocked means another process held the state dir's lock for longer
// than OpenWait was willing to wait.
var ErrLocked = errors.New("state dir is in use by another epair daemon")

// waitLock takes f's lock, trying again every lockPoll until wait has
// passed. It logs once that it waits, naming the holder the lock file
// names, and fails with ErrLocked when the holder does not let go in time.
func waitLock(f *os.File, dir string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	logged := false
	for {
		err := tryLock(f)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EWOULDBLOCK):
			return fmt.Errorf("lock state dir %s: %w", dir, err)
		case !time.Now().Before(deadline):
			return fmt.Errorf("%w: %s is held by %s; gave up after waiting %s (the daemon's --lock-wait): %w",
				ErrLocked, dir, holder(f), wait, err)
		case !logged:
			slog.Warn("state dir is locked; waiting for its holder to let go (a daemon killed just now holds it until the kernel has closed its files)",
				"dir", dir, "holder", holder(f), "wait", wait)
			logged = true
		}
		time.Sleep(lockPoll)
	}
}

// holder names the process whose pid the lock file holds. The pid is as the
// holder saw it: in another pid namespace (a previous container of the
// DaemonSet pod) it may mean another process here.
func holder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return "an unknown process (the lock file names no pid)"
	}
	return "pid " + strconv.Itoa(pid)
}

// writeHolder replaces the lock file's content with this process's pid. It
// is only a name for the log of the next daemon that waits, so a failure is
// logged, not returned.
func writeHolder(f *os.File) {
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err != nil {
		slog.Warn("cannot write pid into state lock", "file", f.Name(), "err", err)
		return
	}
	if _, err := f.WriteAt(pid, 0); err != nil {
		slog.Warn("cannot write pid into state lock", "file", f.Name(), "err", err)
	}
}

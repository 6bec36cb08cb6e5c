package state

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink the waiting Open and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// captureLog sends slog's default logger into a buffer for the test.
func captureLog(t *testing.T) *syncBuffer {
	t.Helper()
	buf := &syncBuffer{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return buf
}

// TestOpenWaitsForLock: a daemon started while the previous one is still
// dying (it holds the lock until the kernel has closed its files) waits for
// the lock instead of exiting, and says once whom it waits for.
func TestOpenWaitsForLock(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := captureLog(t)
	const hold = 400 * time.Millisecond
	go func() {
		time.Sleep(hold)
		first.Close()
	}()
	start := time.Now()
	second, err := Open(dir)
	if err != nil {
		t.Fatalf("second Open while the first was closing: %v", err)
	}
	defer second.Close()
	if waited := time.Since(start); waited < hold-50*time.Millisecond {
		t.Fatalf("second Open returned after %v, before the first let go (%v)", waited, hold)
	}
	out := logs.String()
	if n := strings.Count(out, "waiting for its holder"); n != 1 {
		t.Fatalf("want the wait logged once, got %d times:\n%s", n, out)
	}
	if pid := "pid " + strconv.Itoa(os.Getpid()); !strings.Contains(out, pid) {
		t.Fatalf("the log does not name the holder (%s):\n%s", pid, out)
	}
	b, _ := os.ReadFile(filepath.Join(dir, lockName))
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, want the new holder's pid", b)
	}
}

// TestOpenGivesUpAfterWait: a second daemon on a dir that stays locked fails
// after the bound, naming the dir and the holder.
func TestOpenGivesUpAfterWait(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	captureLog(t)
	const wait = 300 * time.Millisecond
	start := time.Now()
	s, err := OpenWait(dir, wait)
	if err == nil {
		s.Close()
		t.Fatal("a second daemon could open the same state dir")
	}
	if took := time.Since(start); took < wait || took > wait+2*time.Second {
		t.Fatalf("gave up after %v, want about %v", took, wait)
	}
	msg := err.Error()
	if !errors.Is(err, ErrLocked) || !strings.Contains(msg, dir) || !strings.Contains(msg, "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("error %q: want ErrLocked naming %s and the holder's pid", msg, dir)
	}
}

// TestOpenWithoutWaitFailsAtOnce: a zero wait tries the lock once.
func TestOpenWithoutWaitFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	start := time.Now()
	if s, err := OpenWait(dir, 0); !errors.Is(err, ErrLocked) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenWait(dir, 0) on a locked dir: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a zero wait took %v", took)
	}
}

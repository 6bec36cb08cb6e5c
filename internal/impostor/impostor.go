// Package impostor runs a fake epair daemon as an unprivileged user, in a
// process of its own, for the tests that check that the daemon and the
// client see through it (SO_PEERCRED). It is for tests only: the test
// binary re-executes itself under setpriv(1) and becomes the impostor.
package impostor

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// UID and GID are who the impostor runs as: nobody.
const (
	UID = 65534
	GID = 65534
)

const envSocket = "EPAIR_IMPOSTOR_SOCKET"

// ServeIfAsked makes this process the impostor when Start re-executed it,
// and never returns then; otherwise it does nothing. Call it first thing in
// TestMain.
func ServeIfAsked() {
	socket := os.Getenv(envSocket)
	if socket == "" {
		return
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("listening")
	// It answers like a daemon, so that a client that does not check its
	// peer gets a success and its test fails on that.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"version":"impostor","can_create":true}`)
	})
	err = http.Serve(countingListener{l}, h)
	fmt.Println("error:", err)
	os.Exit(1)
}

// countingListener prints, for every connection it closes, how many bytes
// the connection carried in: "conn N bytes".
type countingListener struct{ net.Listener }

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c}, nil
}

type countingConn struct {
	net.Conn
	n      atomic.Int64
	closed atomic.Bool
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingConn) Close() error {
	if !c.closed.Swap(true) {
		fmt.Printf("conn %d bytes\n", c.n.Load())
	}
	return c.Conn.Close()
}

// Impostor is a running fake daemon of uid UID.
type Impostor struct {
	lines chan string
}

// Start runs an impostor listening on socket, whose directory UID must be
// able to write. It needs root (to change uid) and setpriv; the test is
// skipped, saying why, without them. Cleanup kills it.
func Start(t *testing.T, socket string) *Impostor {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to run a listener as another user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to run a listener as another user")
	}
	bin := copyBinary(t)
	cmd := exec.Command(setpriv, fmt.Sprintf("--reuid=%d", UID), fmt.Sprintf("--regid=%d", GID), "--clear-groups", bin)
	cmd.Env = append(os.Environ(), envSocket+"="+socket)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start impostor: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	im := &Impostor{lines: make(chan string, 100)}
	go im.read(out)
	if l := im.Next(t, 10*time.Second); l != "listening" {
		t.Fatalf("impostor did not start: %q", l)
	}
	return im
}

func (im *Impostor) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		im.lines <- sc.Text()
	}
	close(im.lines)
}

// Next returns the impostor's next line of output ("conn N bytes" for each
// connection it saw closed), failing the test if none comes in time.
func (im *Impostor) Next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-im.lines:
		if !ok {
			t.Fatal("impostor exited")
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("impostor said nothing in %v", timeout)
		return ""
	}
}

// copyBinary copies the test binary where UID may run it: go test keeps it
// in a directory only its builder may enter.
func copyBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "epair-impostor")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bin := filepath.Join(dir, "impostor")
	outf, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(outf, in); err != nil {
		t.Fatal(err)
	}
	if err := outf.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// OpenDir makes a directory under the test's temporary dir that UID may
// write, as a socket directory left open to everyone.
func OpenDir(t *testing.T) string {
	t.Helper()
	base, err := os.MkdirTemp("", "epair-sockdir")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "run")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

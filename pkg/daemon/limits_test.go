package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveLimited serves h with lim on a fresh socket, as the daemon does.
func serveLimited(t *testing.T, lim limits, h http.Handler) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(h, lim)
	go srv.Serve(newLimitListener(l, lim.maxConns))
	t.Cleanup(func() { srv.Close() })
	return socket
}

// createLike answers POST like the create handler, without a manager.
var createLike = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && readCreate(w, r) == nil {
		return
	}
	reply(w, http.StatusOK, struct{}{})
})

func dial(t *testing.T, socket string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads c until the server closes it, and returns how long
// that took, failing the test if it takes longer than max.
func closedWithin(t *testing.T, c net.Conn, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(max))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the server kept the connection open for %v: %v", max, err)
	}
	return time.Since(start)
}

const getStatus = "GET /v1/status HTTP/1.1\r\nHost: epair\r\n\r\n"

var short = limits{readHeader: 300 * time.Millisecond, read: 300 * time.Millisecond,
	write: 5 * time.Second, idle: 300 * time.Millisecond, maxConns: 4}

// TestStalledBodyIsCut: a body that stops coming ends at the read timeout.
func TestStalledBodyIsCut(t *testing.T) {
	c := dial(t, serveLimited(t, short, createLike))
	fmt.Fprintf(c, "POST /v1/pairs HTTP/1.1\r\nHost: epair\r\nContent-Length: 100\r\n\r\n{\"mtu\":")
	if took := closedWithin(t, c, 3*time.Second); took < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the read timeout", took)
	}
}

// TestIdleConnectionsAreClosed: a connection that sends nothing, and one
// kept alive after an answer, are closed.
func TestIdleConnectionsAreClosed(t *testing.T) {
	socket := serveLimited(t, short, createLike)
	silent := dial(t, socket)
	kept := dial(t, socket)
	io.WriteString(kept, getStatus)
	resp, err := http.ReadResponse(bufio.NewReader(kept), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status: %v %v", resp, err)
	}
	closedWithin(t, silent, 3*time.Second)
	closedWithin(t, kept, 3*time.Second)
}

// TestConnectionBound: beyond maxConns a connection waits to be served,
// and is served once one of the others closes.
func TestConnectionBound(t *testing.T) {
	lim := short
	lim.readHeader, lim.read, lim.idle = 10*time.Second, 10*time.Second, 10*time.Second
	socket := serveLimited(t, lim, createLike)
	var held []net.Conn
	for range lim.maxConns {
		held = append(held, dial(t, socket))
	}
	late := dial(t, socket)
	io.WriteString(late, getStatus)
	late.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := late.Read(make([]byte, 1)); n > 0 || err == nil {
		t.Fatalf("a connection beyond the bound of %d was served", lim.maxConns)
	}
	held[0].Close()
	late.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(late), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("once a slot was free: %v %v", resp, err)
	}
}

// TestLongHandlerOutlivesReadTimeout: a handler that runs longer than
// ReadTimeout (a 30 s profile, a create under load) is neither canceled nor
// cut: the read timeout only bounds reading the request.
func TestLongHandlerOutlivesReadTimeout(t *testing.T) {
	socket := serveLimited(t, short, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(4 * short.read):
			io.WriteString(w, "done")
		case <-r.Context().Done():
			io.WriteString(w, "canceled")
		}
	}))
	c := dial(t, socket)
	io.WriteString(c, getStatus)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "done" {
		t.Fatalf("a handler longer than the read timeout answered %q", b)
	}
}

// TestPeerUIDThroughLimitConn: the peer check still sees the uid through
// the limit listener's connections.
func TestPeerUIDThroughLimitConn(t *testing.T) {
	socket := serveLimited(t, short, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid, ok := r.Context().Value(ctxKey{}).(uint32)
		fmt.Fprintf(w, "%d %v", uid, ok)
	}))
	c := dial(t, socket)
	io.WriteString(c, getStatus)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("%d true", os.Getuid()); !strings.EqualFold(string(b), want) {
		t.Fatalf("peer seen as %q, want %q", b, want)
	}
}

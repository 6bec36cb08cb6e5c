package datapath_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/daemon"
)

// apiClient is a plain net/http client on the daemon's socket: no request
// of pkg/client's making, whatever body the test sends.
func apiClient(socket string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

// TestAPIRefusesBadBodies: a create body that is not exactly one JSON
// object of known fields, or is over 1 MiB, is a 400 (413) with a JSON
// error, and makes no pair.
func TestAPIRefusesBadBodies(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.StartDaemon(t)
	na := harness.NewNS(t)
	obj := fmt.Sprintf(`{"a_netns":%q}`, na.Path())
	hc := apiClient(d.Socket)
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"garbage after", obj + " garbage", http.StatusBadRequest, "data after the JSON object"},
		{"two objects", obj + obj, http.StatusBadRequest, "data after the JSON object"},
		{"object then null", obj + "\nnull", http.StatusBadRequest, "data after the JSON object"},
		{"null", "null", http.StatusBadRequest, "not a JSON object"},
		{"array", "[" + obj + "]", http.StatusBadRequest, "not a JSON object"},
		{"number", "1500", http.StatusBadRequest, "not a JSON object"},
		{"empty", "", http.StatusBadRequest, "empty body"},
		{"unknown field", `{"a_netns":"` + na.Path() + `","bogus":1}`, http.StatusBadRequest, "unknown field"},
		{"truncated", obj[:len(obj)-1], http.StatusBadRequest, "unexpected EOF"},
		{"over 1 MiB", `{"a_netns":"` + na.Path() + `","a_name":"` + strings.Repeat("x", daemon.MaxBodyBytes) + `"}`,
			http.StatusRequestEntityTooLarge, "larger than 1048576 bytes"},
	} {
		resp, err := hc.Post("http://epair/v1/pairs", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), `"error":`) || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s; want %d saying %q", tc.name, resp.StatusCode, b, tc.status, tc.want)
		}
	}
	if left := leftAfter(t, d, na); left != "none" {
		t.Fatalf("left after bad bodies: %s", left)
	}
}

// rawConn dials the socket; cleanup closes it.
func rawConn(t *testing.T, socket string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatalf("dial %s: %v", socket, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// status sends GET /v1/status on c and reads the answer, so c is known to be
// accepted and served.
func status(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: epair\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: %s", resp.Status)
	}
}

// closedAfter waits until the server closes c (a read ends in EOF, after
// whatever answer it sent) and returns how long that took since start, or
// -1 if c is still open at deadline.
func closedAfter(c net.Conn, r io.Reader, start, deadline time.Time) time.Duration {
	c.SetReadDeadline(deadline)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return -1
	}
	return time.Since(start)
}

// within reports whether a connection closed took about d (the daemon's
// timeout), neither before nor much after it.
func within(took, d time.Duration) bool { return took >= d-time.Second && took <= d+3*time.Second }

// TestAPIBoundsConnections, with the daemon's real limits (about 12 s): a
// body that stalls is cut at ReadTimeout, a kept-alive connection that goes
// quiet at IdleTimeout, connections that never send a request at
// ReadHeaderTimeout, and beyond MaxConns a connection waits until others
// are gone before it is served. Nothing is created on the way.
func TestAPIBoundsConnections(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.StartDaemon(t)
	na := harness.NewNS(t)
	var wg sync.WaitGroup
	// A stalled create body: first a request, so the connection is known
	// to hold a slot, then headers and half a body.
	stalled := rawConn(t, d.Socket)
	sr := bufio.NewReader(stalled)
	status(t, stalled, sr)
	body := fmt.Sprintf(`{"a_netns":%q}`, na.Path())
	fmt.Fprintf(stalled, "POST /v1/pairs HTTP/1.1\r\nHost: epair\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2])
	t0 := time.Now()
	// A kept-alive connection that sends nothing after its answer.
	idle := rawConn(t, d.Socket)
	ir := bufio.NewReader(idle)
	status(t, idle, ir)
	t1 := time.Now()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if took := closedAfter(stalled, sr, t0, t0.Add(daemon.ReadTimeout+4*time.Second)); !within(took, daemon.ReadTimeout) {
			t.Errorf("stalled body: connection closed after %v (-1: still open), want about ReadTimeout %v", took, daemon.ReadTimeout)
		}
	}()
	go func() {
		defer wg.Done()
		if took := closedAfter(idle, ir, t1, t1.Add(daemon.IdleTimeout+4*time.Second)); !within(took, daemon.IdleTimeout) {
			t.Errorf("idle kept-alive connection: closed after %v (-1: still open), want about IdleTimeout %v", took, daemon.IdleTimeout)
		}
	}()
	// MaxConns connections that never send a request fill every slot left
	// (two are taken above, and maybe one by the harness's client), so
	// one more connection waits.
	t2 := time.Now()
	silent := make([]net.Conn, daemon.MaxConns)
	for i := range silent {
		silent[i] = rawConn(t, d.Socket)
	}
	var closed atomic.Int32
	for _, c := range silent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if took := closedAfter(c, c, t2, t2.Add(daemon.ReadHeaderTimeout+3*time.Second)); took >= 0 {
				closed.Add(1)
			}
		}()
	}
	probe := rawConn(t, d.Socket)
	io.WriteString(probe, "GET /v1/status HTTP/1.1\r\nHost: epair\r\n\r\n")
	probe.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := probe.Read(make([]byte, 1)); n > 0 || err == nil {
		t.Errorf("a connection beyond MaxConns (%d) was served at once", daemon.MaxConns)
	}
	probe.SetReadDeadline(t2.Add(daemon.ReadHeaderTimeout + 4*time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(probe), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the waiting connection was not served once the silent ones were closed: %v %v", resp, err)
	} else if took := time.Since(t2); !within(took, daemon.ReadHeaderTimeout) {
		t.Errorf("the waiting connection was served after %v, want about ReadHeaderTimeout %v", took, daemon.ReadHeaderTimeout)
	}
	wg.Wait()
	// Those in the backlog when the slots freed are served later; all the
	// others were closed at ReadHeaderTimeout.
	if n := int(closed.Load()); n < daemon.MaxConns-3 {
		t.Errorf("%d of %d silent connections closed at ReadHeaderTimeout; want all but the up to 3 that waited", n, daemon.MaxConns)
	}
	if left := leftAfter(t, d, na); left != "none" {
		t.Fatalf("left after the stalled create: %s", left)
	}
}

// Package client talks to the epair daemon over its unix socket.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"golang.org/x/sys/unix"
)

// ErrUnreachable means the daemon did not answer on its socket.
var ErrUnreachable = errors.New("epair daemon not reachable")

// ErrNotRoot means the process listening on the daemon's socket is not
// root: not the daemon but someone who put their socket in its place (or,
// rarely, its uid could not be read). Nothing was sent to it. Unlike
// ErrUnreachable it is not transient: trying again talks to the impostor
// again.
var ErrNotRoot = errors.New("epair daemon socket is not served by root")

// APIError is an answer from the daemon that is not a success.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// IsNotFound reports whether err is the daemon saying the pair does not exist.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// Client is a client of one daemon socket.
type Client struct {
	socket string
	hc     *http.Client
	// stream is hc without its timeout, for answers that last as long as
	// the caller reads them (a capture).
	stream *http.Client
	// allowOwnUID also trusts a listener of the client's own uid.
	allowOwnUID bool
}

// Option changes how a Client checks or talks to its daemon.
type Option func(*Client)

// idleConnTimeout is shorter than the daemon's idle timeout (10 s), so the
// client drops a kept-alive connection before the daemon closes it: a
// request sent just as the daemon closes would fail, and a POST is not
// retried.
const idleConnTimeout = 5 * time.Second

// New returns a client for the daemon listening on socket. Before it sends
// anything on a connection it checks that the process listening on the
// socket is root (SO_PEERCRED), and fails with ErrNotRoot if not.
func New(socket string, opts ...Option) *Client {
	if socket == "" {
		socket = api.DefaultSocket
	}
	c := &Client{socket: socket}
	for _, o := range opts {
		o(c)
	}
	tr := &http.Transport{DialContext: c.dial, IdleConnTimeout: idleConnTimeout}
	c.hc = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	c.stream = &http.Client{Transport: tr}
	return c
}

// dial connects to the socket and checks who listens on it.
func (c *Client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return nil, err
	}
	if err := c.checkPeer(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// checkPeer fails with ErrNotRoot unless the listener on conn is root (or
// the client's own uid, with AllowOwnUID). The kernel records the listener's
// credentials when it called listen(2), so a socket put in the daemon's
// place by another user shows that user's uid, whatever it does after.
func (c *Client) checkPeer(conn net.Conn) error {
	cred, err := peerCred(conn)
	if err != nil {
		return fmt.Errorf("%w: cannot read who serves %s: %w", ErrNotRoot, c.socket, err)
	}
	if cred.Uid == 0 || c.allowOwnUID && cred.Uid == uint32(os.Getuid()) {
		return nil
	}
	return fmt.Errorf("%w: %s is served by uid %d (pid %d, as the kernel saw it), not by root: refusing to send it anything; the daemon's socket was replaced, or its directory is open to others",
		ErrNotRoot, c.socket, cred.Uid, cred.Pid)
}

// peerCred reads SO_PEERCRED of a unix socket connection.
func peerCred(conn net.Conn) (*unix.Ucred, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("not a unix socket connection: %T", conn)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred, nil
}

// Socket returns the socket path the client uses.
func (c *Client) Socket() string { return c.socket }

// Status asks the daemon whether it is healthy and can create pairs.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var s api.Status
	return &s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// CreatePair asks for a new pair.
func (c *Client) CreatePair(ctx context.Context, req *api.CreateRequest) (*api.Pair, error) {
	var p api.Pair
	return &p, c.do(ctx, http.MethodPost, "/v1/pairs", req, &p)
}

// ListPairs lists every pair.
func (c *Client) ListPairs(ctx context.Context) ([]api.Pair, error) {
	var ps []api.Pair
	return ps, c.do(ctx, http.MethodGet, "/v1/pairs", nil, &ps)
}

// GetPair returns a pair by unit number or by the name of either end.
func (c *Client) GetPair(ctx context.Context, id string) (*api.Pair, error) {
	var p api.Pair
	return &p, c.do(ctx, http.MethodGet, "/v1/pairs/"+url.PathEscape(id), nil, &p)
}

// DeletePair deletes a pair by unit number or end name.
func (c *Client) DeletePair(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/pairs/"+url.PathEscape(id), nil, nil)
}

// SetIPs replaces the addresses of a pair's owner, and so what its
// anti-spoofing filter lets the pod send from.
func (c *Client) SetIPs(ctx context.Context, id string, ips []string) (*api.Pair, error) {
	var p api.Pair
	return &p, c.do(ctx, http.MethodPut, "/v1/pairs/"+url.PathEscape(id)+"/ips", &api.SetIPsRequest{IPs: ips}, &p)
}

// Stats returns the counters of a pair.
func (c *Client) Stats(ctx context.Context, id string) (*api.Stats, error) {
	var s api.Stats
	return &s, c.do(ctx, http.MethodGet, "/v1/pairs/"+url.PathEscape(id)+"/stats", nil, &s)
}

// ReportCNIResult tells the daemon how a CNI command ended (its metrics
// count them).
func (c *Client) ReportCNIResult(ctx context.Context, r api.CNIResult) error {
	return c.do(ctx, http.MethodPost, "/v1/cni/results", r, nil)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://epair"+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.send(c.hc, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp, b)
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer from %s: %w", c.socket, err)
	}
	return nil
}

// send sends req with hc and names the ways it can fail to reach the
// daemon.
func (c *Client) send(hc *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := hc.Do(req)
	if errors.Is(err, ErrNotRoot) {
		// Not wrapped in ErrUnreachable: no "try again later" for an
		// impostor. The dial error alone says it; drop net/http's prefix.
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w at %s (is `epair daemon` running, and are you root?): %w", ErrUnreachable, c.socket, err)
	}
	return resp, nil
}

// apiError is the daemon's answer b, not a success, as an *APIError.
func apiError(resp *http.Response, b []byte) error {
	var e api.Error
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = fmt.Sprintf("daemon answered %s", resp.Status)
	}
	return &APIError{Status: resp.StatusCode, Message: e.Error}
}

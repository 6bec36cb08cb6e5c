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
	"time"

	"github.com/epair-cni/epair/pkg/api"
)

// ErrUnreachable means the daemon did not answer on its socket.
var ErrUnreachable = errors.New("epair daemon not reachable")

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
}

// New returns a client for the daemon listening on socket.
func New(socket string) *Client {
	if socket == "" {
		socket = api.DefaultSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
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

// Stats returns the counters of a pair.
func (c *Client) Stats(ctx context.Context, id string) (*api.Stats, error) {
	var s api.Stats
	return &s, c.do(ctx, http.MethodGet, "/v1/pairs/"+url.PathEscape(id)+"/stats", nil, &s)
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
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s (is `epair daemon` running, and are you root?): %w", ErrUnreachable, c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("daemon answered %s", resp.Status)
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer from %s: %w", c.socket, err)
	}
	return nil
}

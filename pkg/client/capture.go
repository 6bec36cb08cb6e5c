package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/epair-cni/epair/pkg/api"
)

// CaptureStream is a running capture: Body is the pcap or pcapng file as
// the daemon writes it.
type CaptureStream struct {
	// ID names the capture for StopCapture.
	ID   string
	Body io.ReadCloser
	resp *http.Response
}

// Summary says how the stream ended, from its trailers, once Body has been
// read to its end; false if the daemon sent none (the stream was cut).
func (s *CaptureStream) Summary() (api.CaptureSummary, bool) {
	t := s.resp.Trailer
	end := t.Get(api.TrailerEnd)
	if end == "" {
		return api.CaptureSummary{}, false
	}
	captured, _ := strconv.ParseUint(t.Get(api.TrailerCaptured), 10, 64)
	lost, _ := strconv.ParseUint(t.Get(api.TrailerLost), 10, 64)
	return api.CaptureSummary{Captured: captured, Lost: lost, End: end}, true
}

// Capture starts a capture of a pair (by unit, end name or pod). The
// stream lasts until ctx is done, the options' count is reached, the pair
// is deleted or StopCapture ends it.
func (c *Client) Capture(ctx context.Context, id string, o *api.CaptureOptions) (*CaptureStream, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	u := "http://epair/v1/pairs/" + url.PathEscape(id) + "/capture?" + o.Query().Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	resp, err := c.send(c.stream, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, apiError(resp, b)
	}
	return &CaptureStream{ID: resp.Header.Get(api.HeaderCaptureID), Body: resp.Body, resp: resp}, nil
}

// StopCapture ends a capture after its last whole packet.
func (c *Client) StopCapture(ctx context.Context, captureID string) error {
	return c.do(ctx, http.MethodDelete, "/v1/captures/"+url.PathEscape(captureID), nil, nil)
}

package api

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/epair-cni/epair/pkg/epair"
)

// Capture file formats.
const (
	FormatPcap   = "pcap"
	FormatPcapng = "pcapng"
)

// The headers of a capture's answer (GET /v1/pairs/{id}/capture): its id,
// to stop it with DELETE /v1/captures/{id}, and the trailers sent once the
// stream ends, which say how it ended.
const (
	HeaderCaptureID = "Epair-Capture-Id"
	// TrailerCaptured is the number of frames written into the stream.
	TrailerCaptured = "Epair-Captured"
	// TrailerLost is the number of frames the capture's buffer could not
	// keep (its reader was slower than the traffic).
	TrailerLost = "Epair-Lost"
	// TrailerEnd says why the stream ended: one of the CaptureEnd values.
	TrailerEnd = "Epair-End"
)

// Why a capture stream ended.
const (
	CaptureEndCount   = "count reached"
	CaptureEndStopped = "stopped"
	CaptureEndDeleted = "pair deleted"
)

// CaptureOptions are the query of GET /v1/pairs/{id}/capture.
type CaptureOptions struct {
	// End is the end captured, "a" (the pod's) or "b"; "" means "a".
	End string
	// Drops also captures the frames the core dropped, each with a
	// "dropped: REASON" comment; it needs pcapng.
	Drops bool
	// Snaplen keeps that many bytes of each frame; 0: all of it.
	Snaplen int
	// BufferKiB bounds the capture's buffer; 0: the default (4 MiB).
	BufferKiB int
	// Format is FormatPcap ("" too) or FormatPcapng.
	Format string
	// Count ends the capture after that many frames; 0: no limit.
	Count int
}

// ErrBadCapture marks capture options out of range.
var ErrBadCapture = errors.New("bad capture options")

// Validate checks the options.
func (o *CaptureOptions) Validate() error {
	switch {
	case o.End != "" && o.End != "a" && o.End != "b":
		return fmt.Errorf("%w: end %q: want a or b", ErrBadCapture, o.End)
	case o.Format != "" && o.Format != FormatPcap && o.Format != FormatPcapng:
		return fmt.Errorf("%w: format %q: want pcap or pcapng", ErrBadCapture, o.Format)
	case o.Drops && o.Format != FormatPcapng:
		return fmt.Errorf("%w: drops are marked by a pcapng comment: ask for pcapng", ErrBadCapture)
	case o.Count < 0:
		return fmt.Errorf("%w: count %d is negative", ErrBadCapture, o.Count)
	case o.BufferKiB < 0 || o.BufferKiB > 0 && (o.BufferKiB < epair.MinCaptureBuf>>10 || o.BufferKiB > epair.MaxCaptureBuf>>10):
		return fmt.Errorf("%w: buffer %d KiB out of %d..%d", ErrBadCapture, o.BufferKiB, epair.MinCaptureBuf>>10, epair.MaxCaptureBuf>>10)
	case o.Snaplen < 0 || o.Snaplen > epair.MaxSnaplen:
		return fmt.Errorf("%w: snaplen %d out of 1..%d", ErrBadCapture, o.Snaplen, epair.MaxSnaplen)
	}
	return nil
}

// Config returns the core's capture config of the options.
func (o *CaptureOptions) Config() epair.CaptureConfig {
	return epair.CaptureConfig{Snaplen: o.Snaplen, BufferBytes: o.BufferKiB << 10, Drops: o.Drops}
}

// Query encodes the options as a URL query.
func (o *CaptureOptions) Query() url.Values {
	q := url.Values{}
	set := func(k string, v int) {
		if v != 0 {
			q.Set(k, strconv.Itoa(v))
		}
	}
	if o.End != "" {
		q.Set("end", o.End)
	}
	if o.Drops {
		q.Set("drops", "1")
	}
	if o.Format != "" {
		q.Set("format", o.Format)
	}
	set("snaplen", o.Snaplen)
	set("buffer", o.BufferKiB)
	set("count", o.Count)
	return q
}

// ParseCaptureOptions decodes and validates a query made by Query.
func ParseCaptureOptions(q url.Values) (*CaptureOptions, error) {
	o := &CaptureOptions{End: q.Get("end"), Format: q.Get("format")}
	switch d := q.Get("drops"); d {
	case "", "0", "false":
	case "1", "true":
		o.Drops = true
	default:
		return nil, fmt.Errorf("%w: drops %q: want 1 or 0", ErrBadCapture, d)
	}
	for k, p := range map[string]*int{"snaplen": &o.Snaplen, "buffer": &o.BufferKiB, "count": &o.Count} {
		v := q.Get(k)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %q is not a number", ErrBadCapture, k, v)
		}
		*p = n
	}
	return o, o.Validate()
}

// CaptureSummary is how a capture stream ended, from its trailers.
type CaptureSummary struct {
	Captured, Lost uint64
	End            string
}

package api

import (
	"errors"
	"net/url"
	"testing"
)

func TestCaptureOptionsRoundTrip(t *testing.T) {
	in := CaptureOptions{End: "b", Drops: true, Snaplen: 96, BufferKiB: 128, Format: FormatPcapng, Count: 7}
	out, err := ParseCaptureOptions(in.Query())
	if err != nil || *out != in {
		t.Fatalf("got %+v, %v; want %+v", out, err, in)
	}
}

func TestCaptureOptionsRefused(t *testing.T) {
	for _, q := range []string{
		"end=c", "format=erf", "drops=1", "drops=yes&format=pcapng", "snaplen=-1", "snaplen=300000",
		"snaplen=x", "buffer=1", "buffer=2000000", "count=-2",
	} {
		v, _ := url.ParseQuery(q)
		if _, err := ParseCaptureOptions(v); !errors.Is(err, ErrBadCapture) {
			t.Errorf("%s: %v, want ErrBadCapture", q, err)
		}
	}
}

package daemon

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/epair-cni/epair/pkg/api"
)

// FuzzDecodeCreate: decodeCreate never panics; what it accepts is a single
// JSON object (json.Valid holds exactly one value) that begins with '{'; and
// the request it returns, encoded again, decodes to the same request.
func FuzzDecodeCreate(f *testing.F) {
	for _, b := range goodBodies {
		f.Add([]byte(b))
	}
	for _, tc := range badBodies {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeCreate(bytes.NewReader(body))
		if err != nil {
			if req != nil {
				t.Fatalf("decodeCreate(%q) returned a request and %v", body, err)
			}
			return
		}
		if trimmed := bytes.TrimLeft(body, jsonSpace); !json.Valid(body) || trimmed[0] != '{' {
			t.Fatalf("decodeCreate(%q) took what is not a single JSON object", body)
		}
		enc, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("encode %+v: %v", req, err)
		}
		again, err := decodeCreate(bytes.NewReader(enc))
		if err != nil {
			t.Fatalf("decodeCreate(%s), the re-encoding of %q: %v", enc, body, err)
		}
		if !sameRequest(req, again) {
			t.Fatalf("%q decodes to %+v, its re-encoding %s to %+v", body, req, enc, again)
		}
	})
}

// sameRequest compares two requests as the daemon sees them: an empty
// list of owner IPs is no list (omitempty drops it on the way out).
func sameRequest(a, b *api.CreateRequest) bool {
	norm := func(r *api.CreateRequest) *api.CreateRequest {
		c := *r
		if c.Owner != nil && len(c.Owner.IPs) == 0 {
			o := *c.Owner
			o.IPs = nil
			c.Owner = &o
		}
		return &c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

package daemon

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/epair-cni/epair/pkg/api"
)

// goodBodies are create requests the API takes.
var goodBodies = []string{
	`{}`,
	`{"a_netns":"/var/run/netns/pod1"}`,
	" \t\r\n{\"a_netns\":\"/var/run/netns/pod1\",\"mtu\":9000} \n",
	`{"unit":3,"a_netns":"/proc/1/ns/net","b_netns":"/proc/2/ns/net","b_netns_inode":4026531840,` +
		`"a_name":"eth0","a_mac":"02:00:00:00:00:01","mtu":1500,"queues":2,` +
		`"owner":{"container_id":"abc","ifname":"eth0","network":"net","ips":["10.0.0.2/24"]}}`,
}

// badBodies are bodies the API refuses, with what the error says.
var badBodies = []struct{ body, want string }{
	{``, "empty body"},
	{" \n\t", "empty body"},
	{`null`, "not a JSON object"},
	{`[]`, "not a JSON object"},
	{`[{"a_netns":"/x"}]`, "not a JSON object"},
	{`"x"`, "not a JSON object"},
	{`1500`, "not a JSON object"},
	{`true`, "not a JSON object"},
	{`{"a_netns":"/x"} garbage`, "data after the JSON object"},
	{`{"a_netns":"/x"}{"a_netns":"/y"}`, "data after the JSON object"},
	{`{"a_netns":"/x"} {"a_netns":"/y"}`, "data after the JSON object"},
	{`{"a_netns":"/x"} null`, "data after the JSON object"},
	{`{"a_netns":"/x"},`, "data after the JSON object"},
	{`{"a_netns":"/x"}]`, "data after the JSON object"},
	{"{}\x00", "data after the JSON object"},
	{`{"a_netns":"/x"`, "unexpected EOF"},
	{`{"a_netns":"/x",}`, "invalid character"},
	{`{"bogus":1}`, `unknown field "bogus"`},
	{`{"owner":{"container_id":"c","bogus":1}}`, `unknown field "bogus"`},
	{`{"mtu":"1500"}`, "cannot unmarshal"},
	{`{"mtu":1.5}`, "cannot unmarshal"},
	{`{"unit":99999999999999999999}`, "cannot unmarshal"},
}

func TestDecodeCreateAcceptsOneObject(t *testing.T) {
	for _, b := range goodBodies {
		if req, err := decodeCreate(strings.NewReader(b)); err != nil || req == nil {
			t.Errorf("decodeCreate(%q): %v", b, err)
		}
	}
	req, _ := decodeCreate(strings.NewReader(goodBodies[3]))
	if *req.Unit != 3 || req.AName != "eth0" || req.Queues != 2 || req.Owner.IPs[0] != "10.0.0.2/24" {
		t.Fatalf("decoded %+v", req)
	}
}

func TestDecodeCreateRefuses(t *testing.T) {
	for _, tc := range badBodies {
		req, err := decodeCreate(strings.NewReader(tc.body))
		if err == nil || req != nil {
			t.Errorf("decodeCreate(%q) = %+v, nil; want an error", tc.body, req)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decodeCreate(%q): %q, want it to say %q", tc.body, err, tc.want)
		}
	}
}

// TestReadCreateAnswers: a bad body is a 400 with a JSON error, a body over
// MaxBodyBytes a 413, whatever it holds.
func TestReadCreateAnswers(t *testing.T) {
	huge := `{"a_netns":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"a_netns":"/x"} garbage`, http.StatusBadRequest, `"error":"malformed request: data after the JSON object`},
		{`null`, http.StatusBadRequest, `not a JSON object`},
		{huge, http.StatusRequestEntityTooLarge, `request body larger than 1048576 bytes (1 MiB)`},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/pairs", bytes.NewBufferString(tc.body))
		if req := readCreate(w, r); req != nil {
			t.Fatalf("readCreate took %.40q", tc.body)
		}
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.want) {
			t.Fatalf("body %.40q: %d %s, want %d with %q", tc.body, w.Code, w.Body, tc.status, tc.want)
		}
	}
}

// decodeCreate reads a create request: exactly one JSON object, with
// nothing but whitespace around it, and no field api.CreateRequest does not
// have. encoding/json alone takes more: `null` (a zero request, which would
// make a pair in the daemon's namespace), any other value where an object
// belongs, and an object followed by anything (a decoder stops after the
// first value), so `{…} garbage` or `{…}{…}` made pairs.
func decodeCreate(r io.Reader) (*api.CreateRequest, error) {
	var req api.CreateRequest
	if err := decodeObject(r, &req); err != nil {
		return nil, err
	}
	return &req, nil
}

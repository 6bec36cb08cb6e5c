package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/epair-cni/epair/pkg/api"
)

// jsonSpace is what JSON allows around a value (RFC 8259, section 2).
const jsonSpace = " \t\r\n"

// decodeCreate reads a create request: exactly one JSON object, with
// nothing but whitespace around it, and no field api.CreateRequest does not
// have. encoding/json alone takes more: `null` (a zero request, which would
// make a pair in the daemon's namespace), any other value where an object
// belongs, and an object followed by anything (a decoder stops after the
// first value), so `{…} garbage` or `{…}{…}` made pairs.
func decodeCreate(r io.Reader) (*api.CreateRequest, error) {
	return decodeOne[api.CreateRequest](r)
}

// decodeOne reads exactly one JSON object of known fields into a T, as
// decodeCreate says.
func decodeOne[T any](r io.Reader) (*T, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	body := bytes.TrimLeft(b, jsonSpace)
	if len(body) == 0 {
		return nil, errors.New("empty body: want one JSON object")
	}
	if body[0] != '{' {
		return nil, fmt.Errorf("body is not a JSON object (it begins with %q): want one JSON object", body[0])
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req T
	if err := dec.Decode(&req); err != nil {
		return nil, err
	}
	end := dec.InputOffset()
	if rest := bytes.TrimLeft(body[end:], jsonSpace); len(rest) > 0 {
		return nil, fmt.Errorf("data after the JSON object (at byte %d): want exactly one object", int64(len(b)-len(body))+end)
	}
	return &req, nil
}

// readCreate decodes the body of POST /v1/pairs, bounded to MaxBodyBytes,
// or answers the client itself (400, or 413 for a body too large) and
// returns nil.
func readCreate(w http.ResponseWriter, r *http.Request) *api.CreateRequest {
	return readBody[api.CreateRequest](w, r)
}

// readBody is readCreate for a body of type T.
func readBody[T any](w http.ResponseWriter, r *http.Request) *T {
	req, err := decodeOne[T](http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		reply(w, http.StatusRequestEntityTooLarge,
			api.Error{Error: fmt.Sprintf("request body larger than %d bytes (1 MiB)", tooLarge.Limit)})
		return nil
	case err != nil:
		reply(w, http.StatusBadRequest, api.Error{Error: "malformed request: " + err.Error()})
		return nil
	}
	return req
}

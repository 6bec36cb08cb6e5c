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

// decodeObject reads exactly one JSON object into v: nothing but whitespace
// around it and no field v does not have. encoding/json alone takes more:
// `null`, any other value where an object belongs, and an object followed by
// anything (a decoder stops after the first value), so `{…} garbage` or
// `{…}{…}` made pairs.
func decodeObject(r io.Reader, v any) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	body := bytes.TrimLeft(b, jsonSpace)
	if len(body) == 0 {
		return errors.New("empty body: want one JSON object")
	}
	if body[0] != '{' {
		return fmt.Errorf("body is not a JSON object (it begins with %q): want one JSON object", body[0])
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	end := dec.InputOffset()
	if rest := bytes.TrimLeft(body[end:], jsonSpace); len(rest) > 0 {
		return fmt.Errorf("data after the JSON object (at byte %d): want exactly one object", int64(len(b)-len(body))+end)
	}
	return nil
}

// readCreate decodes the body of POST /v1/pairs (readJSON), or answers
// the client itself and returns nil.
func readCreate(w http.ResponseWriter, r *http.Request) *api.CreateRequest {
	var req api.CreateRequest
	if !readJSON(w, r, &req) {
		return nil
	}
	return &req
}

// readJSON decodes a request body, bounded to MaxBodyBytes, into v
// (decodeObject), or answers the client itself (400, or 413 for a body too
// large) and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	err := decodeObject(http.MaxBytesReader(w, r.Body, MaxBodyBytes), v)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		reply(w, http.StatusRequestEntityTooLarge,
			api.Error{Error: fmt.Sprintf("request body larger than %d bytes (1 MiB)", tooLarge.Limit)})
		return false
	case err != nil:
		reply(w, http.StatusBadRequest, api.Error{Error: "malformed request: " + err.Error()})
		return false
	}
	return true
}

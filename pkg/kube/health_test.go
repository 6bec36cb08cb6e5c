package kube

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	return w.Code, w.Body.String()
}

func TestHealth(t *testing.T) {
	var h Health
	srv := h.Handler()
	if code, _ := get(t, srv, "/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	code, body := get(t, srv, "/readyz")
	if code != 503 || !strings.Contains(body, "datapath") || !strings.Contains(body, "conflist") {
		t.Errorf("readyz before anything: %d %q", code, body)
	}
	h.SetDatapathReady()
	code, body = get(t, srv, "/readyz")
	if code != 503 || strings.Contains(body, "datapath") || !strings.Contains(body, "conflist") {
		t.Errorf("readyz with the datapath only: %d %q", code, body)
	}
	h.SetConflistReady()
	if code, _ := get(t, srv, "/readyz"); code != 200 {
		t.Errorf("readyz when ready: %d", code)
	}
}

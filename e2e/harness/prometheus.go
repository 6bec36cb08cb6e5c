package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// FreePort returns a TCP port of 127.0.0.1 in n that was free a moment ago.
func FreePort(t *testing.T, n ns.NetNS) int {
	t.Helper()
	var port int
	err := n.Do(func(ns.NetNS) error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	})
	if err != nil {
		t.Fatalf("free port in %s: %v", n.Path(), err)
	}
	return port
}

// HTTPClientIn is an HTTP client whose connections are made in n: the
// socket is created on a thread locked into n (ns.Do), and stays there.
func HTTPClientIn(n ns.NetNS) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.Do(func(ns.NetNS) (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

// Prometheus is Debian's /usr/bin/prometheus scraping targets every second,
// inside a namespace, with its own config and TSDB dir (removed at cleanup).
type Prometheus struct {
	Addr string
	hc   *http.Client
	cmd  *exec.Cmd
}

// StartPrometheus runs prometheus in n, scraping the /metrics of targets
// (HOST:PORT in n) as job "epair", and waits until it is ready. It skips
// the test when prometheus is not installed (`make deps` installs it).
func StartPrometheus(t *testing.T, n ns.NetNS, targets ...string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("needs Debian's prometheus (apt-get install prometheus, or make deps)")
	}
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	conf := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n- job_name: epair\n  static_configs:\n  - targets: [%s]\n",
		strings.Join(quoted, ", "))
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Prometheus{Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t, n)), hc: HTTPClientIn(n)}
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command("nsenter", "--net="+n.Path(), "--", bin, "--config.file="+confPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+p.Addr)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("prometheus log (tail):\n%s", tail(string(b), 3000))
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := p.hc.Get("http://" + p.Addr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready on %s after 30s", p.Addr)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Sample is one series of an instant query's answer.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant query through Prometheus's HTTP API
// (/api/v1/query) and returns its vector.
func (p *Prometheus) Query(expr string) ([]Sample, error) {
	resp, err := p.hc.Get("http://" + p.Addr + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("query %s: %w: %s", expr, err, b)
	}
	if r.Status != "success" || r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: %s %s (%s)", expr, r.Status, r.Error, r.Data.ResultType)
	}
	out := make([]Sample, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", expr, s.Value[1], err)
		}
		out = append(out, Sample{Labels: s.Metric, Value: v})
	}
	return out, nil
}

// WaitFor runs expr until ok accepts its answer, or fails the test after
// timeout with the last answer.
func (p *Prometheus) WaitFor(t *testing.T, expr string, timeout time.Duration, ok func([]Sample) bool) []Sample {
	t.Helper()
	var last []Sample
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if last, err = p.Query(expr); err == nil && ok(last) {
			return last
		}
	}
	t.Fatalf("prometheus: %s: after %v: %+v (err %v)", expr, timeout, last, err)
	return nil
}

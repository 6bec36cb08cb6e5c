package metrics

import (
	"bytes"
	"fmt"
	"github.com/epair-cni/epair/internal/eventually"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// countingSink is a Sink that counts what is delivered to it.
type countingSink struct{ n atomic.Int64 }

func (s *countingSink) Deliver(int, []byte) error { s.n.Add(1); return nil }

// fakeSource lists the pairs a test gives it.
type fakeSource struct {
	mu    sync.Mutex
	pairs []Pair
	d     Daemon
}

func (f *fakeSource) MetricPairs() []Pair {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Pair(nil), f.pairs...)
}

func (f *fakeSource) MetricDaemon() Daemon { return f.d }

func (f *fakeSource) set(ps ...Pair) {
	f.mu.Lock()
	f.pairs = ps
	f.mu.Unlock()
}

// udp is a frame of ethLen bytes after its vnet header, to a unicast MAC
// or, with bcast, the broadcast one (OMCASTS); the core needs no more of it.
func udp(ethLen int, bcast bool) *epair.Frame {
	f := epair.GetFrame()
	f.Data = f.Buf()[:epair.VnetHdrLen+ethLen]
	clear(f.Data)
	dst := []byte{0x02, 0, 0, 0, 0, 0x0b}
	if bcast {
		dst = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	copy(f.Data[epair.VnetHdrLen:], dst)
	return f
}

// corePair is a real Core's pair (direct dispatch, byte-bounded queues)
// between two counting sinks, both ends up.
func corePair(t testing.TB) (*epair.Pair, *countingSink) {
	t.Helper()
	c := epair.New(epair.Config{Queues: 1, Policy: epair.Direct})
	t.Cleanup(c.Close)
	sb := &countingSink{}
	p := c.NewPair(1500, &countingSink{}, sb)
	p.A.SetUp(true)
	p.B.SetUp(true)
	return p, sb
}

// waitDelivered waits until s has n frames.
func waitDelivered(t *testing.T, s *countingSink, n int64) {
	t.Helper()
	eventually.True(t, fmt.Sprintf("%d frames delivered", n), func() bool { return s.n.Load() >= n })
}

const podLabels = `pod_namespace="default",pod_name="web-0",container_id="c0ffee",interface="eth0",pair="3"`

func webPair(p *epair.Pair) Pair {
	return Pair{Unit: 3, PodNamespace: "default", PodName: "web-0", ContainerID: "c0ffee", Interface: "eth0",
		A: End{Device: "eth0", End: p.A}, B: End{Device: "epair3b", End: p.B}}
}

// TestCollectorReadsTheCoresCounters: frames sent through a real Core show
// in the exposition as what the core counted, with the pod's labels, per
// end and drop reason; the series go when the source stops listing the pair.
func TestCollectorReadsTheCoresCounters(t *testing.T) {
	p, sb := corePair(t)
	const n, size = 7, 100
	for i := 0; i < n; i++ {
		p.A.Transmit(udp(size, i == 0))
	}
	p.A.Transmit(udp(1600, false)) // over MTU + 18: drop_mtu
	waitDelivered(t, sb, n)

	src := &fakeSource{d: Daemon{Starts: 2, RestoreSeconds: 0.25, QueuedBytes: 0}}
	src.set(webPair(p))
	m := New(src)
	exp := `
# HELP epair_transmit_packets_total Frames the end sent that were queued at its peer (if_epair OPACKETS).
# TYPE epair_transmit_packets_total counter
epair_transmit_packets_total{container_id="c0ffee",device="eth0",end="a",interface="eth0",pair="3",pod_name="web-0",pod_namespace="default"} 7
epair_transmit_packets_total{container_id="c0ffee",device="epair3b",end="b",interface="eth0",pair="3",pod_name="web-0",pod_namespace="default"} 0
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(exp), "epair_transmit_packets_total"); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`epair_transmit_bytes_total{` + podLabels + `,end="a",device="eth0"}`:                      n * size,
		`epair_transmit_multicast_packets_total{` + podLabels + `,end="a",device="eth0"}`:          1,
		`epair_receive_packets_total{` + podLabels + `,end="b",device="epair3b"}`:                  n,
		`epair_transmit_errors_total{` + podLabels + `,end="a",device="eth0"}`:                     1,
		`epair_transmit_drops_total{` + podLabels + `,end="a",device="eth0",reason="drop_mtu"}`:    1,
		`epair_transmit_drops_total{` + podLabels + `,end="a",device="eth0",reason="spoof_ip"}`:    0,
		`epair_transmit_drops_total{` + podLabels + `,end="a",device="eth0",reason="drop_shaped"}`: 0,
		`epair_queue_frames{` + podLabels + `,end="b",device="epair3b"}`:                           0,
		`epair_pair_forwarding{` + podLabels + `}`:                                                 1,
		`epair_pairs`:                                      1,
		`epair_daemon_starts_total`:                        2,
		`epair_restore_duration_seconds`:                   0.25,
		`epair_cni_commands_total{command="ADD",code="0"}`: 0,
	}
	got := scrape(t, m)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if s := p.A.Stats(); got[`epair_transmit_bytes_total{`+podLabels+`,end="a",device="eth0"}`] != float64(s.OBytes) {
		t.Errorf("bytes differ from the core's %d", s.OBytes)
	}
	// Every reason of the core is a series: NumDropReasons per end.
	if c := countPrefix(got, "epair_transmit_drops_total{"); c != 2*int(epair.NumDropReasons) {
		t.Errorf("%d drop series, want %d", c, 2*epair.NumDropReasons)
	}

	src.set()
	got = scrape(t, m)
	if c := countPrefix(got, "epair_transmit_packets_total"); c != 0 {
		t.Errorf("pair gone from the source, %d series left", c)
	}
	if got["epair_pairs"] != 0 {
		t.Errorf("epair_pairs = %v after the pair went", got["epair_pairs"])
	}
}

// TestCollectorShaperAndUnattachedPair: a shaped end has its rate and burst
// in bytes; an unshaped one has none; a pair not attached has only its
// forwarding 0.
func TestCollectorShaperAndUnattachedPair(t *testing.T) {
	p, _ := corePair(t)
	sh, err := epair.NewShaper(8_000_000, 80_000)
	if err != nil {
		t.Fatal(err)
	}
	p.A.SetShaper(sh)
	src := &fakeSource{d: Daemon{RestoreSeconds: -1}}
	src.set(webPair(p), Pair{Unit: 4, A: End{Device: "epair4a"}, B: End{Device: "epair4b"}})
	got := scrape(t, New(src))
	for k, v := range map[string]float64{
		`epair_shaper_rate_bytes_per_second{` + podLabels + `,end="a",device="eth0"}`: 1_000_000,
		`epair_shaper_burst_bytes{` + podLabels + `,end="a",device="eth0"}`:           10_000,
		`epair_pair_forwarding{pair="4"}`:                                             0,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, ok := got[`epair_shaper_rate_bytes_per_second{`+podLabels+`,end="b",device="epair3b"}`]; ok {
		t.Error("the unshaped b end has a rate")
	}
	if _, ok := got["epair_restore_duration_seconds"]; ok {
		t.Error("restore duration shown while the restore runs")
	}
	for k := range got {
		if strings.Contains(k, `pair="4"`) && !strings.HasPrefix(k, "epair_pair_forwarding") {
			t.Errorf("unattached pair has %s", k)
		}
	}
}

// TestExpositionPassesPromlint: the exposition follows Prometheus' naming
// rules as promtool checks them.
func TestExpositionPassesPromlint(t *testing.T) {
	p, _ := corePair(t)
	sh, _ := epair.NewShaper(8_000_000, 80_000)
	p.B.SetShaper(sh)
	src := &fakeSource{}
	src.set(webPair(p))
	m := New(src)
	m.CNIResult(api.CNIResult{Command: "ADD", Code: 7})
	h := m.Instrument(http.NotFoundHandler())
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
}

// TestInstrumentCountsByVerbAndCode: the middleware labels each request
// with the route the mux matched and the status written, and lets a
// streaming handler flush.
func TestInstrumentCountsByVerbAndCode(t *testing.T) {
	m := New(&fakeSource{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pairs/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "nope" {
			http.Error(w, "no such pair", http.StatusNotFound)
			return
		}
		w.Write([]byte("{}"))
	})
	mux.HandleFunc("GET /v1/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("a"))
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the middleware: %v", err)
		}
	})
	h := m.Instrument(mux)
	for _, path := range []string{"/v1/pairs/1", "/v1/pairs/2", "/v1/pairs/nope", "/v1/stream", "/nowhere"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	got := scrape(t, m)
	for k, v := range map[string]float64{
		`epair_api_requests_total{verb="GET /v1/pairs/{id}",code="200"}`:      2,
		`epair_api_requests_total{verb="GET /v1/pairs/{id}",code="404"}`:      1,
		`epair_api_requests_total{verb="GET /v1/stream",code="200"}`:          1,
		`epair_api_requests_total{verb="unmatched",code="404"}`:               1,
		`epair_api_request_duration_seconds_count{verb="GET /v1/pairs/{id}"}`: 3,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestCheckAddr(t *testing.T) {
	for _, a := range []string{"127.0.0.1:9808", "[::1]:9808", ":9808", "0.0.0.0:1", "10.0.0.1:65535"} {
		if err := CheckAddr(a); err != nil {
			t.Errorf("%q refused: %v", a, err)
		}
	}
	for _, a := range []string{"", "9808", "127.0.0.1", "localhost:9808", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http", "[::1]:x", "1.2.3.4:-1"} {
		if err := CheckAddr(a); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
}

// TestListenPortInUse: a taken port is an error that says so, after the
// retry window.
func TestListenPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	_, err = Listen(l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("listen on a taken port: %v", err)
	}
	if d := time.Since(start); d < listenRetry {
		t.Errorf("gave up after %v, before the retry window %v", d, listenRetry)
	}
}

// TestServeExposition: Serve answers GET /metrics with the text format.
func TestServeExposition(t *testing.T) {
	l, err := Listen("127.0.0.1:" + freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	s := Serve(l, New(&fakeSource{}))
	defer s.Shutdown(t.Context())
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(b.String(), "\nepair_pairs 0\n") {
		t.Fatalf("status %d, body:\n%.400s", resp.StatusCode, b.String())
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// scrape gathers m into "name{labels}" -> value (label order as declared,
// histogram counts as name_count).
func scrape(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var ls []string
			for _, lp := range mt.GetLabel() {
				ls = append(ls, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			key := mf.GetName()
			if len(ls) > 0 {
				key += "{" + strings.Join(orderLabels(ls), ",") + "}"
			}
			switch {
			case mt.Counter != nil:
				out[key] = mt.GetCounter().GetValue()
			case mt.Gauge != nil:
				out[key] = mt.GetGauge().GetValue()
			case mt.Histogram != nil:
				out[strings.Replace(key, mf.GetName(), mf.GetName()+"_count", 1)] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// labelOrder is the order the tests write labels in.
var labelOrder = []string{"pod_namespace", "pod_name", "container_id", "interface", "pair", "end", "device", "reason", "verb", "command", "code"}

// orderLabels sorts name="value" pairs by labelOrder (Gather sorts them
// by name); others (the Go collector's) follow as they were.
func orderLabels(ls []string) []string {
	var out, rest []string
	for _, name := range labelOrder {
		for _, l := range ls {
			if strings.HasPrefix(l, name+"=") {
				out = append(out, l)
			}
		}
	}
	for _, l := range ls {
		if !slices.Contains(out, l) {
			rest = append(rest, l)
		}
	}
	return append(out, rest...)
}

func countPrefix(m map[string]float64, prefix string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

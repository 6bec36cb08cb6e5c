package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the daemon's registry: the Source's collector, the API's
// request counters and latencies, the CNI results, and the Go runtime's and
// the process's standard collectors.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	cni      *prometheus.CounterVec
	lost     prometheus.Counter
}

// latencyBuckets span the API's answers, from a List of a few pairs
// (~0.1 ms) to a create under load (seconds).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New returns the registry of src's metrics and the daemon's own.
func New(src Source) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "epair_api_requests_total",
			Help: "Requests the daemon's API answered, by verb (the route, as METHOD PATH) and HTTP status code.",
		}, []string{"verb", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "epair_api_request_duration_seconds",
			Help:    "Time the daemon's API took to answer, by verb, from the request's headers to the end of the answer.",
			Buckets: latencyBuckets,
		}, []string{"verb"}),
		cni: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "epair_cni_commands_total",
			Help: "CNI commands of the epair plugin on this node, by command and CNI error code (0: success), as the plugin reports them when it ends; one whose report cannot reach the daemon (the daemon is down: code 11) is not counted.",
		}, []string{"command", "code"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "epair_capture_lost_frames_total",
			Help: "Frames captures (epair capture) could not keep because their buffer was full, counted when each capture ends.",
		}),
	}
	for _, c := range api.CNICommands {
		m.cni.WithLabelValues(c, "0") // the successes are there at 0 before the first
	}
	m.reg.MustRegister(NewCollector(src), m.requests, m.latency, m.cni, m.lost,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the exposition (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// CNIResult counts one CNI command's result; r must be valid
// (api.CNIResult.Validate).
func (m *Metrics) CNIResult(r api.CNIResult) {
	m.cni.WithLabelValues(r.Command, strconv.FormatUint(uint64(r.Code), 10)).Inc()
}

// CaptureLost counts the frames an ended capture lost.
func (m *Metrics) CaptureLost(n uint64) { m.lost.Add(float64(n)) }

// Instrument counts the requests next answers and times them, by verb: the
// pattern of the route http.ServeMux matched (r.Pattern, set while next
// runs), "unmatched" when none did or the request was refused before.
func (m *Metrics) Instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		verb := r.Pattern
		if verb == "" {
			verb = "unmatched"
		}
		m.requests.WithLabelValues(verb, strconv.Itoa(rec.status)).Inc()
		m.latency.WithLabelValues(verb).Observe(time.Since(start).Seconds())
	})
}

// statusRecorder remembers the status a handler wrote. It passes Flush on
// (a streaming answer flushes as it goes) and unwraps for
// http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

// Flush flushes the answer so far, when the writer can.
func (s *statusRecorder) Flush() {
	s.wroteHeader = true
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap returns the writer underneath, for http.ResponseController.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

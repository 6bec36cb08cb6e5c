// Package metrics exposes the epair daemon to Prometheus: the queue core's
// counters of every pair's ends, read at scrape time (the datapath counts
// nothing for the metrics, so a frame is never counted twice), and the
// daemon's own (API requests, CNI results, starts, re-attach time).
package metrics

import (
	"strconv"

	"github.com/epair-cni/epair/pkg/epair"
	"github.com/prometheus/client_golang/prometheus"
)

// Pair is what a scrape reads of one pair: who it belongs to and its ends.
type Pair struct {
	Unit int
	// PodNamespace, PodName, ContainerID and Interface (CNI_IFNAME) are the
	// CNI attachment's; empty for a pair made by hand (Prometheus drops an
	// empty label).
	PodNamespace, PodName, ContainerID, Interface string
	A, B                                          End
}

// End is one end of a Pair: its interface name and the core's End, nil
// while the pair is not attached (a restore failed, or is still at it).
type End struct {
	Device string
	End    *epair.End
}

// Daemon is what a scrape reads of the daemon as a whole.
type Daemon struct {
	// Starts counts the daemons that started on this state dir, this one
	// included.
	Starts uint64
	// RestoreSeconds is how long this daemon took to re-attach the pairs
	// of its state; negative while it still is.
	RestoreSeconds float64
	// QueuedBytes is the core's buffer bytes in all queues.
	QueuedBytes int64
}

// Source is what the collector reads at each scrape: the daemon's Manager.
type Source interface {
	MetricPairs() []Pair
	MetricDaemon() Daemon
}

// The labels of a pair's series, and an end's.
var (
	pairLabels = []string{"pod_namespace", "pod_name", "container_id", "interface", "pair"}
	endLabels  = append(append([]string{}, pairLabels...), "end", "device")
)

// endCounter is one of if_epair's counters of an End.
type endCounter struct {
	desc  *prometheus.Desc
	value func(*epair.Stats) uint64
}

func newEndCounter(name, help string, value func(*epair.Stats) uint64) endCounter {
	return endCounter{prometheus.NewDesc("epair_"+name, help, endLabels, nil), value}
}

// endCounters are if_epair's counters, named as node_exporter names an
// interface's. An end's transmit is what its side sends into the cable (the
// a end's: what the pod sends), its receive what the cable queued towards it.
var endCounters = []endCounter{
	newEndCounter("transmit_packets_total", "Frames the end sent that were queued at its peer (if_epair OPACKETS).",
		func(s *epair.Stats) uint64 { return s.OPackets }),
	newEndCounter("transmit_bytes_total", "Bytes of the frames counted in epair_transmit_packets_total (OBYTES).",
		func(s *epair.Stats) uint64 { return s.OBytes }),
	newEndCounter("transmit_multicast_packets_total", "Multicast and broadcast frames among epair_transmit_packets_total (OMCASTS).",
		func(s *epair.Stats) uint64 { return s.OMcasts }),
	newEndCounter("transmit_errors_total", "Frames the end sent that the MTU or link rule dropped (OERRORS: the reasons drop_mtu and drop_down of epair_transmit_drops_total).",
		func(s *epair.Stats) uint64 { return s.OErrors }),
	newEndCounter("transmit_queue_drops_total", "Frames the end sent that found no room in the peer's queue (OQDROPS: the reasons drop_queue_full and drop_shaped of epair_transmit_drops_total).",
		func(s *epair.Stats) uint64 { return s.OQDrops }),
	newEndCounter("receive_packets_total", "Frames queued towards the end (IPACKETS, counted when queued, as if_epair does).",
		func(s *epair.Stats) uint64 { return s.IPackets }),
	newEndCounter("receive_bytes_total", "Bytes of the frames counted in epair_receive_packets_total.",
		func(s *epair.Stats) uint64 { return s.IBytes }),
	newEndCounter("receive_errors_total", "Frames queued towards the end that could not be written into its TAP (IERRORS).",
		func(s *epair.Stats) uint64 { return s.IErrors }),
}

var (
	dropsDesc = prometheus.NewDesc("epair_transmit_drops_total",
		"Frames the end sent that the core dropped, by reason (every drop counted once; spoof_* are the anti-spoofing filter's).",
		append(append([]string{}, endLabels...), "reason"), nil)
	queueDesc = prometheus.NewDesc("epair_queue_frames",
		"Frames waiting in the end's receive queues.", endLabels, nil)
	rateDesc = prometheus.NewDesc("epair_shaper_rate_bytes_per_second",
		"Rate of the token bucket shaping the frames delivered to the end (the a end: the pod's ingress; the b end: its egress); absent when unshaped.", endLabels, nil)
	burstDesc = prometheus.NewDesc("epair_shaper_burst_bytes",
		"Burst (bucket size) of the shaper of epair_shaper_rate_bytes_per_second.", endLabels, nil)
	forwardingDesc = prometheus.NewDesc("epair_pair_forwarding",
		"1 while the datapath carries frames for the pair, 0 when it does not (an end's device is gone, or it is being re-attached).", pairLabels, nil)
	pairsDesc = prometheus.NewDesc("epair_pairs",
		"Pairs the daemon has (made and not being deleted).", nil, nil)
	startsDesc = prometheus.NewDesc("epair_daemon_starts_total",
		"Daemons started on this state dir, this one included (kept in the state: restarts are this less 1).", nil, nil)
	restoreDesc = prometheus.NewDesc("epair_restore_duration_seconds",
		"How long this daemon took, after its start, to re-attach every pair of its state; absent while it still is.", nil, nil)
	queuedDesc = prometheus.NewDesc("epair_queued_bytes",
		"Buffer bytes of the frames waiting in all queues of the core (bounded by --max-queued-bytes).", nil, nil)
)

// collector reads a Source at every scrape. It keeps nothing between
// scrapes: a pair's series are there while the Source lists the pair.
type collector struct{ src Source }

// NewCollector returns a prometheus.Collector of src's pairs and daemon.
func NewCollector(src Source) prometheus.Collector { return collector{src} }

// Describe sends every Desc the collector may send.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, ec := range endCounters {
		ch <- ec.desc
	}
	for _, d := range []*prometheus.Desc{dropsDesc, queueDesc, rateDesc, burstDesc, forwardingDesc, pairsDesc, startsDesc, restoreDesc, queuedDesc} {
		ch <- d
	}
}

// Collect reads the pairs and the daemon now.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	pairs := c.src.MetricPairs()
	ch <- prometheus.MustNewConstMetric(pairsDesc, prometheus.GaugeValue, float64(len(pairs)))
	for i := range pairs {
		collectPair(ch, &pairs[i])
	}
	d := c.src.MetricDaemon()
	ch <- prometheus.MustNewConstMetric(startsDesc, prometheus.CounterValue, float64(d.Starts))
	if d.RestoreSeconds >= 0 {
		ch <- prometheus.MustNewConstMetric(restoreDesc, prometheus.GaugeValue, d.RestoreSeconds)
	}
	ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(d.QueuedBytes))
}

func collectPair(ch chan<- prometheus.Metric, p *Pair) {
	labels := []string{p.PodNamespace, p.PodName, p.ContainerID, p.Interface, strconv.Itoa(p.Unit)}
	forwarding := 0.0
	if a, b := p.A.End, p.B.End; a != nil && b != nil && a.Running() && b.Running() {
		forwarding = 1
	}
	ch <- prometheus.MustNewConstMetric(forwardingDesc, prometheus.GaugeValue, forwarding, labels...)
	collectEnd(ch, labels, "a", &p.A)
	collectEnd(ch, labels, "b", &p.B)
}

// collectEnd sends one end's series; an end not attached has none.
func collectEnd(ch chan<- prometheus.Metric, pairLabels []string, side string, e *End) {
	if e.End == nil {
		return
	}
	labels := append(append(make([]string, 0, len(endLabels)+1), pairLabels...), side, e.Device)
	s := e.End.Stats()
	for _, ec := range endCounters {
		ch <- prometheus.MustNewConstMetric(ec.desc, prometheus.CounterValue, float64(ec.value(&s)), labels...)
	}
	for r := epair.DropReason(0); r < epair.NumDropReasons; r++ {
		ch <- prometheus.MustNewConstMetric(dropsDesc, prometheus.CounterValue, float64(s.Drop(r)), append(labels, r.String())...)
	}
	ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(e.End.QueueLen()), labels...)
	if sh := e.End.Shaper(); sh != nil {
		ch <- prometheus.MustNewConstMetric(rateDesc, prometheus.GaugeValue, float64(sh.Rate())/8, labels...)
		ch <- prometheus.MustNewConstMetric(burstDesc, prometheus.GaugeValue, float64(sh.Burst())/8, labels...)
	}
}

package daemon

import (
	"log/slog"

	"github.com/epair-cni/epair/pkg/metrics"
	"github.com/epair-cni/epair/pkg/state"
)

// countStart adds this start to the state's count (the metrics' restarts).
// A state that cannot be saved now does not stop the daemon: the pairs of
// running pods are re-attached all the same, only the count is not kept.
func (m *Manager) countStart() {
	m.st.Starts++
	if err := m.store.Save(m.st); err != nil {
		slog.Warn("the start is not counted in the state", "err", err)
	}
}

// MetricPairs lists the pairs made and not being deleted, with their
// owners and the core's Ends, for a scrape (metrics.Source). The counters
// are read by the collector after the lock is released.
func (m *Manager) MetricPairs() []metrics.Pair {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]metrics.Pair, 0, len(m.st.Pairs))
	for _, p := range m.st.Pairs {
		if p.Phase != state.Ready {
			continue
		}
		mp := metrics.Pair{Unit: p.Unit, A: metrics.End{Device: p.A.Name}, B: metrics.End{Device: p.B.Name}}
		if o := p.Owner; o != nil {
			mp.ContainerID, mp.Interface = o.ContainerID, o.IfName
			if o.Pod != nil {
				mp.PodNamespace, mp.PodName = o.Pod.Namespace, o.Pod.Name
			}
		}
		if l := m.links[p.Unit]; l != nil {
			mp.A.End, mp.B.End = l.Pair.A, l.Pair.B
		}
		out = append(out, mp)
	}
	return out
}

// MetricDaemon is the daemon-wide part of a scrape (metrics.Source).
func (m *Manager) MetricDaemon() metrics.Daemon {
	m.mu.Lock()
	starts := m.st.Starts
	m.mu.Unlock()
	d := metrics.Daemon{Starts: starts, QueuedBytes: m.core.QueuedBytes(), RestoreSeconds: -1}
	if took := m.restoreTook.Load(); took >= 0 {
		d.RestoreSeconds = float64(took) / 1e9
	}
	return d
}

package audit

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the audit log's Prometheus metrics (docs/metrics.md).
type Metrics struct {
	received, acknowledged, sealed, segments prometheus.Counter
	refused, walFailures, segmentFailures    prometheus.Counter
	walBytes, walEvents, oldestAge           prometheus.Gauge
	lastSealed, receiving                    prometheus.Gauge
}

// SetReceiving says whether the intake (the webhook listener or the file
// reader) is running.
func (m *Metrics) SetReceiving(on bool) {
	if on {
		m.receiving.Set(1)
	} else {
		m.receiving.Set(0)
	}
}

// NewMetrics makes the metrics of one AuditLog and registers them with reg
// (nil: not registered).
func NewMetrics(reg prometheus.Registerer, log ...string) *Metrics {
	labels := prometheus.Labels{}
	if len(log) > 0 {
		labels["log"] = log[0]
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "lifeboat", Subsystem: "audit", Name: name, Help: help, ConstLabels: labels})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "lifeboat", Subsystem: "audit", Name: name, Help: help, ConstLabels: labels})
	}
	m := &Metrics{
		received:        c("events_received_total", "Audit events received from the API server in well-formed batches."),
		acknowledged:    c("events_acknowledged_total", "Audit events acknowledged: appended to the write-ahead log and fsynced."),
		sealed:          c("events_sealed_total", "Audit events sealed into committed segments in the store."),
		segments:        c("segments_sealed_total", "Audit segments committed in the store."),
		refused:         c("batches_refused_total", "Batches refused as not being an audit.k8s.io/v1 EventList."),
		walFailures:     c("wal_append_failures_total", "Batches not acknowledged because the write-ahead log could not be written."),
		segmentFailures: c("segment_write_failures_total", "Attempts to seal a segment that failed (retried with backoff)."),
		walBytes:        g("wal_bytes", "Bytes of audit events in the write-ahead log, not yet sealed."),
		walEvents:       g("wal_events", "Audit events in the write-ahead log, not yet sealed."),
		oldestAge:       g("oldest_unsealed_event_age_seconds", "Age of the oldest acknowledged audit event not yet sealed; 0 when none waits."),
		lastSealed:      g("last_sealed_timestamp_seconds", "When the newest segment was sealed (Unix time)."),
		receiving:       g("receiving", "1 while the audit intake (webhook listener or file reader) runs; 0 while the audit log cannot start or its intake is being retried."),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.received, m.acknowledged, m.sealed, m.segments, m.refused, m.walFailures,
			m.segmentFailures, m.walBytes, m.walEvents, m.oldestAge, m.lastSealed, m.receiving} {
			reg.MustRegister(col)
		}
	}
	return m
}

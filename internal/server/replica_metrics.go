package server

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// replicaLagCollector reports lifeboat_replica_lag_seconds{plan,store}
// at scrape time: now minus the completion of the oldest backup of the
// plan not yet replicated to the store (docs/format.md §9.4), 0 when the
// replica is caught up, so the lag grows between passes without anyone
// updating it.
type replicaLagCollector struct {
	now  func() time.Time
	desc *prometheus.Desc

	mu     sync.Mutex
	behind map[[2]string]time.Time // {plan, store} → behind since; zero: caught up
}

func newReplicaLagCollector(now func() time.Time) *replicaLagCollector {
	return &replicaLagCollector{
		now: now,
		desc: prometheus.NewDesc("lifeboat_replica_lag_seconds",
			"How far the replica store is behind the plan's store, computed at scrape: the age of the completion of the oldest backup not yet replicated there (retention not ended), 0 when every backup is.",
			[]string{"plan", "store"}, nil),
		behind: map[[2]string]time.Time{},
	}
}

var _ prometheus.Collector = (*replicaLagCollector)(nil)

func (c *replicaLagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *replicaLagCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, t := range c.behind {
		lag := 0.0
		if !t.IsZero() {
			lag = max(now.Sub(t).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, lag, k[0], k[1])
	}
}

// retain drops the series of plans and stores no longer configured.
func (c *replicaLagCollector) retain(plans, stores []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.behind {
		if !slices.Contains(plans, k[0]) || !slices.Contains(stores, k[1]) {
			delete(c.behind, k)
		}
	}
}

// ReplicaBehind records that the plan's replica store is behind since t
// (the completion of the oldest backup not replicated there); the zero
// time means caught up. lifeboat_replica_lag_seconds is computed from it
// at scrape.
func (m *Metrics) ReplicaBehind(plan, store string, t time.Time) {
	m.replicaLag.mu.Lock()
	m.replicaLag.behind[[2]string{plan, store}] = t
	m.replicaLag.mu.Unlock()
}

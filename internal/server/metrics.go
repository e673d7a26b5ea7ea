package server

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label values the service passes. Other values are accepted and exported
// as they are; these are the ones docs/metrics.md promises.
var (
	// outcomes of a run; lifeboat_schedule_last_outcome keeps one series
	// per outcome so that a dashboard can show the current one.
	outcomes = []string{"success", "failure", "partial", "abandoned"}
	// drillTargets are the targets of lifeboat_drill_target_met.
	drillTargets = []string{"rto", "rpo", "checks"}
)

// Buckets of lifeboat_run_duration_seconds: a manifests export takes
// seconds, a volume backup or a drill with a kind cluster can take hours.
var runBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800}

// Buckets of lifeboat_start_delay_seconds: a healthy service starts a tick
// well within a second; minutes mean a stalled loop or a lost lease.
var delayBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900}

// Metrics holds lifeboat's Prometheus metrics in a registry of its own
// (never the process-wide default one). The service calls its setters as
// things happen and again, with the same values, while it rebuilds its
// state from the evidence log after a restart: every setter is
// idempotent except the ones that count events (RunFinished, Missed,
// RewrapFailures, ConfigLoaded). Ages (the live RPO and the KEK version
// age) are computed when scraped, from timestamps and the injected clock.
//
// The metrics and their labels are listed in docs/metrics.md. Methods are
// safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	runs          *prometheus.CounterVec
	runDuration   *prometheus.HistogramVec
	runsRunning   *prometheus.GaugeVec
	lastSuccess   *prometheus.GaugeVec
	nextRun       *prometheus.GaugeVec
	lastOutcome   *prometheus.GaugeVec
	missed        *prometheus.CounterVec
	startDelay    *prometheus.HistogramVec
	backupBytes   *prometheus.GaugeVec
	etcdRevision  *prometheus.GaugeVec
	rpoTarget     *prometheus.GaugeVec
	drillRTO      *prometheus.GaugeVec
	drillRPO      *prometheus.GaugeVec
	drillWorstGap *prometheus.GaugeVec
	drillMet      *prometheus.GaugeVec
	rewrapFail    *prometheus.CounterVec
	storeUp       *prometheus.GaugeVec
	storeTampered *prometheus.GaugeVec
	leader        prometheus.Gauge
	configValid   prometheus.Gauge
	reloads       *prometheus.CounterVec

	ages       *ageCollector
	replicaLag *replicaLagCollector

	mu sync.Mutex
	// running counts the runs in progress per kind and schedule, so that a
	// RunFinished without its RunStarted (after a restart) never drives the
	// gauge below zero.
	running map[[2]string]int
	// outcomesSeen lists the outcomes set per schedule, so that setting a
	// new one zeroes every other.
	outcomesSeen map[string]map[string]bool
	// sources lists the sources reported per plan, so that a source
	// dropped from a plan loses its series.
	sources map[string]map[string]bool
	// names seen per label, for Retain.
	schedules, plans, drills, providers, stores map[string]bool
}

// NewMetrics returns Metrics registered in a new registry that also holds
// the Go runtime and process collectors. now is the clock the at-scrape
// ages are computed with; nil means time.Now.
func NewMetrics(now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "lifeboat", Name: name, Help: help}, labels)
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "lifeboat", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		runs: counter("runs_total",
			"Runs finished, by kind (backup, rotation, drill), schedule and outcome (success, failure, partial, abandoned).",
			"kind", "schedule", "outcome"),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "lifeboat", Name: "run_duration_seconds",
			Help:    "Wall time of finished runs, by kind and schedule.",
			Buckets: runBuckets,
		}, []string{"kind", "schedule"}),
		runsRunning: gauge("runs_in_progress", "Runs in progress, by kind and schedule.", "kind", "schedule"),
		lastSuccess: gauge("schedule_last_success_timestamp_seconds",
			"Unix time at which the schedule's last successful run finished.", "schedule"),
		nextRun: gauge("schedule_next_run_timestamp_seconds",
			"Unix time of the schedule's next tick; absent while suspended.", "schedule"),
		lastOutcome: gauge("schedule_last_outcome",
			"1 for the outcome of the schedule's last finished run, 0 for the other outcomes.", "schedule", "outcome"),
		missed: counter("missed_ticks_total",
			"Ticks of a schedule that did not run, by reason (each is also a signed schedule evidence record).",
			"schedule", "reason"),
		startDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "lifeboat", Name: "start_delay_seconds",
			Help:    "Time from a schedule's nominal tick to the start of its run.",
			Buckets: delayBuckets,
		}, []string{"schedule"}),
		backupBytes: gauge("backup_bytes",
			"Stored (compressed, encrypted) bytes of each source in the plan's last committed backup.", "plan", "source"),
		etcdRevision: gauge("etcd_snapshot_revision",
			"etcd revision of the snapshot in the plan's last committed backup.", "plan"),
		rpoTarget: gauge("plan_rpo_target_seconds",
			"RPO target of the plan (targets.rpo of a drill of the plan), to compare the live RPO with.", "plan"),
		drillRTO: gauge("drill_rto_seconds",
			"RTO measured by the drill's last run: drill start to every check passed.", "drill"),
		drillRPO: gauge("drill_rpo_seconds",
			"RPO measured by the drill's last run: incident time minus the restored data's point in time.", "drill"),
		drillWorstGap: gauge("drill_worst_gap_seconds",
			"Worst gap between consecutive successful backups in the drill's last run's window.", "drill"),
		drillMet: gauge("drill_target_met",
			"1 when the drill's last run met the target (rto, rpo, checks), 0 when it missed it.", "drill", "target"),
		rewrapFail: counter("rewrap_failures_total",
			"Backups whose data key a rotation failed to rewrap under the new KEK version.", "key_provider"),
		storeUp: gauge("store_reachable", "1 when the store answered its last probe, 0 when it did not.", "store"),
		storeTampered: gauge("store_tampered_keys",
			"Keys holding an object version or delete marker lifeboat did not write, at the store's last version audit (S3 stores only).", "store"),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "lifeboat", Name: "leader",
			Help: "1 while this replica holds the lease and runs the schedules, 0 on standby."}),
		configValid: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "lifeboat", Name: "config_valid",
			Help: "1 when the last configuration load succeeded, 0 when it failed (the service keeps the previous one)."}),
		reloads: counter("config_reloads_total",
			"Configuration loads, the first one included, by result (success, failure).", "result"),
		ages: &ageCollector{
			now:    now,
			newest: map[string]time.Time{},
			kek:    map[string]time.Time{},
			newestDesc: prometheus.NewDesc("lifeboat_backup_newest_verified_age_seconds",
				"Age of the newest verified backup's point in time, per plan, computed at scrape: the live RPO.",
				[]string{"plan"}, nil),
			kekDesc: prometheus.NewDesc("lifeboat_kek_version_age_seconds",
				"Age of the key provider's primary KEK version, computed at scrape.",
				[]string{"key_provider"}, nil),
		},
		replicaLag:   newReplicaLagCollector(now),
		running:      map[[2]string]int{},
		outcomesSeen: map[string]map[string]bool{},
		sources:      map[string]map[string]bool{},
		schedules:    map[string]bool{},
		plans:        map[string]bool{},
		drills:       map[string]bool{},
		providers:    map[string]bool{},
		stores:       map[string]bool{},
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.runs, m.runDuration, m.runsRunning, m.lastSuccess, m.nextRun, m.lastOutcome,
		m.missed, m.startDelay, m.backupBytes, m.etcdRevision, m.rpoTarget,
		m.drillRTO, m.drillRPO, m.drillWorstGap, m.drillMet,
		m.rewrapFail, m.storeUp, m.storeTampered, m.leader, m.configValid, m.reloads,
		m.ages, m.replicaLag,
	)
	return m
}

// Registry returns the registry the metrics are registered in, for
// /metrics (promhttp.HandlerFor) and for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RunStarted counts a run of the schedule as in progress.
func (m *Metrics) RunStarted(kind, schedule string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.schedules[schedule] = true
	k := [2]string{kind, schedule}
	m.running[k]++
	m.runsRunning.WithLabelValues(kind, schedule).Set(float64(m.running[k]))
}

// StartDelay records how late a run started after its nominal tick.
func (m *Metrics) StartDelay(schedule string, d time.Duration) {
	m.mark(m.schedules, schedule)
	m.startDelay.WithLabelValues(schedule).Observe(d.Seconds())
}

// RunFinished counts a finished run with its outcome and duration, ends
// one run in progress, and sets the schedule's last outcome (SetLastOutcome).
// It does not set the last success time: the caller knows when the run
// finished (SetLastSuccess).
func (m *Metrics) RunFinished(kind, schedule, outcome string, d time.Duration) {
	m.mu.Lock()
	m.schedules[schedule] = true
	k := [2]string{kind, schedule}
	if m.running[k] > 0 {
		m.running[k]--
	}
	m.runsRunning.WithLabelValues(kind, schedule).Set(float64(m.running[k]))
	m.mu.Unlock()
	m.runs.WithLabelValues(kind, schedule, outcome).Inc()
	m.runDuration.WithLabelValues(kind, schedule).Observe(d.Seconds())
	m.SetLastOutcome(schedule, outcome)
}

// SetLastOutcome sets the schedule's last outcome: 1 for outcome, 0 for
// every other outcome (each known one, and any other set before).
func (m *Metrics) SetLastOutcome(schedule, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.schedules[schedule] = true
	seen := m.outcomesSeen[schedule]
	if seen == nil {
		seen = map[string]bool{}
		for _, o := range outcomes {
			seen[o] = true
		}
		m.outcomesSeen[schedule] = seen
	}
	seen[outcome] = true
	for o := range seen {
		v := 0.0
		if o == outcome {
			v = 1
		}
		m.lastOutcome.WithLabelValues(schedule, o).Set(v)
	}
}

// SetLastSuccess sets when the schedule's last successful run finished.
// A zero t (never succeeded) removes the series.
func (m *Metrics) SetLastSuccess(schedule string, t time.Time) {
	m.mark(m.schedules, schedule)
	setTime(m.lastSuccess, schedule, t)
}

// SetNext sets the schedule's next tick. A zero t (suspended, or no next
// tick) removes the series.
func (m *Metrics) SetNext(schedule string, t time.Time) {
	m.mark(m.schedules, schedule)
	setTime(m.nextRun, schedule, t)
}

func setTime(g *prometheus.GaugeVec, label string, t time.Time) {
	if t.IsZero() {
		g.DeleteLabelValues(label)
		return
	}
	g.WithLabelValues(label).Set(float64(t.UnixNano()) / 1e9)
}

// Missed counts a tick of the schedule that did not run, and why
// (for example "not-leader", "claimed-elsewhere", "deadline-exceeded",
// "concurrency-forbid", "suspended"; the service picks the words).
func (m *Metrics) Missed(schedule, reason string) {
	m.mark(m.schedules, schedule)
	m.missed.WithLabelValues(schedule, reason).Inc()
}

// BackupCommitted records a committed, verified backup of the plan: the
// stored bytes of each of its sources (sources reported before and absent
// now lose their series), the etcd snapshot's revision (0 when the plan
// has no etcd source, which removes the series) and the point in time the
// backup reflects. The newest point in time only moves forward, so
// replaying older backups while rebuilding state changes nothing.
func (m *Metrics) BackupCommitted(plan string, bytesBySource map[string]int64, etcdRevision int64, pointInTime time.Time) {
	m.mu.Lock()
	m.plans[plan] = true
	old := m.sources[plan]
	now := make(map[string]bool, len(bytesBySource))
	for src, n := range bytesBySource {
		now[src] = true
		m.backupBytes.WithLabelValues(plan, src).Set(float64(n))
	}
	for src := range old {
		if !now[src] {
			m.backupBytes.DeleteLabelValues(plan, src)
		}
	}
	m.sources[plan] = now
	m.mu.Unlock()
	if etcdRevision > 0 {
		m.etcdRevision.WithLabelValues(plan).Set(float64(etcdRevision))
	} else {
		m.etcdRevision.DeleteLabelValues(plan)
	}
	if !pointInTime.IsZero() {
		m.ages.mu.Lock()
		if pointInTime.After(m.ages.newest[plan]) {
			m.ages.newest[plan] = pointInTime
		}
		m.ages.mu.Unlock()
	}
}

// PlanTarget sets the plan's RPO target, so that an alert can compare
// the live RPO with it (docs/metrics.md). 0 (no target) removes the series.
func (m *Metrics) PlanTarget(plan string, rpo time.Duration) {
	m.mark(m.plans, plan)
	if rpo <= 0 {
		m.rpoTarget.DeleteLabelValues(plan)
		return
	}
	m.rpoTarget.WithLabelValues(plan).Set(rpo.Seconds())
}

// DrillFinished records a drill's last run: its RTO, RPO and worst backup
// gap in milliseconds (nil when not measured, which removes the series)
// and, per target ("rto", "rpo", "checks"), whether the run met it; a
// target absent from met loses its series.
func (m *Metrics) DrillFinished(drill string, rtoMs, rpoMs, worstGapMs *int64, met map[string]bool) {
	m.mark(m.drills, drill)
	for _, g := range []struct {
		vec *prometheus.GaugeVec
		ms  *int64
	}{{m.drillRTO, rtoMs}, {m.drillRPO, rpoMs}, {m.drillWorstGap, worstGapMs}} {
		if g.ms == nil {
			g.vec.DeleteLabelValues(drill)
			continue
		}
		g.vec.WithLabelValues(drill).Set(float64(*g.ms) / 1000)
	}
	for _, target := range drillTargets {
		if _, ok := met[target]; !ok {
			m.drillMet.DeleteLabelValues(drill, target)
		}
	}
	for target, ok := range met {
		m.drillMet.WithLabelValues(drill, target).Set(boolValue(ok))
	}
}

// KEKAge records when the key provider's primary KEK version was
// created; lifeboat_kek_version_age_seconds is computed from it at scrape.
// A zero created (unknown) removes the series.
func (m *Metrics) KEKAge(provider string, created time.Time) {
	m.mark(m.providers, provider)
	m.ages.mu.Lock()
	defer m.ages.mu.Unlock()
	if created.IsZero() {
		delete(m.ages.kek, provider)
		return
	}
	m.ages.kek[provider] = created
}

// RewrapFailures counts n backups a rotation failed to rewrap.
func (m *Metrics) RewrapFailures(provider string, n int) {
	m.mark(m.providers, provider)
	c := m.rewrapFail.WithLabelValues(provider)
	if n > 0 {
		c.Add(float64(n))
	}
}

// StoreReachable records whether the store answered its last probe.
func (m *Metrics) StoreReachable(store string, ok bool) {
	m.mark(m.stores, store)
	m.storeUp.WithLabelValues(store).Set(boolValue(ok))
}

// StoreTampered records how many keys of the store hold versions or
// delete markers lifeboat did not write (store.VersionAuditor).
func (m *Metrics) StoreTampered(store string, keys int) {
	m.mark(m.stores, store)
	m.storeTampered.WithLabelValues(store).Set(float64(keys))
}

// SetLeader records whether this replica holds the lease.
func (m *Metrics) SetLeader(leader bool) { m.leader.Set(boolValue(leader)) }

// ConfigLoaded counts a configuration load (the first one included) and
// records whether it succeeded.
func (m *Metrics) ConfigLoaded(ok bool) {
	m.configValid.Set(boolValue(ok))
	result := "failure"
	if ok {
		result = "success"
	}
	m.reloads.WithLabelValues(result).Inc()
}

// Names are the objects of a configuration, by kind.
type Names struct {
	Schedules, Plans, Drills, KeyProviders, Stores []string
}

// Retain removes every series of a schedule, plan, drill, key provider or
// store that is not in keep, so that objects removed from the
// configuration by a reload disappear from /metrics instead of reporting
// their last value forever. Call it with the new configuration's names.
func (m *Metrics) Retain(keep Names) {
	m.mu.Lock()
	defer m.mu.Unlock()
	drop := func(seen map[string]bool, keep []string, label string, vecs ...*prometheus.MetricVec) []string {
		kept := make(map[string]bool, len(keep))
		for _, k := range keep {
			kept[k] = true
		}
		var gone []string
		for name := range seen {
			if kept[name] {
				continue
			}
			for _, v := range vecs {
				v.DeletePartialMatch(prometheus.Labels{label: name})
			}
			delete(seen, name)
			gone = append(gone, name)
		}
		return gone
	}
	for _, s := range drop(m.schedules, keep.Schedules, "schedule",
		m.runs.MetricVec, m.runDuration.MetricVec, m.runsRunning.MetricVec, m.lastSuccess.MetricVec,
		m.nextRun.MetricVec, m.lastOutcome.MetricVec, m.missed.MetricVec, m.startDelay.MetricVec) {
		delete(m.outcomesSeen, s)
		for k := range m.running {
			if k[1] == s {
				delete(m.running, k)
			}
		}
	}
	for _, p := range drop(m.plans, keep.Plans, "plan", m.backupBytes.MetricVec, m.etcdRevision.MetricVec, m.rpoTarget.MetricVec) {
		delete(m.sources, p)
		m.ages.mu.Lock()
		delete(m.ages.newest, p)
		m.ages.mu.Unlock()
	}
	drop(m.drills, keep.Drills, "drill",
		m.drillRTO.MetricVec, m.drillRPO.MetricVec, m.drillWorstGap.MetricVec, m.drillMet.MetricVec)
	for _, p := range drop(m.providers, keep.KeyProviders, "key_provider", m.rewrapFail.MetricVec) {
		m.ages.mu.Lock()
		delete(m.ages.kek, p)
		m.ages.mu.Unlock()
	}
	drop(m.stores, keep.Stores, "store", m.storeUp.MetricVec, m.storeTampered.MetricVec)
	m.replicaLag.retain(keep.Plans, keep.Stores)
}

func (m *Metrics) mark(set map[string]bool, name string) {
	m.mu.Lock()
	set[name] = true
	m.mu.Unlock()
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ageCollector reports ages computed at scrape time from the timestamps
// it holds, so that the live RPO grows between backups without anyone
// updating it.
type ageCollector struct {
	now                 func() time.Time
	newestDesc, kekDesc *prometheus.Desc

	mu     sync.Mutex
	newest map[string]time.Time // plan → newest verified backup's point in time
	kek    map[string]time.Time // key provider → primary version's creation time
}

var _ prometheus.Collector = (*ageCollector)(nil)

func (c *ageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.newestDesc
	ch <- c.kekDesc
}

func (c *ageCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for plan, t := range c.newest {
		ch <- prometheus.MustNewConstMetric(c.newestDesc, prometheus.GaugeValue, now.Sub(t).Seconds(), plan)
	}
	for provider, t := range c.kek {
		ch <- prometheus.MustNewConstMetric(c.kekDesc, prometheus.GaugeValue, now.Sub(t).Seconds(), provider)
	}
}

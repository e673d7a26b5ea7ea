package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// t0 is the tests' "now".
var t0 = time.Date(2026, 5, 4, 14, 3, 0, 0, time.UTC)

// clock is an injected clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixedStatus Status

func (s fixedStatus) Status(context.Context) Status { return Status(s) }

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHeadersOnEveryResponse(t *testing.T) {
	h := New(Options{Metrics: NewMetrics(nil), Status: fixedStatus(sampleStatus())})
	for _, path := range []string{"/", "/api/status", "/healthz", "/readyz", "/metrics", "/nope"} {
		r := get(t, h, http.MethodGet, path)
		csp := r.Header.Get("Content-Security-Policy")
		if !strings.HasPrefix(csp, "default-src 'none'; style-src 'sha256-") || !strings.Contains(csp, "img-src data:") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if strings.Contains(csp, "unsafe") || strings.Contains(csp, "script-src") {
			t.Errorf("%s: Content-Security-Policy %q allows more than styles and data: images", path, csp)
		}
		for k, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Cache-Control":          "no-store",
		} {
			if got := r.Header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
	}
	if r := get(t, h, http.MethodGet, "/nope"); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", r.StatusCode)
	}
}

func TestReadOnly(t *testing.T) {
	h := New(Options{Metrics: NewMetrics(nil), Status: fixedStatus(sampleStatus())})
	for _, path := range []string{"/", "/api/status", "/healthz", "/readyz", "/metrics"} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
			r := get(t, h, m, path)
			if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow \"GET, HEAD\"", m, path, r.StatusCode, r.Header.Get("Allow"))
			}
		}
		if r := get(t, h, http.MethodHead, path); r.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s: %d, want 200", path, r.StatusCode)
		}
	}
}

func TestHealthzAndReadyz(t *testing.T) {
	var notReady error
	h := New(Options{Ready: func(ctx context.Context) error { return notReady }})
	if r := get(t, h, http.MethodGet, "/healthz"); r.StatusCode != 200 || body(t, r) != "ok\n" {
		t.Errorf("/healthz: %d", r.StatusCode)
	}
	if r := get(t, h, http.MethodGet, "/readyz"); r.StatusCode != 200 || body(t, r) != "ok\n" {
		t.Errorf("/readyz while ready: %d", r.StatusCode)
	}
	notReady = errors.New("configuration not loaded: schedules/nightly.yaml:4: spec.cron: bad minute")
	r := get(t, h, http.MethodGet, "/readyz")
	if got := body(t, r); r.StatusCode != http.StatusServiceUnavailable ||
		got != "not ready: configuration not loaded: schedules/nightly.yaml:4: spec.cron: bad minute\n" {
		t.Errorf("/readyz while not ready: %d %q", r.StatusCode, got)
	}
	if r := get(t, h, http.MethodGet, "/healthz"); r.StatusCode != 200 {
		t.Errorf("/healthz while not ready: %d, want 200 (alive)", r.StatusCode)
	}
	// No Ready func: ready.
	if r := get(t, New(Options{}), http.MethodGet, "/readyz"); r.StatusCode != 200 {
		t.Errorf("/readyz with no Ready: %d", r.StatusCode)
	}
	// No Metrics: nothing at /metrics.
	if r := get(t, New(Options{}), http.MethodGet, "/metrics"); r.StatusCode != 404 {
		t.Errorf("/metrics with no Metrics: %d", r.StatusCode)
	}
}

func TestAPIStatus(t *testing.T) {
	st := sampleStatus()
	st.GeneratedAt = time.Time{} // the handler's clock fills it
	h := New(Options{Status: fixedStatus(st), Now: func() time.Time { return t0 }})
	r := get(t, h, http.MethodGet, "/api/status")
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	raw := body(t, r)
	var got Status
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatal(err)
	}
	if !got.GeneratedAt.Equal(t0) {
		t.Errorf("generatedAt %v, want %v", got.GeneratedAt, t0)
	}
	if len(got.Schedules) != len(st.Schedules) || got.Schedules[1].LastOutcome != "failure" {
		t.Errorf("schedules %+v", got.Schedules)
	}
	if got.Plans[0].LiveRPO != 92*time.Minute || got.Plans[1].LiveRPO != 25*time.Minute {
		t.Errorf("live RPO %v, %v; want 1h32m, 25m", got.Plans[0].LiveRPO, got.Plans[1].LiveRPO)
	}
	if got.Keys[0].Age != 75*24*time.Hour {
		t.Errorf("key age %v", got.Keys[0].Age)
	}
	if len(got.Drills[0].Phases) != 7 || got.Drills[0].RTOTarget != 15*time.Minute {
		t.Errorf("drill %+v", got.Drills[0])
	}
	for _, field := range []string{`"liveRpoNs": 5520000000000`, `"generatedAt": "2026-05-04T14:03:00Z"`, `"lastOutcome": "failure"`} {
		if !strings.Contains(raw, field) {
			t.Errorf("JSON lacks %s:\n%s", field, raw)
		}
	}
	// The source's slices are not written to.
	if st.Plans[0].LiveRPO != 0 {
		t.Errorf("handler wrote to the source's plans")
	}

	// An empty status has empty lists, not nulls.
	raw = body(t, get(t, New(Options{}), http.MethodGet, "/api/status"))
	for _, list := range []string{"schedules", "plans", "drills", "keys", "stores"} {
		if !strings.Contains(raw, `"`+list+`": []`) {
			t.Errorf("empty status: %s is not []:\n%s", list, raw)
		}
	}
}

func TestPage(t *testing.T) {
	h := New(Options{Status: fixedStatus(sampleStatus())})
	r := get(t, h, http.MethodGet, "/")
	if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	page := body(t, r)
	// The inline stylesheet is the one the CSP's hash names.
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no <style> in the page")
	}
	sum := sha256.Sum256([]byte(m[1]))
	if want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(r.Header.Get("Content-Security-Policy"), want) {
		t.Errorf("CSP %q does not name the page's stylesheet %s", r.Header.Get("Content-Security-Policy"), want)
	}
	// Nothing loads anything: no script, no source, no style attribute
	// (the CSP would refuse it), no stylesheet import.
	for _, bad := range []string{"<script", " src=", " style=", "@import", "url(", `rel="stylesheet"`} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, want := range []string{
		`<tr data-plan="nightly-full" class="over-target">`,
		`over target`,
		`<span class="badge bad">failure</span>`,
		`<a href="https://reports.example.internal/drills/control-plane/r-20260503" rel="noopener noreferrer">report</a>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

func TestPageEscapes(t *testing.T) {
	st := Status{
		ConfigError: `<script>alert(1)</script>`,
		Schedules:   []ScheduleStatus{{Name: `<img src=x onerror=alert(1)>`, Kind: "backup", Cron: "* * * * *"}},
		Drills:      []DrillStatus{{Name: "d", Verdict: "pass", ReportURL: "javascript:alert(1)"}},
	}
	page := body(t, get(t, New(Options{Status: fixedStatus(st)}), http.MethodGet, "/"))
	for _, bad := range []string{"<script>", "<img src=x", `href="javascript:`} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains unescaped %q", bad)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("config error not shown escaped")
	}
}

// scrape fetches /metrics over HTTP and parses the text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// value returns the value of the series of family name with exactly the
// labels given, and whether it exists.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func series(mfs map[string]*dto.MetricFamily, name string) int {
	if mf := mfs[name]; mf != nil {
		return len(mf.GetMetric())
	}
	return 0
}

func i64(v int64) *int64 { return &v }

// record is what the service does over a day: the calls every test below
// starts from.
func record(m *Metrics) {
	m.ConfigLoaded(true)
	m.SetLeader(true)
	m.RunStarted("backup", "nightly")
	m.StartDelay("nightly", 250*time.Millisecond)
	m.RunFinished("backup", "nightly", "success", 12*time.Minute)
	m.SetLastSuccess("nightly", t0.Add(-2*time.Hour))
	m.SetNext("nightly", t0.Add(10*time.Hour))
	m.RunStarted("backup", "etcd-hourly")
	m.RunFinished("backup", "etcd-hourly", "failure", 40*time.Second)
	m.RunStarted("backup", "etcd-hourly") // still running
	m.Missed("etcd-hourly", "not-leader")
	m.Missed("etcd-hourly", "not-leader")
	m.BackupCommitted("nightly-full", map[string]int64{"etcd": 52428800, "manifests": 1048576}, 918273, t0.Add(-92*time.Minute))
	m.PlanTarget("nightly-full", time.Hour)
	m.DrillFinished("control-plane", i64(812500), i64(5400000), i64(3600000), map[string]bool{"rto": true, "rpo": false, "checks": true})
	m.KEKAge("kms-primary", t0.Add(-75*24*time.Hour))
	m.RewrapFailures("kms-primary", 2)
	m.StoreReachable("s3-locked", true)
	m.StoreReachable("fs-local", false)
}

func TestMetricsScrape(t *testing.T) {
	clk := &clock{t: t0}
	m := NewMetrics(clk.Now)
	srv := httptest.NewServer(New(Options{Metrics: m}))
	defer srv.Close()
	record(m)
	mfs := scrape(t, srv.URL)

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"lifeboat_runs_total", []string{"kind", "backup", "schedule", "nightly", "outcome", "success"}, 1},
		{"lifeboat_runs_total", []string{"kind", "backup", "schedule", "etcd-hourly", "outcome", "failure"}, 1},
		{"lifeboat_run_duration_seconds", []string{"kind", "backup", "schedule", "nightly"}, 1},
		{"lifeboat_runs_in_progress", []string{"kind", "backup", "schedule", "nightly"}, 0},
		{"lifeboat_runs_in_progress", []string{"kind", "backup", "schedule", "etcd-hourly"}, 1},
		{"lifeboat_schedule_last_success_timestamp_seconds", []string{"schedule", "nightly"}, float64(t0.Add(-2 * time.Hour).Unix())},
		{"lifeboat_schedule_next_run_timestamp_seconds", []string{"schedule", "nightly"}, float64(t0.Add(10 * time.Hour).Unix())},
		{"lifeboat_schedule_last_outcome", []string{"schedule", "nightly", "outcome", "success"}, 1},
		{"lifeboat_schedule_last_outcome", []string{"schedule", "nightly", "outcome", "failure"}, 0},
		{"lifeboat_schedule_last_outcome", []string{"schedule", "etcd-hourly", "outcome", "failure"}, 1},
		{"lifeboat_schedule_last_outcome", []string{"schedule", "etcd-hourly", "outcome", "abandoned"}, 0},
		{"lifeboat_missed_ticks_total", []string{"schedule", "etcd-hourly", "reason", "not-leader"}, 2},
		{"lifeboat_start_delay_seconds", []string{"schedule", "nightly"}, 1},
		{"lifeboat_backup_bytes", []string{"plan", "nightly-full", "source", "etcd"}, 52428800},
		{"lifeboat_backup_bytes", []string{"plan", "nightly-full", "source", "manifests"}, 1048576},
		{"lifeboat_etcd_snapshot_revision", []string{"plan", "nightly-full"}, 918273},
		{"lifeboat_backup_newest_verified_age_seconds", []string{"plan", "nightly-full"}, 92 * 60},
		{"lifeboat_plan_rpo_target_seconds", []string{"plan", "nightly-full"}, 3600},
		{"lifeboat_drill_rto_seconds", []string{"drill", "control-plane"}, 812.5},
		{"lifeboat_drill_rpo_seconds", []string{"drill", "control-plane"}, 5400},
		{"lifeboat_drill_worst_gap_seconds", []string{"drill", "control-plane"}, 3600},
		{"lifeboat_drill_target_met", []string{"drill", "control-plane", "target", "rto"}, 1},
		{"lifeboat_drill_target_met", []string{"drill", "control-plane", "target", "rpo"}, 0},
		{"lifeboat_drill_target_met", []string{"drill", "control-plane", "target", "checks"}, 1},
		{"lifeboat_kek_version_age_seconds", []string{"key_provider", "kms-primary"}, 75 * 24 * 3600},
		{"lifeboat_rewrap_failures_total", []string{"key_provider", "kms-primary"}, 2},
		{"lifeboat_store_reachable", []string{"store", "s3-locked"}, 1},
		{"lifeboat_store_reachable", []string{"store", "fs-local"}, 0},
		{"lifeboat_leader", nil, 1},
		{"lifeboat_config_valid", nil, 1},
		{"lifeboat_config_reloads_total", []string{"result", "success"}, 1},
	} {
		got, ok := value(mfs, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if series(mfs, "lifeboat_schedule_last_outcome") != 8 {
		t.Errorf("lifeboat_schedule_last_outcome: %d series, want 4 outcomes × 2 schedules", series(mfs, "lifeboat_schedule_last_outcome"))
	}
	if _, ok := mfs["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	// The histogram's buckets reach hours.
	for _, mm := range mfs["lifeboat_run_duration_seconds"].GetMetric() {
		b := mm.GetHistogram().GetBucket()
		if top := b[len(b)-1].GetUpperBound(); top < 4*3600 {
			t.Errorf("run duration buckets end at %vs", top)
		}
	}
}

func TestMetricsAgesAtScrape(t *testing.T) {
	clk := &clock{t: t0}
	m := NewMetrics(clk.Now)
	srv := httptest.NewServer(New(Options{Metrics: m}))
	defer srv.Close()
	m.BackupCommitted("nightly-full", nil, 0, t0.Add(-10*time.Minute))
	m.KEKAge("kms-primary", t0.Add(-24*time.Hour))

	clk.Add(50 * time.Minute) // no backup since: the live RPO grows by itself
	mfs := scrape(t, srv.URL)
	if got, _ := value(mfs, "lifeboat_backup_newest_verified_age_seconds", "plan", "nightly-full"); got != 3600 {
		t.Errorf("live RPO after 50m: %v, want 3600", got)
	}
	if got, _ := value(mfs, "lifeboat_kek_version_age_seconds", "key_provider", "kms-primary"); got != 24*3600+50*60 {
		t.Errorf("KEK age: %v, want %v", got, 24*3600+50*60)
	}
	if _, ok := value(mfs, "lifeboat_etcd_snapshot_revision", "plan", "nightly-full"); ok {
		t.Error("etcd revision reported for a plan without etcd")
	}

	// An older backup (replayed from the evidence log) does not move it
	// back; a newer one does.
	m.BackupCommitted("nightly-full", nil, 0, t0.Add(-5*time.Hour))
	m.BackupCommitted("nightly-full", nil, 0, clk.Now().Add(-30*time.Second))
	mfs = scrape(t, srv.URL)
	if got, _ := value(mfs, "lifeboat_backup_newest_verified_age_seconds", "plan", "nightly-full"); got != 30 {
		t.Errorf("live RPO after a new backup: %v, want 30", got)
	}
}

func TestMetricsIdempotentRebuild(t *testing.T) {
	m := NewMetrics(func() time.Time { return t0 })
	srv := httptest.NewServer(New(Options{Metrics: m}))
	defer srv.Close()
	// A restart replays the evidence log: the same state twice is the
	// same state, and a finish without its start keeps in-progress at 0.
	for range 2 {
		m.SetLastOutcome("nightly", "partial")
		m.SetLastSuccess("nightly", t0.Add(-26*time.Hour))
		m.BackupCommitted("nightly-full", map[string]int64{"etcd": 10, "volumes": 20}, 5, t0.Add(-time.Hour))
	}
	m.RunFinished("backup", "nightly", "abandoned", time.Second)
	m.BackupCommitted("nightly-full", map[string]int64{"etcd": 11}, 6, t0.Add(-time.Hour))
	mfs := scrape(t, srv.URL)
	if got, _ := value(mfs, "lifeboat_runs_in_progress", "kind", "backup", "schedule", "nightly"); got != 0 {
		t.Errorf("runs in progress %v, want 0", got)
	}
	for o, want := range map[string]float64{"abandoned": 1, "partial": 0, "success": 0, "failure": 0} {
		if got, _ := value(mfs, "lifeboat_schedule_last_outcome", "schedule", "nightly", "outcome", o); got != want {
			t.Errorf("last outcome %s = %v, want %v", o, got, want)
		}
	}
	if _, ok := value(mfs, "lifeboat_backup_bytes", "plan", "nightly-full", "source", "volumes"); ok {
		t.Error("a source gone from the plan's last backup still has a series")
	}
	if got, _ := value(mfs, "lifeboat_etcd_snapshot_revision", "plan", "nightly-full"); got != 6 {
		t.Errorf("etcd revision %v, want 6", got)
	}
	// Unmeasured values and a zero next run remove their series.
	m.DrillFinished("d", nil, i64(1000), nil, map[string]bool{"checks": false})
	m.SetNext("nightly", t0)
	m.SetNext("nightly", time.Time{})
	mfs = scrape(t, srv.URL)
	if series(mfs, "lifeboat_drill_rto_seconds") != 0 || series(mfs, "lifeboat_drill_target_met") != 1 || series(mfs, "lifeboat_schedule_next_run_timestamp_seconds") != 0 {
		t.Error("nil or zero values left series behind")
	}
}

func TestMetricsRetain(t *testing.T) {
	m := NewMetrics(func() time.Time { return t0 })
	srv := httptest.NewServer(New(Options{Metrics: m}))
	defer srv.Close()
	record(m)
	// A reload removed the etcd-hourly schedule, the control-plane drill,
	// the fs-local store; the nightly-full plan and the KMS provider stay.
	m.Retain(Names{
		Schedules:    []string{"nightly"},
		Plans:        []string{"nightly-full"},
		KeyProviders: []string{"kms-primary"},
		Stores:       []string{"s3-locked"},
	})
	mfs := scrape(t, srv.URL)
	for name, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				switch l.GetValue() {
				case "etcd-hourly", "control-plane", "fs-local":
					t.Errorf("%s still has a series for %s", name, l.GetValue())
				}
			}
		}
	}
	for _, c := range [][]string{
		{"lifeboat_runs_total", "kind", "backup", "schedule", "nightly", "outcome", "success"},
		{"lifeboat_schedule_last_outcome", "schedule", "nightly", "outcome", "success"},
		{"lifeboat_backup_newest_verified_age_seconds", "plan", "nightly-full"},
		{"lifeboat_plan_rpo_target_seconds", "plan", "nightly-full"},
		{"lifeboat_kek_version_age_seconds", "key_provider", "kms-primary"},
		{"lifeboat_store_reachable", "store", "s3-locked"},
	} {
		if _, ok := value(mfs, c[0], c[1:]...); !ok {
			t.Errorf("%v: kept series gone", c)
		}
	}
	// Removing the plan and provider too removes their at-scrape ages.
	m.Retain(Names{})
	mfs = scrape(t, srv.URL)
	for name := range mfs {
		if strings.HasPrefix(name, "lifeboat_") && name != "lifeboat_leader" && name != "lifeboat_config_valid" && name != "lifeboat_config_reloads_total" {
			t.Errorf("%s left after everything was removed", name)
		}
	}
}

// The metric names follow Prometheus's conventions (units, _total).
func TestMetricsLint(t *testing.T) {
	m := NewMetrics(func() time.Time { return t0 })
	record(m)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	ln, err := Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, New(Options{}), nil) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		350 * time.Millisecond:            "350ms",
		4200 * time.Millisecond:           "4.2s",
		42 * time.Second:                  "42s",
		3*time.Minute + 5*time.Second:     "3m 05s",
		15 * time.Minute:                  "15m",
		92 * time.Minute:                  "1h 32m",
		2 * time.Hour:                     "2h",
		75 * 24 * time.Hour:               "75d",
		9*24*time.Hour + 4*time.Hour:      "9d 4h",
		-(3*time.Minute + 5*time.Second):  "-3m 05s",
		47*time.Hour + 59*time.Minute + 1: "47h 59m",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%v) = %q, want %q", d, got, want)
		}
	}
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{t0.Add(3*time.Minute + 20*time.Second), "in 3m"},
		{t0.Add(-(2*time.Hour + 5*time.Minute)), "2h 5m ago"},
		{t0, "now"},
		{t0.Add(-40 * time.Second), "40s ago"},
	} {
		if got := newStamp(c.t, t0).Rel; got != c.want {
			t.Errorf("relative %v: %q, want %q", c.t.Sub(t0), got, c.want)
		}
	}
}

// sampleStatus is a realistic status: four schedules, one failing, one
// running and one suspended; a plan over its RPO target; a drill with
// phases; two keys; two stores.
func sampleStatus() Status {
	return Status{
		GeneratedAt: t0,
		Leader:      true,
		Identity:    "lifeboat-7d9f8c6b5-x2kqp",
		ConfigValid: true,
		Schedules: []ScheduleStatus{
			{Name: "nightly", Kind: "backup", Target: "nightly-full", Cron: "0 2 * * *", TimeZone: "America/New_York",
				NextRun: t0.Add(15*time.Hour + 57*time.Minute), LastRun: t0.Add(-8*time.Hour - 3*time.Minute),
				LastSuccess: t0.Add(-7*time.Hour - 51*time.Minute), LastOutcome: "success", LastRunID: "20260504T060000Z-3f2a"},
			{Name: "etcd-hourly", Kind: "backup", Target: "etcd-only", Cron: "0 * * * *", TimeZone: "UTC",
				NextRun: t0.Add(57 * time.Minute), LastRun: t0.Add(-3 * time.Minute),
				LastSuccess: t0.Add(-2*time.Hour - 2*time.Minute), LastOutcome: "failure", LastRunID: "20260504T140000Z-9b1c"},
			{Name: "weekly-drill", Kind: "drill", Target: "control-plane", Cron: "30 3 * * 0", TimeZone: "UTC",
				NextRun: t0.Add(5*24*time.Hour + 13*time.Hour + 27*time.Minute), LastRun: t0.Add(-34*time.Hour - 33*time.Minute),
				LastSuccess: t0.Add(-34*time.Hour - 19*time.Minute), LastOutcome: "success", LastRunID: "r-20260503", Running: true},
			{Name: "quarterly-rotation", Kind: "rotation", Target: "kms-rotate", Cron: "0 4 1 */3 *", TimeZone: "UTC",
				Suspended: true, LastRun: t0.Add(-33*24*time.Hour - 10*time.Hour - 3*time.Minute),
				LastSuccess: t0.Add(-33*24*time.Hour - 9*time.Hour - 54*time.Minute),
				LastOutcome: "partial", LastRunID: "rot-20260401"},
		},
		Plans: []PlanStatus{
			{Name: "nightly-full", Store: "s3-locked", NewestPointInTime: t0.Add(-92 * time.Minute),
				Target: time.Hour, TargetDrill: "control-plane"},
			{Name: "etcd-only", Store: "s3-locked", NewestPointInTime: t0.Add(-25 * time.Minute),
				Target: 2 * time.Hour, TargetDrill: "etcd-restore"},
		},
		Drills: []DrillStatus{
			{Name: "control-plane", LastRun: t0.Add(-34*time.Hour - 33*time.Minute), Verdict: "pass",
				RTO: 13*time.Minute + 32*time.Second, RPO: 38 * time.Minute, WorstGap: 62 * time.Minute,
				RTOTarget: 15 * time.Minute, RPOTarget: time.Hour,
				Phases: []Phase{
					{"select", 2 * time.Second}, {"fetch", 3*time.Minute + 10*time.Second}, {"decrypt", 48 * time.Second},
					{"restore etcd", 2*time.Minute + 5*time.Second}, {"start etcd", 21 * time.Second},
					{"start control plane", 4*time.Minute + 36*time.Second}, {"verify", 2*time.Minute + 30*time.Second},
				},
				ReportKey: "clusters/prod-east/reports/r-20260503/report.html",
				ReportURL: "https://reports.example.internal/drills/control-plane/r-20260503"},
			{Name: "etcd-restore", LastRun: t0.Add(-6 * 24 * time.Hour), Verdict: "fail",
				RTO: 21*time.Minute + 14*time.Second, RPO: 47 * time.Minute, WorstGap: 3 * time.Hour,
				RTOTarget: 15 * time.Minute, RPOTarget: 2 * time.Hour,
				Phases: []Phase{
					{"select", time.Second}, {"fetch", 9*time.Minute + 40*time.Second}, {"decrypt", 2 * time.Minute},
					{"restore etcd", 6 * time.Minute}, {"verify", 3*time.Minute + 33*time.Second},
				},
				ReportKey: "clusters/prod-east/reports/r-20260428/report.html"},
		},
		Keys: []KeyStatus{
			{Provider: "kms-primary", Primary: "arn:aws:kms:us-east-1:111122223333:key/0f1e…/v4", Created: t0.Add(-75 * 24 * time.Hour), RotationPeriod: 90 * 24 * time.Hour},
			{Provider: "break-glass", Primary: "local-2025-11", Created: t0.Add(-180 * 24 * time.Hour)},
		},
		Stores: []StoreStatus{
			{Name: "s3-locked", Reachable: true},
			{Name: "fs-offsite", Reachable: false, Error: "stat /mnt/offsite/lifeboat: no such file or directory"},
		},
		Audit: &AuditStatus{Log: "apiserver", Stream: "lifeboat-audit-0", Mode: "webhook", Receiving: true,
			WALEvents: 1834, OldestUnsealed: t0.Add(-3*time.Minute - 12*time.Second),
			HeadSeq: 20417, LastSealed: t0.Add(-3 * time.Minute), LastEvent: t0.Add(-3*time.Minute - 14*time.Second)},
	}
}

package service

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/server"
	storepkg "github.com/lifeboat-dr/lifeboat/internal/store"
	s3store "github.com/lifeboat-dr/lifeboat/internal/store/s3"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

const serviceEncryptionConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/Cg==
      - identity: {}
`

// serveSetup is a configuration directory with a real fs store, a real
// local keyring and a plan with one cheap source, for Run.
type serveSetup struct {
	dir, cfgDir, storeRoot string
	signer                 *evidence.Signer
}

func newServeSetup(t *testing.T) serveSetup {
	t.Helper()
	dir := t.TempDir()
	s := serveSetup{dir: dir, cfgDir: filepath.Join(dir, "config"), storeRoot: filepath.Join(dir, "store")}
	if err := os.MkdirAll(s.cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "enc.yaml"), []byte(serviceEncryptionConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Create(context.Background(), local.Options{Path: filepath.Join(dir, "keyring.json")}, "clinic-kek"); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s.signer, _ = evidence.NewSigner(priv)
	s.writeConfig(t, "base.yaml", fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: local}
spec: {type: fs, path: %s, objectLock: {mode: COMPLIANCE, retention: 1d}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: {type: local, keyring: %s}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: clinic}
spec:
  store: local
  keyProvider: local
  retention: 1d
  sources:
    - encryptionConfig: {file: %s}
`, strconv.Quote(s.storeRoot), strconv.Quote(filepath.Join(dir, "keyring.json")), strconv.Quote(filepath.Join(dir, "enc.yaml"))))
	return s
}

func (s serveSetup) writeConfig(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.cfgDir, name), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func scheduleYAML(name, cron string) string {
	return fmt.Sprintf("apiVersion: lifeboat.dev/v1alpha1\nkind: Schedule\nmetadata: {name: %s}\nspec: {cron: %q, backupPlan: clinic}\n", name, cron)
}

// running is a Run in progress.
type running struct {
	base   string
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startRun(t *testing.T, s serveSetup, o Options) *running {
	t.Helper()
	addr := make(chan net.Addr, 1)
	logs := &syncBuffer{}
	o.ConfigDir, o.Identity, o.Signer = s.cfgDir, "replica-a", s.signer
	o.Listen = "127.0.0.1:0"
	o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Listening = func(a net.Addr) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { r.done <- Run(ctx, o) }()
	select {
	case a := <-addr:
		r.base = "http://" + a.String()
	case err := <-r.done:
		t.Fatalf("Run: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not start serving\n%s", logs)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after its context ended\n%s", logs)
		}
	})
	return r
}

// scrape reads /metrics with Prometheus' own text parser.
func (r *running) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(r.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value is the metric's value for the labels (name=value pairs); ok is
// false when no series matches.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
series:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func (r *running) status(t *testing.T) server.Status {
	t.Helper()
	resp, err := http.Get(r.base + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var st server.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("/api/status: %v\n%s", err, body)
	}
	return st
}

// TestRunServesRealBackups: Run with a schedule firing every second takes
// real backups through package job; /metrics (parsed with Prometheus'
// parser) counts the successful runs, the committed bytes and the live
// RPO; /api/status shows the schedule's last success and the plan's
// newest backup; ending the context returns nil.
func TestRunServesRealBackups(t *testing.T) {
	s := newServeSetup(t)
	s.writeConfig(t, "schedule.yaml", scheduleYAML("often", "@every 1s"))
	r := startRun(t, s, Options{ConfigPoll: 100 * time.Millisecond})
	waitFor(t, "two successful scheduled backups", func() bool {
		v, _ := value(r.scrape(t), "lifeboat_runs_total", "schedule", "often", "outcome", "success", "kind", "backup")
		return v >= 2
	})
	fams := r.scrape(t)
	if v, ok := value(fams, "lifeboat_backup_bytes", "plan", "clinic", "source", "encryptionConfig"); !ok || v <= 0 {
		t.Errorf("lifeboat_backup_bytes = %v (%v), want the stored size", v, ok)
	}
	if v, ok := value(fams, "lifeboat_backup_newest_verified_age_seconds", "plan", "clinic"); !ok || v < 0 || v > 60 {
		t.Errorf("lifeboat_backup_newest_verified_age_seconds = %v (%v), want a few seconds", v, ok)
	}
	if v, _ := value(fams, "lifeboat_leader"); v != 1 {
		t.Errorf("lifeboat_leader = %v, want 1 without leader election", v)
	}
	if v, ok := value(fams, "lifeboat_kek_version_age_seconds", "key_provider", "local"); !ok || v < 0 {
		t.Errorf("lifeboat_kek_version_age_seconds = %v (%v)", v, ok)
	}
	waitFor(t, "the status page", func() bool {
		st := r.status(t)
		return len(st.Schedules) == 1 && st.Schedules[0].LastOutcome == evidence.OutcomeSuccess && len(st.Plans) == 1 && !st.Plans[0].NewestPointInTime.IsZero()
	})
	if resp, err := http.Get(r.base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %v %v", resp, err)
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run returned %v after its context ended, want nil", err)
	}
	r.done <- nil // for the cleanup
}

// TestRunReload: a new schedule in the directory is picked up; an invalid
// file is refused (config_valid 0, the error with file:line:col on the
// status page) while the old configuration keeps running; fixing it makes
// the configuration valid again, and a removed schedule leaves /metrics.
func TestRunReload(t *testing.T) {
	s := newServeSetup(t)
	s.writeConfig(t, "a.yaml", scheduleYAML("first", "0 3 * * *"))
	r := startRun(t, s, Options{ConfigPoll: 50 * time.Millisecond})
	names := func() []string {
		var out []string
		for _, sc := range r.status(t).Schedules {
			out = append(out, sc.Name)
		}
		return out
	}
	s.writeConfig(t, "b.yaml", scheduleYAML("second", "0 4 * * *"))
	waitFor(t, "the new schedule", func() bool { return strings.Join(names(), ",") == "first,second" })

	s.writeConfig(t, "c.yaml", "apiVersion: lifeboat.dev/v1alpha1\nkind: Schedule\nmetadata: {name: third}\nspec: {cron: \"not a cron\", backupPlan: clinic}\n")
	waitFor(t, "the invalid configuration refused", func() bool {
		v, _ := value(r.scrape(t), "lifeboat_config_valid")
		return v == 0
	})
	st := r.status(t)
	if st.ConfigValid || !strings.Contains(st.ConfigError, "c.yaml:4:") {
		t.Fatalf("status: valid %v error %q, want invalid naming c.yaml:4", st.ConfigValid, st.ConfigError)
	}
	if got := strings.Join(names(), ","); got != "first,second" {
		t.Fatalf("schedules %s after a bad reload, want the old ones running", got)
	}
	if !strings.Contains(r.logs.String(), "configuration refused") {
		t.Fatalf("no log line for the refused configuration:\n%s", r.logs)
	}

	if err := os.Remove(filepath.Join(s.cfgDir, "c.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.cfgDir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fixed configuration", func() bool {
		v, _ := value(r.scrape(t), "lifeboat_config_valid")
		return v == 1 && strings.Join(names(), ",") == "first"
	})
	if _, ok := value(r.scrape(t), "lifeboat_schedule_next_run_timestamp_seconds", "schedule", "second"); ok {
		t.Fatal("a removed schedule still has a series in /metrics")
	}
}

// TestRunRefusesInvalidConfigAtStart: Run does not start with a
// configuration that does not load, and says which file is at fault.
func TestRunRefusesInvalidConfigAtStart(t *testing.T) {
	s := newServeSetup(t)
	s.writeConfig(t, "bad.yaml", "apiVersion: lifeboat.dev/v1alpha1\nkind: Schedule\nmetadata: {name: x}\nspec: {cron: \"61 * * * *\", backupPlan: clinic}\n")
	err := Run(context.Background(), Options{ConfigDir: s.cfgDir, Identity: "a", Signer: s.signer, Listen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:4:") {
		t.Fatalf("Run = %v, want an error naming bad.yaml:4", err)
	}
}

// TestRunNotReadyWhenStoreUnreachable: /readyz answers 503 and names a
// store that does not answer its probe; the status page shows it
// unreachable and lifeboat_store_reachable is 0.
func TestRunNotReadyWhenStoreUnreachable(t *testing.T) {
	s := newServeSetup(t)
	blocker := filepath.Join(s.dir, "not-a-directory")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.writeConfig(t, "broken-store.yaml", fmt.Sprintf("apiVersion: lifeboat.dev/v1alpha1\nkind: Store\nmetadata: {name: offsite}\nspec: {type: fs, path: %s, objectLock: {mode: COMPLIANCE, retention: 1d}}\n",
		strconv.Quote(filepath.Join(blocker, "store"))))
	r := startRun(t, s, Options{})
	var body string
	waitFor(t, "/readyz to name the store", func() bool {
		resp, err := http.Get(r.base + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "offsite")
	})
	if strings.Contains(body, "local") {
		t.Fatalf("/readyz names the reachable store too: %q", body)
	}
	if v, ok := value(r.scrape(t), "lifeboat_store_reachable", "store", "offsite"); !ok || v != 0 {
		t.Fatalf("lifeboat_store_reachable{store=offsite} = %v (%v), want 0", v, ok)
	}
	for _, st := range r.status(t).Stores {
		if st.Reachable != (st.Name == "local") {
			t.Fatalf("store %s reachable %v", st.Name, st.Reachable)
		}
	}
}

// TestRunShutdownDrainsBackup: SIGTERM (Run's context ending) while a
// backup runs lets it finish within the grace period: it is not cancelled,
// its tick is settled as a success, and Run returns nil only afterwards.
func TestRunShutdownDrainsBackup(t *testing.T) {
	s := newServeSetup(t)
	s.writeConfig(t, "schedule.yaml", scheduleYAML("often", "@every 1s"))
	runner := &fakeRunner{started: make(chan struct{}, 8), block: make(chan struct{})}
	r := startRun(t, s, Options{Runner: runner, Grace: time.Minute})
	select {
	case <-runner.started:
	case <-time.After(30 * time.Second):
		t.Fatalf("no run started\n%s", r.logs)
	}
	r.cancel() // SIGTERM
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-r.done:
		t.Fatalf("Run returned (%v) while a backup was still running", err)
	default:
	}
	close(runner.block)
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return after the backup finished\n%s", r.logs)
	}
	r.done <- nil // for the cleanup
	runner.mu.Lock()
	cancelled := runner.cancelled
	runner.mu.Unlock()
	if cancelled != 0 {
		t.Fatalf("%d runs cancelled by SIGTERM, want the backup drained", cancelled)
	}
	e := schedEnv{root: s.storeRoot, signer: s.signer}
	recs := scheduleRecords(t, e)
	if len(recs) != 1 || recs[0].Outcome != evidence.OutcomeSuccess {
		t.Fatalf("records %v, want the drained run's success", recs)
	}
}

// TestRunAuditsStoreVersions: serve audits an S3 store's object versions.
// Someone publishes a second version of a key lifeboat wrote (Object Lock
// keeps the first); lifeboat_store_tampered_keys goes to 1 and the leader
// appends one signed `tampering` record naming the key.
func TestRunAuditsStoreVersions(t *testing.T) {
	srv := testenv.StartS3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", srv.Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	ctx := t.Context()
	st, err := s3store.New(ctx, s3store.Options{Bucket: "offsite", Prefix: "clinic", Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true, LockMode: "COMPLIANCE"})
	if err != nil {
		t.Fatal(err)
	}
	c := st.Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("offsite"), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "backups/x/manifest.json", strings.NewReader("{}"), storepkg.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("offsite"), Key: aws.String("clinic/backups/x/manifest.json"), Body: strings.NewReader(`{"forged":1}`)}); err != nil {
		t.Fatal(err)
	}

	s := newServeSetup(t)
	s.writeConfig(t, "offsite.yaml", fmt.Sprintf("apiVersion: lifeboat.dev/v1alpha1\nkind: Store\nmetadata: {name: offsite}\nspec: {type: s3, bucket: offsite, prefix: clinic, endpoint: %q, forcePathStyle: true, objectLock: {mode: COMPLIANCE, retention: 1d}}\n", srv.Endpoint))
	r := startRun(t, s, Options{})
	waitFor(t, "the tampered key counted", func() bool {
		v, ok := value(r.scrape(t), "lifeboat_store_tampered_keys", "store", "offsite")
		return ok && v == 1
	})
	if v, ok := value(r.scrape(t), "lifeboat_store_tampered_keys", "store", "local"); ok {
		t.Fatalf("an fs store has a version audit series (%v)", v)
	}
	var recs []evidence.Record
	waitFor(t, "the tampering record", func() bool {
		recs = nil
		err := evidence.NewLog(st, s.signer, nil).Backwards(ctx, 100, func(rec evidence.Record) bool {
			if rec.Kind == KindTampering {
				recs = append(recs, rec)
			}
			return true
		})
		return err == nil && len(recs) == 1
	})
	if !strings.Contains(fmt.Sprint(recs[0].Subject["keys"]), "backups/x/manifest.json") || recs[0].Outcome != evidence.OutcomeFailure {
		t.Fatalf("tampering record %v %v, want a failure naming backups/x/manifest.json", recs[0].Outcome, recs[0].Subject)
	}
}

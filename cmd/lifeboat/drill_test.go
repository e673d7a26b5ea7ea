package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/drill"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

const drillCLIPlans = `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: local}
spec:
  type: fs
  path: %[1]q
  objectLock: {mode: COMPLIANCE, retention: 1d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: {type: local, keyring: %[2]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: control-plane}
spec:
  store: local
  keyProvider: local
  retention: 1d
  sources:
    - etcd: {endpoints: [%[3]q], dialTimeout: 30s}
    - encryptionConfig: {file: %[4]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: wants-a-missing-object}
spec:
  backupPlan: control-plane
  select: {latest: true}
  checks:
    - objects:
        items:
          - {apiVersion: v1, kind: Namespace, name: no-such-namespace}
  targets: {rto: 15m, rpo: 1h}
`

// TestDrillRun runs `lifeboat drill run` on the shipped drills/control-plane.yaml
// against a backup of a real source cluster: it passes and stores a
// signed report; a drill whose check fails exits 5 with a failed report.
func TestDrillRun(t *testing.T) {
	t.Setenv(embedded.EnvKubeAPIServer, testenv.Binary(t, "kube-apiserver"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	src := testenv.StartCluster(t)
	if _, err := seedDemoCluster(ctx, scratch.Access{Server: src.Server, Client: src.Client()}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	storeDir, keyring := filepath.Join(dir, "store"), filepath.Join(dir, "keyring.json")
	plans := filepath.Join(dir, "plans.yaml")
	if err := os.WriteFile(plans, fmt.Appendf(nil, drillCLIPlans, storeDir, keyring, src.Etcd.Endpoint, src.EncryptionConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	kr, err := local.Create(ctx, local.Options{Path: keyring}, "cli-kek")
	if err != nil {
		t.Fatal(err)
	}
	set, err := config.LoadPaths(plans)
	if err != nil {
		t.Fatal(err)
	}
	plan, _ := set.BackupPlan("control-plane")
	st, err := fs.Open(ctx, fs.Options{Root: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	bm, err := backup.Run(ctx, backup.Options{Plan: plan, Store: st, Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	signingKey := filepath.Join(dir, "signing.pem")
	// The backup's signed record: a drill only restores a backup one
	// speaks for.
	backupSigner, err := evidence.LoadOrCreateSigner(signingKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Publish(ctx, bm, backup.PublishOptions{Store: st, Signer: backupSigner}); err != nil {
		t.Fatal(err)
	}

	// The shipped drill, given as a file.
	out, errs, code := runOwn(t, newDrillCommand, []string{plans}, "drill", "run", "../../drills/control-plane.yaml", "--signing-key", signingKey)
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errs)
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`RTO\s+15m0s\s+\S+\s+PASS`),
		regexp.MustCompile(`RPO\s+25h0m0s\s+\S+\s+PASS`),
		regexp.MustCompile(`start control plane\s+\+\S+\s+\S+\s+success`),
		regexp.MustCompile(`secretsReadable\s+PASS`),
	} {
		if !want.MatchString(out) {
			t.Errorf("stdout lacks %s", want)
		}
	}
	for _, want := range []string{"select", "fetch", "decrypt", "restore etcd", "start control plane", "verify", "PASS inventory: etcd keyspace", "etcd-snapshot.db", "decrypted it in one stream"} {
		if !strings.Contains(errs, want) {
			t.Errorf("progress lacks %q", want)
		}
	}
	m := regexp.MustCompile(`Report:\s+(reports/(\S+)/report.json)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no report key")
	}
	signer, err := evidence.LoadSigner(signingKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.VerifyReportFile(filepath.Join(storeDir, "objects", m[1]), signer.PublicKey()); err != nil {
		t.Fatal(err)
	}

	// -o json, by name from --config.
	out, errs, code = runOwn(t, newDrillCommand, []string{plans, "../../drills/control-plane.yaml"}, "drill", "run", "control-plane", "--signing-key", signingKey, "-o", "json")
	if code != ExitOK || !strings.Contains(out, `"verdict": "pass"`) || !strings.Contains(out, `"reportKey": "reports/control-plane-`) {
		t.Fatalf("json: exit %d\n%s\n%s", code, out, errs)
	}

	// A failed check: exit 5, a failed report is still written.
	out, errs, code = runOwn(t, newDrillCommand, []string{plans}, "drill", "run", "wants-a-missing-object", "--signing-key", signingKey)
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errs)
	if code != ExitDrillFailed {
		t.Errorf("failed drill: exit %d, want %d", code, ExitDrillFailed)
	}
	if !regexp.MustCompile(`RTO\s+15m0s\s+not measured\s+FAIL`).MatchString(out) || !strings.Contains(out, "object: v1 Namespace no-such-namespace") ||
		!strings.Contains(out, "Report:") {
		t.Errorf("failed drill output:\n%s", out)
	}

	// The same failed drill for CI: JUnit XML on stdout, exit 5.
	out, errs, code = runOwn(t, newDrillCommand, []string{plans}, "drill", "run", "wants-a-missing-object", "--signing-key", signingKey, "-o", "junit")
	if code != ExitDrillFailed || !strings.HasPrefix(out, "<?xml") || !strings.Contains(out, `<testsuite name="lifeboat drill wants-a-missing-object"`) ||
		!strings.Contains(out, `<failure message="RTO not measured`) || !strings.Contains(out, `name="report" value="reports/wants-a-missing-object-`) {
		t.Errorf("junit: exit %d\n%s\n%s", code, out, errs)
	}
	if _, errs, code := run(t, "--config", plans, "-o", "junit", "backup", "list"); code != ExitUsage || !strings.Contains(errs, "junit is for drill run only") {
		t.Errorf("-o junit elsewhere: exit %d %s", code, errs)
	}

	// The runs, from the evidence log: listed with filters, and one shown.
	pubFile := filepath.Join(dir, "signer.pub")
	pemKey, _ := evidence.MarshalPublicKey(signer.PublicKey())
	if err := os.WriteFile(pubFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code = run(t, "report", "list", "--store-path", storeDir, "--key", pubFile)
	if code != ExitOK || strings.Count(out, " pass ") != 2 || strings.Count(out, " fail ") != 2 || strings.Contains(out, "Signers not checked") {
		t.Errorf("report list: exit %d\n%s\n%s", code, out, errs)
	}
	var runs []job.DrillRun
	out, errs, code = run(t, "report", "list", "--store-path", storeDir, "--verdict", "fail", "-o", "json")
	if code != ExitOK || json.Unmarshal([]byte(out), &runs) != nil || len(runs) != 2 || runs[0].Drill != "wants-a-missing-object" {
		t.Fatalf("report list --verdict fail: exit %d\n%s\n%s", code, out, errs)
	}
	out, errs, code = run(t, "report", "show", runs[0].RunID, "--store-path", storeDir, "--key", pubFile)
	if code != ExitOK || !strings.Contains(out, "Drill wants-a-missing-object, run "+runs[0].RunID+": fail") || !strings.Contains(out, "no-such-namespace") {
		t.Errorf("report show: exit %d\n%s\n%s", code, out, errs)
	}
	// The second run of control-plane carries the first as its trend, and
	// names the key that opened the backup; its page draws both.
	out, errs, code = run(t, "report", "list", "--store-path", storeDir, "--drill", "control-plane", "-o", "json")
	if code != ExitOK || json.Unmarshal([]byte(out), &runs) != nil || len(runs) != 2 {
		t.Fatalf("report list --drill control-plane: exit %d\n%s\n%s", code, out, errs)
	}
	second, err := evidence.VerifyReportFile(filepath.Join(storeDir, "objects", runs[1].Report), signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Trend) != 1 || second.Trend[0].RunID != runs[0].RunID || second.Trend[0].Verdict != evidence.VerdictPass ||
		second.Keys == nil || second.Keys.KeyObject != "local:cli-kek@1" || len(second.Keys.KeyProviders) != 1 {
		t.Errorf("second run's report: trend %+v keys %+v", second.Trend, second.Keys)
	}
	page, err := os.ReadFile(filepath.Join(storeDir, "objects", strings.TrimSuffix(runs[1].Report, "report.json")+"report.html"))
	if err != nil || !strings.Contains(string(page), `aria-label="RTO of the last 2 runs"`) {
		t.Errorf("second run's page lacks the trend chart (%v)", err)
	}
	if _, errs, code := run(t, "report", "show", "no-such-run", "--store-path", storeDir); code == ExitOK || !strings.Contains(errs, "no drill record") {
		t.Errorf("report show of an unknown run: exit %d\n%s", code, errs)
	}

	// Not a drill.
	if _, _, code := runOwn(t, newDrillCommand, []string{plans}, "drill", "run", "nope"); code != ExitUsage {
		t.Errorf("unknown drill: exit %d", code)
	}
}

func TestDrillFailedMapsToExitDrillFailed(t *testing.T) {
	err := reportedError{fmt.Errorf("drill x: %w: %w", drill.ErrFailed, errors.Join(errors.New("fetch"), context.DeadlineExceeded))}
	if got := exitCode(err); got != ExitDrillFailed {
		t.Fatalf("exitCode = %d, want %d (exit.go must map drill.ErrFailed)", got, ExitDrillFailed)
	}
}

// TestDrillKeptClusterStoppedWhenInterruptedAfterRun: when the context is
// cancelled after drill.Run returned with a kept scratch cluster, runDrill
// stops that cluster instead of leaving restored data serving.
func TestDrillKeptClusterStoppedWhenInterruptedAfterRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := testenv.StartEtcd(t)
	dir := t.TempDir()
	enc := filepath.Join(dir, "encryption-config.yaml")
	if err := os.WriteFile(enc, []byte(testEncryptionConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	plans := filepath.Join(dir, "plans.yaml")
	if err := os.WriteFile(plans, fmt.Appendf(nil, drillCLIPlans, filepath.Join(dir, "store"), filepath.Join(dir, "keyring.json"), e.Endpoint, enc), 0o600); err != nil {
		t.Fatal(err)
	}
	kr, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "keyring.json")}, "cli-kek")
	if err != nil {
		t.Fatal(err)
	}
	set, err := config.LoadPaths(plans)
	if err != nil {
		t.Fatal(err)
	}
	plan, _ := set.BackupPlan("control-plane")
	d, _ := set.Drill("wants-a-missing-object")
	st, err := fs.Open(ctx, fs.Options{Root: filepath.Join(dir, "store")})
	if err != nil {
		t.Fatal(err)
	}
	m, err := backup.Run(ctx, backup.Options{Plan: plan, Store: st, Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := evidence.LoadOrCreateSigner(filepath.Join(dir, "signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Publish(ctx, m, backup.PublishOptions{Store: st, Signer: signer}); err != nil {
		t.Fatal(err)
	}
	runCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	cluster := &fakeCluster{}
	var stderr strings.Builder
	// Ctrl-C just after Run returned: "drill failed" is its last log.
	a := &app{stdout: io.Discard, stderr: &stderr, output: "table", logger: slog.New(onMessage{"drill failed", interrupt})}
	_, err = runDrill(runCtx, a, io.Discard, set, d, job.DrillOptions{
		Signer: signer, Keep: true, TempDir: t.TempDir(), Scratch: fakeProvider{cluster},
	}, false)
	t.Logf("err %v\nstderr:\n%s", err, stderr.String())
	if !cluster.stopped.Load() {
		t.Fatal("the kept scratch cluster was not stopped after the interruption")
	}
}

type fakeCluster struct{ stopped atomic.Bool }

func (c *fakeCluster) Access() scratch.Access {
	return scratch.Access{Server: "https://127.0.0.1:1", Kubeconfig: "/nonexistent/kubeconfig", Client: http.DefaultClient}
}
func (c *fakeCluster) StartPhases() []scratch.Phase { return nil }
func (c *fakeCluster) Stop() error                  { c.stopped.Store(true); return nil }

type fakeProvider struct{ c *fakeCluster }

func (fakeProvider) Name() string { return "fake" }
func (p fakeProvider) Start(context.Context, scratch.Request) (scratch.Cluster, error) {
	return p.c, nil
}

// onMessage is a slog handler that calls fn on a record with message msg.
type onMessage struct {
	msg string
	fn  func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.fn()
	}
	return nil
}
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onMessage) WithGroup(string) slog.Handler      { return h }

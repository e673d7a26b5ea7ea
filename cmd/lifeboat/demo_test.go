package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// runOwn runs one of this file's commands: through the root command once
// root.go registers it, else on its own with the same app setup.
func runOwn(t *testing.T, newCmd func(*app) *cobra.Command, configPaths []string, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	if sub, _, err := root.Find(args[:1]); err == nil && sub != root {
		full := []string{}
		for _, p := range configPaths {
			full = append(full, "--config", p)
		}
		return run(t, append(full, args...)...)
	}
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb, configPaths: configPaths, logLevel: "warn", logFormat: "text", output: "table"}
	if err := a.setup(); err != nil {
		t.Fatal(err)
	}
	for i, arg := range args {
		if arg == "-o" && i+1 < len(args) {
			a.output = args[i+1]
			args = append(args[:i:i], args[i+2:]...)
			break
		}
	}
	cmd := newCmd(a)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args[1:])
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.Execute()
	if err != nil && !isReported(err) {
		errb.WriteString("lifeboat: " + err.Error() + "\n")
	}
	return out.String(), errb.String(), exitCode(err)
}

// TestDemo runs `lifeboat demo` end to end: a source cluster seeded through
// the API, a backup, a drill that passes with RTO and RPO measured, and a
// signed report that verifies.
func TestDemo(t *testing.T) {
	t.Setenv(embedded.EnvKubeAPIServer, testenv.Binary(t, "kube-apiserver"))
	dir := filepath.Join(t.TempDir(), "demo")
	out, errs, code := runOwn(t, newDemoCommand, nil, "demo", "--dir", dir)
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errs)
	if code != ExitOK {
		t.Fatalf("demo exit %d", code)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`Drill control-plane, run control-plane-\S+: PASS`),
		regexp.MustCompile(`RTO\s+5m0s\s+\d[\d.]*m?s\s+PASS`),
		regexp.MustCompile(`RPO\s+1h0m0s\s+\d[\d.]*m?s\s+PASS`),
		regexp.MustCompile(`inventory: etcd keyspace\s+PASS`),
		regexp.MustCompile(`inventory: secrets\s+PASS\s+6 served = 6 in the backup`),
		regexp.MustCompile(`secretsReadable\s+PASS`),
		regexp.MustCompile(`object: apps/v1 Deployment ehr/ehr-api\s+PASS`),
		regexp.MustCompile(`policies\s+PASS`),
	} {
		if !want.MatchString(out) {
			t.Errorf("stdout lacks %s", want)
		}
	}
	for _, want := range []string{"starting the source cluster", "seeded", "backup control-plane-", "incident", "restore etcd", "start control plane", "Work directory: " + dir} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	m := regexp.MustCompile(`Report:\s+(reports/\S+/report.json)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no report key in the output")
	}
	rep, err := evidence.VerifyReportFile(filepath.Join(dir, "store", "objects", m[1]))
	if err != nil {
		t.Fatalf("report does not verify: %v", err)
	}
	if rep.Verdict != evidence.VerdictPass || rep.Measured.RTOMs == nil || *rep.Measured.RTOMs <= 0 || rep.Measured.RPOMs == nil || *rep.Measured.RPOMs <= 0 {
		t.Fatalf("report %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "objects", strings.TrimSuffix(m[1], ".json")+".md")); err != nil {
		t.Fatal(err)
	}
}

func TestDemoWithoutKubeAPIServerSaysMakeTestbin(t *testing.T) {
	t.Setenv(embedded.EnvKubeAPIServer, filepath.Join(t.TempDir(), "kube-apiserver"))
	_, errs, code := runOwn(t, newDemoCommand, nil, "demo", "--dir", t.TempDir())
	if code == ExitOK || !strings.Contains(errs, "make testbin") {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
}

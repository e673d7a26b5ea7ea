package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

// runEvidence executes the CLI in process like run, and also returns the
// error, so tests can check it against evidence.ErrTampered.
func runEvidence(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCommand(&out, &errb)
	if !hasSubcommand(cmd, "evidence") || !hasSubcommand(cmd, "report") {
		t.Fatal("the evidence and report commands are not registered: add root.AddCommand(newEvidenceCommands(a)...) to newRootCommand in root.go")
	}
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err != nil && !isReported(err) {
		errb.WriteString("lifeboat: " + err.Error() + "\n")
	}
	return out.String(), errb.String(), err
}

func hasSubcommand(cmd *cobra.Command, name string) bool {
	for _, c := range cmd.Commands() {
		if c.Name() == name {
			return true
		}
	}
	return false
}

// evidenceFixture is an fs store holding a short evidence log and a signed
// drill report, with the signer's public key in a file.
type evidenceFixture struct {
	root, pubKey, otherKey, report string
	signer                         *evidence.Signer
}

func newEvidenceFixture(t *testing.T) evidenceFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	f := evidenceFixture{root: filepath.Join(dir, "store"), pubKey: filepath.Join(dir, "signer.pub"), otherKey: filepath.Join(dir, "other.pub")}
	signer, err := evidence.LoadOrCreateSigner(filepath.Join(dir, "signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	f.signer = signer
	other, err := evidence.LoadOrCreateSigner(filepath.Join(dir, "other.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for path, s := range map[string]*evidence.Signer{f.pubKey: signer, f.otherKey: other} {
		pem, err := evidence.MarshalPublicKey(s.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pem, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err := fs.Open(ctx, fs.Options{Root: f.root})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	log := evidence.NewLog(st, signer, func() time.Time { clock = clock.Add(time.Minute); return clock })
	for i, kind := range []string{evidence.KindBackup, evidence.KindRotation, evidence.KindBackup, evidence.KindDrill, evidence.KindBackup} {
		if _, err := log.Append(ctx, evidence.Record{
			Kind: kind, ID: fmt.Sprintf("run-%d", i), Outcome: evidence.OutcomeSuccess,
			Subject: map[string]any{"n": i}, HIPAA: []string{"§164.312(b)"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	r := evidence.Report{
		Drill: "control-plane", RunID: "drill-1", BackupID: "run-0",
		Started: start, Finished: start.Add(20 * time.Minute), Incident: start,
		Targets:  evidence.Targets{RTOMs: 900_000, RPOMs: 3_600_000},
		Measured: evidence.Measured{RTOMs: evidence.Ms(17 * time.Minute), RPOMs: evidence.Ms(time.Hour)},
		Phases:   []evidence.Phase{{Name: "restore", DurationMs: 1000, Outcome: evidence.PhaseSuccess}},
		Checks:   []evidence.Check{{Name: "counts", Outcome: evidence.CheckPass}},
	}
	r.Verdict, r.Reasons = evidence.Judge(r.Targets, r.Measured, r.Checks)
	r.HIPAA = evidence.DrillHIPAA(r)
	signed, _, err := signer.SignReport(r)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := evidence.WriteReport(ctx, st, signed)
	if err != nil {
		t.Fatal(err)
	}
	f.report = filepath.Join(f.root, "objects", filepath.FromSlash(objs.JSON.Key))
	return f
}

// tamper changes one byte of a file that the fs store keeps read-only.
func tamper(t *testing.T, path string, at int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[at] ^= 0x01
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestEvidenceVerify(t *testing.T) {
	f := newEvidenceFixture(t)
	out, errs, err := runEvidence(t, "evidence", "verify", "--store-path", f.root, "--key", f.pubKey)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, errs)
	}
	for _, want := range []string{"records verified  5", "head ", "seq 5 evidence/0000000005-backup-run-4.json", f.signer.KeyID(), "signers checked against --key", "backup 3, drill 1, rotation 1", "VALID"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, _, err = runEvidence(t, "evidence", "verify", "--store-path", f.root)
	if err != nil || !strings.Contains(out, "not checked: no --key given") {
		t.Fatalf("without --key: %v\n%s", err, out)
	}

	out, _, err = runEvidence(t, "-o", "json", "evidence", "verify", "--store-path", f.root, "--key", f.pubKey)
	if err != nil {
		t.Fatal(err)
	}
	var res evidenceVerifyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if !res.Valid || res.Records != 5 || res.Head == nil || res.Head.Seq != 5 || len(res.Head.SHA256) != 64 || !res.TrustedKeys {
		t.Fatalf("json result %+v", res)
	}
}

func TestEvidenceVerifyFails(t *testing.T) {
	f := newEvidenceFixture(t)

	out, _, err := runEvidence(t, "evidence", "verify", "--store-path", f.root, "--key", f.otherKey)
	if !errors.Is(err, evidence.ErrTampered) || !regexp.MustCompile(`problem field +publicKey`).MatchString(out) || !strings.Contains(out, "FAILED VERIFICATION") {
		t.Fatalf("wrong key: %v\n%s", err, out)
	}

	// One changed byte in a record on disk (the fs store's own digest
	// check reports it here; internal/evidence tests the case where the
	// attacker also fixes the digest).
	key := "evidence/0000000003-backup-run-2.json"
	tamper(t, filepath.Join(f.root, "objects", key), 40)
	out, _, err = runEvidence(t, "-o", "json", "evidence", "verify", "--store-path", f.root, "--key", f.pubKey)
	if !errors.Is(err, evidence.ErrTampered) {
		t.Fatalf("tampered: %v\n%s", err, out)
	}
	var res evidenceVerifyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if res.Valid || res.Problem == nil || res.Problem.Object != key || res.Records != 2 {
		t.Fatalf("json result %+v (problem %+v)", res, res.Problem)
	}
}

func TestEvidenceVerifyUsage(t *testing.T) {
	_, _, err := runEvidence(t, "evidence", "verify")
	if exitCode(err) != ExitUsage {
		t.Fatalf("no --store-path: %v", err)
	}
	if _, _, err := runEvidence(t, "evidence", "verify", "--store-path", t.TempDir(), "--store", "x"); exitCode(err) != ExitUsage {
		t.Fatalf("both --store and --store-path: %v", err)
	}
	_, errs, err := runEvidence(t, "evidence", "verify", "--store-path", t.TempDir())
	if err == nil || exitCode(err) != ExitError || !strings.Contains(errs, "no evidence records") {
		t.Fatalf("empty store: %v %s", err, errs)
	}
	_, _, err = runEvidence(t, "evidence", "verify", "--store-path", filepath.Join(t.TempDir(), "missing"))
	if err == nil || errors.Is(err, evidence.ErrTampered) {
		t.Fatalf("missing store: %v", err)
	}
	_, _, err = runEvidence(t, "evidence", "verify", "--store-path", t.TempDir(), "--key", filepath.Join(t.TempDir(), "missing.pub"))
	if err == nil || errors.Is(err, evidence.ErrTampered) {
		t.Fatalf("missing key file: %v", err)
	}
}

func TestReportVerify(t *testing.T) {
	f := newEvidenceFixture(t)
	out, errs, err := runEvidence(t, "report", "verify", f.report, "--key", f.pubKey)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, errs)
	}
	for _, want := range []string{"valid, key " + f.signer.KeyID(), "signers checked against --key", "control-plane", "drill-1", "drill verdict  FAIL", "RTO 17m0s (1020000 ms) exceeds the target 15m0s (900000 ms)", "VALID"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runEvidence(t, "report", "verify", f.report)
	if err != nil || !strings.Contains(out, "not checked: no --key given") {
		t.Fatalf("without --key: %v\n%s", err, out)
	}

	out, _, err = runEvidence(t, "report", "verify", f.report, "--key", f.otherKey)
	if !errors.Is(err, evidence.ErrTampered) || !strings.Contains(out, "publicKey") {
		t.Fatalf("wrong key: %v\n%s", err, out)
	}

	// Copy the report out of the store and change one byte in it: the
	// offline check names the field.
	data, err := os.ReadFile(f.report)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte(`"drill":"control-plane"`)) + len(`"drill":"`)
	data[at] = 'C'
	copyPath := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(copyPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = runEvidence(t, "-o", "json", "report", "verify", copyPath, "--key", f.pubKey)
	if !errors.Is(err, evidence.ErrTampered) {
		t.Fatalf("tampered: %v\n%s", err, out)
	}
	var res reportVerifyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if res.Valid || res.Problem == nil || res.Problem.Object != copyPath || res.Problem.Field != "signature" {
		t.Fatalf("json result %+v (problem %+v)", res, res.Problem)
	}

	_, _, err = runEvidence(t, "report", "verify", filepath.Join(t.TempDir(), "missing.json"))
	if err == nil || errors.Is(err, evidence.ErrTampered) || exitCode(err) != ExitError {
		t.Fatalf("missing file: %v", err)
	}
	if _, _, err := runEvidence(t, "report", "verify"); exitCode(err) != ExitUsage {
		t.Fatalf("no file: %v", err)
	}
}

func TestEvidencePublicKey(t *testing.T) {
	f := newEvidenceFixture(t)
	keyFile := filepath.Join(filepath.Dir(f.pubKey), "signing.pem")
	out, _, err := runEvidence(t, "evidence", "public-key", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := evidence.ParsePublicKey([]byte(out))
	if err != nil || !pub.Equal(f.signer.PublicKey()) {
		t.Fatalf("public key %v:\n%s", err, out)
	}
	if strings.Contains(out, "PRIVATE") {
		t.Fatal("printed the private key")
	}
	out, _, err = runEvidence(t, "-o", "json", "evidence", "public-key", keyFile)
	var res publicKeyResult
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.KeyID != f.signer.KeyID() {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runEvidence(t, "evidence", "public-key", keyFile); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
}

func TestEvidenceHelp(t *testing.T) {
	for _, args := range [][]string{{"evidence", "verify", "--help"}, {"report", "verify", "--help"}, {"evidence", "public-key", "--help"}} {
		out, _, err := runEvidence(t, args...)
		if err != nil || !strings.Contains(out, "Examples:") || !strings.Contains(out, "lifeboat ") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

// TestEvidenceVerificationExitCode checks the one mapping main needs:
// evidence that fails verification exits with ExitVerification.
func TestEvidenceVerificationExitCode(t *testing.T) {
	f := newEvidenceFixture(t)
	tamper(t, f.report, 10)
	_, _, err := runEvidence(t, "report", "verify", f.report, "--key", f.pubKey)
	if !errors.Is(err, evidence.ErrTampered) {
		t.Fatalf("error %v", err)
	}
	if code := exitCode(err); code != ExitVerification {
		t.Fatalf("exit code %d, want %d: add errors.Is(err, evidence.ErrTampered) to the ExitVerification case of exitCode in exit.go", code, ExitVerification)
	}
}

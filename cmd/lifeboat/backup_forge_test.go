package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// forgeObject replaces an object of the fs store under root with data and
// rewrites its digest record to match: what someone who can write the
// store's directory can do (on S3, a new object version).
func forgeObject(t *testing.T, root, key string, data []byte) {
	t.Helper()
	obj := filepath.Join(root, "objects", filepath.FromSlash(key))
	os.Chmod(obj, 0o640)
	if err := os.WriteFile(obj, data, 0o440); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(root, "retention", filepath.FromSlash(key)+".json")
	rb, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(rb, &r); err != nil {
		t.Fatal(err)
	}
	r["sha256"] = evidence.Hash(data)
	if _, ok := r["size"]; ok {
		r["size"] = len(data)
	}
	rb, _ = json.Marshal(r)
	os.Chmod(rec, 0o640)
	if err := os.WriteFile(rec, rb, 0o440); err != nil {
		t.Fatal(err)
	}
}

// signerPub writes the evidence signer's public key file, as a verifier
// gets it with `lifeboat evidence public-key`, and returns its path.
func (s rotateSetup) signerPub(t *testing.T) string {
	t.Helper()
	pub := filepath.Join(s.dir, "signer.pub")
	out, errs, code := run(t, "evidence", "public-key", s.signingKey)
	if code != ExitOK {
		t.Fatalf("evidence public-key: %s", errs)
	}
	if err := os.WriteFile(pub, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return pub
}

// forgePointInTime replaces backup id's manifest with one whose started
// and completed are by later, re-encoded as lifeboat would with the MAC
// left as it was, and recomputes the store's digest record: issue 11's
// forged point in time.
func (s rotateSetup) forgePointInTime(t *testing.T, id string, by time.Duration) {
	t.Helper()
	key := catalog.ManifestKey(id)
	raw, err := os.ReadFile(filepath.Join(s.storeRoot, "objects", filepath.FromSlash(key)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := catalog.Decode(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	m.Started, m.Completed = m.Started.Add(by), m.Completed.Add(by)
	forged, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	forgeObject(t, s.storeRoot, key, forged)
}

// TestBackupVerifyForgedManifest is issue 11's attack: a backup's
// manifest is replaced, its point in time moved forward, with the store's
// own digest record recomputed, so the store serves it as genuine. Without
// a key, `backup verify` cannot tell (it says so: the record is "not
// checked"); with the signer's public key it compares the manifest with
// the backup's signed evidence record and fails with exit 4 naming both;
// with --read-data the manifest's MAC fails under the data key.
func TestBackupVerifyForgedManifest(t *testing.T) {
	s := newRotateSetup(t)
	id := s.backups(t, 1)[0]
	pub := s.signerPub(t)

	// Before: everything holds.
	out, errs, code := run(t, "--config", s.config, "backup", "verify", id, "--read-data", "--key", pub)
	if code != ExitOK || !strings.Contains(out, "MAC ok") || !strings.Contains(out, "signed evidence record matches") {
		t.Fatalf("genuine backup: exit %d\n%s\n%s", code, out, errs)
	}

	// The forgery: started and completed six hours on (the plan keeps a
	// day), re-encoded as lifeboat would, MAC left as it was.
	key := catalog.ManifestKey(id)
	s.forgePointInTime(t, id, 6*time.Hour)

	out, errs, code = run(t, "--config", s.config, "backup", "verify", id)
	if code != ExitOK || !strings.Contains(out, "not checked (give --key)") {
		t.Fatalf("without a key: exit %d, want 0 and the record reported not checked\n%s\n%s", code, out, errs)
	}
	out, errs, code = run(t, "--config", s.config, "backup", "verify", id, "--key", pub)
	if code != ExitVerification || !strings.Contains(errs, key) || !strings.Contains(errs, "signed evidence record") {
		t.Fatalf("with the signer's key: exit %d, want %d naming %s and its record\n%s\n%s", code, ExitVerification, key, out, errs)
	}
	out, errs, code = run(t, "--config", s.config, "backup", "verify", id, "--read-data")
	if code != ExitVerification || !strings.Contains(errs, "MAC") || !strings.Contains(errs, key) {
		t.Fatalf("--read-data: exit %d, want %d naming the manifest's MAC\n%s\n%s", code, ExitVerification, out, errs)
	}
	out, errs, code = run(t, "--config", s.config, "-o", "json", "backup", "verify", id, "--read-data", "--key", pub)
	var res struct {
		OK          bool   `json:"ok"`
		ManifestMAC string `json:"manifestMAC"`
		Record      struct {
			Status string `json:"status"`
		} `json:"record"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("-o json: %v\n%s\n%s", err, out, errs)
	}
	if code != ExitVerification || res.OK || res.ManifestMAC != catalog.CheckFailed {
		t.Fatalf("-o json: exit %d, %+v", code, res)
	}
}

// TestDrillRefusesForgedManifest: `drill run` compares the selected
// backup's manifest with its signed evidence record before it uses
// anything of it (its point in time is the RPO): a replaced manifest fails
// the drill at selection, naming the manifest and the record, and no
// scratch cluster is started.
func TestDrillRefusesForgedManifest(t *testing.T) {
	t.Setenv(embedded.EnvKubeAPIServer, testenv.Binary(t, "kube-apiserver"))
	s := newRotateSetup(t)
	id := s.backups(t, 1)[0]
	drillYAML := "---\napiVersion: lifeboat.dev/v1alpha1\nkind: Drill\nmetadata: {name: clinic}\nspec:\n  backupPlan: clinic\n  select: {latest: true}\n  checks:\n    - objects:\n        items:\n          - {apiVersion: v1, kind: Namespace, name: ehr}\n  targets: {rto: 15m, rpo: 1h}\n"
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.config, append(cfg, []byte(drillYAML)...), 0o600); err != nil {
		t.Fatal(err)
	}
	key := catalog.ManifestKey(id)
	s.forgePointInTime(t, id, 6*time.Hour)

	out, errs, code := run(t, "--config", s.config, "drill", "run", "clinic", "--signing-key", s.signingKey)
	if code == ExitOK || !strings.Contains(out+errs, "signed evidence record") || !strings.Contains(out+errs, key) {
		t.Fatalf("drill of a forged manifest: exit %d, want a failure naming %s and its record\n%s\n%s", code, key, out, errs)
	}
	if strings.Contains(out+errs, "scratch cluster serving") {
		t.Fatalf("a scratch cluster was started for a forged backup:\n%s", errs)
	}
}

// TestPlantedBackupIsNotVouchedFor: a complete backup written straight
// into the store (as someone who can write it, and holds the KEK, could),
// newer than the real one, with no signed evidence record: `backup verify
// --key` refuses to vouch for it (exit 4), and a drill of the latest
// backup passes it over, naming it, and drills the real one: the planted
// backup neither gives the drill its RPO nor stops every later drill.
func TestPlantedBackupIsNotVouchedFor(t *testing.T) {
	t.Setenv(embedded.EnvKubeAPIServer, testenv.Binary(t, "kube-apiserver"))
	s := newRotateSetup(t)
	s.backups(t, 1)
	set, err := config.LoadPaths(s.config)
	if err != nil {
		t.Fatal(err)
	}
	plan, _ := set.BackupPlan("clinic")
	kr, err := local.Open(context.Background(), local.Options{Path: s.keyring})
	if err != nil {
		t.Fatal(err)
	}
	st, err := fs.Open(context.Background(), fs.Options{Root: s.storeRoot})
	if err != nil {
		t.Fatal(err)
	}
	planted, err := backup.Run(context.Background(), backup.Options{Plan: plan, Store: st, Keys: kr, Now: func() time.Time { return time.Now().Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	pub := s.signerPub(t)
	_, errs, code := run(t, "--config", s.config, "backup", "verify", planted.Backup, "--key", pub)
	if code != ExitVerification || !strings.Contains(errs, "no signed evidence record") {
		t.Fatalf("verify --key of a planted backup: exit %d, want %d\n%s", code, ExitVerification, errs)
	}
	drillYAML := "---\napiVersion: lifeboat.dev/v1alpha1\nkind: Drill\nmetadata: {name: clinic}\nspec:\n  backupPlan: clinic\n  select: {latest: true}\n  checks:\n    - objects:\n        items:\n          - {apiVersion: v1, kind: Namespace, name: ehr}\n  targets: {rto: 15m, rpo: 1h}\n"
	cfg, _ := os.ReadFile(s.config)
	os.WriteFile(s.config, append(cfg, []byte(drillYAML)...), 0o600)
	out, errs, code := run(t, "--config", s.config, "drill", "run", "clinic", "--signing-key", s.signingKey)
	// (This setup's backups hold no etcd snapshot, so the drill of the
	// real one stops after its selection: exit 5.)
	all := out + errs
	if code != ExitDrillFailed || !strings.Contains(all, "passed over: "+planted.Backup) || !strings.Contains(all, "no signed evidence record of it") ||
		!strings.Contains(all, "matches its signed evidence record") || strings.Contains(all, "manifest of backup "+planted.Backup+" matches") {
		t.Fatalf("drill with a planted latest backup: exit %d, want the planted one passed over and named, the real one selected\n%s\n%s", code, out, errs)
	}
}

// TestBackupSignedByKMS: with --signing-key awskms:alias/… (local-kms,
// found through the AWS SDK's own environment: AWS_ENDPOINT_URL_KMS,
// AWS_REGION, credentials), backups are signed by a key that never sits on
// this host; `evidence public-key awskms:…` prints the key KMS exports,
// and under it `backup verify --key` and `evidence verify --key` pass,
// while the forged point in time of issue 11 is still refused.
func TestBackupSignedByKMS(t *testing.T) {
	ctx := context.Background()
	k := testenv.StartKMS(t)
	t.Setenv("AWS_ENDPOINT_URL_KMS", k.Endpoint)
	t.Setenv("AWS_REGION", k.Region)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDLIFEBOATTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "lifeboat-test-secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	c := kms.New(kms.Options{Region: k.Region, BaseEndpoint: aws.String(k.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDLIFEBOATTEST", "lifeboat-test-secret", "")})
	key, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/lifeboat-evidence"), TargetKeyId: key.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}

	s := newRotateSetup(t)
	s.signingKey = "awskms:alias/lifeboat-evidence"
	ids := s.backups(t, 2)
	if _, err := os.Stat(filepath.Join(s.dir, "signing.pem")); err == nil {
		t.Fatal("a signing key file was written")
	}
	pub := s.signerPub(t)
	exported, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: key.KeyMetadata.KeyId})
	if err != nil {
		t.Fatal(err)
	}
	fromKMS, err := evidence.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: exported.PublicKey}))
	if err != nil {
		t.Fatal(err)
	}
	if fromFile, err := evidence.ReadPublicKeyFile(pub); err != nil || !fromFile.Equal(fromKMS) {
		t.Fatalf("evidence public-key printed another key than KMS exports: %v", err)
	}
	out, errs, code := run(t, "evidence", "verify", "--store-path", s.storeRoot, "--key", pub)
	if code != ExitOK || !strings.Contains(out, fromKMS.KeyID()) {
		t.Fatalf("evidence verify: exit %d\n%s\n%s", code, out, errs)
	}
	out, errs, code = run(t, "--config", s.config, "backup", "verify", ids[0], "--read-data", "--key", pub)
	if code != ExitOK || !strings.Contains(out, "signed evidence record matches") {
		t.Fatalf("backup verify: exit %d\n%s\n%s", code, out, errs)
	}
	s.forgePointInTime(t, ids[1], 6*time.Hour)
	_, errs, code = run(t, "--config", s.config, "backup", "verify", ids[1], "--key", pub)
	if code != ExitVerification || !strings.Contains(errs, "signed evidence record") {
		t.Fatalf("forged manifest under a KMS-signed record: exit %d\n%s", code, errs)
	}
}

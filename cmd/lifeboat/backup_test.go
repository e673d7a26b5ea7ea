package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/source/etcd/etcdtest"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// requireBackupCommands fails the test, saying why, when root.go does not
// register the backup and keys commands.
func requireBackupCommands(t *testing.T) {
	t.Helper()
	root := newRootCommand(io.Discard, io.Discard)
	for _, name := range []string{"backup", "keys"} {
		if !hasSubcommand(root, name) {
			t.Fatalf("root.go does not register the %q command (newBackupCommand(a), newKeysCommand(a))", name)
		}
	}
}

const testEncryptionConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: dGhpcyBpcyBub3QgYSByZWFsIGtleSBidXQgMzIgYnk=
      - identity: {}
`

// backupSetup is a configuration with an fs store, a local keyring
// (created with `keys init`) and plans, written to dir.
type backupSetup struct {
	dir, config, storeRoot, keyring string
}

// newBackupSetup writes the configuration: Store "local", KeyProvider
// "local", and one BackupPlan per name in plans, each taking etcd from the
// given endpoint and the encryption config.
func newBackupSetup(t *testing.T, plans map[string]string) backupSetup {
	t.Helper()
	dir := t.TempDir()
	s := backupSetup{dir: dir, config: filepath.Join(dir, "lifeboat.yaml"), storeRoot: filepath.Join(dir, "store"), keyring: filepath.Join(dir, "keyring.json")}
	cfg, enc := testConfigHead(t, dir, s.storeRoot, "{type: local, keyring: "+strconv.Quote(s.keyring)+"}")
	cfg += `---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: kms}
spec: {type: awskms, keyId: 1234abcd-12ab-34cd-56ef-1234567890ab}
`
	for name, endpoint := range plans {
		cfg += fmt.Sprintf(`---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: %s}
spec:
  store: local
  keyProvider: local
  retention: 1d
  sources:
    - etcd: {endpoints: [%s], dialTimeout: 2s}
    - encryptionConfig: {file: %s}
`, name, endpoint, strconv.Quote(enc))
	}
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// testConfigHead writes the test EncryptionConfiguration into dir and
// returns its path with the YAML of Store "local" (an fs store at
// storeRoot) and KeyProvider "local" of spec kpSpec (flow YAML).
func testConfigHead(t *testing.T, dir, storeRoot, kpSpec string) (cfg, enc string) {
	t.Helper()
	enc = filepath.Join(dir, "encryption-config.yaml")
	if err := os.WriteFile(enc, []byte(testEncryptionConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: local}
spec:
  type: fs
  path: %s
  objectLock: {mode: COMPLIANCE, retention: 1d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: %s
`, strconv.Quote(storeRoot), kpSpec), enc
}

// backupRun runs `backup run plan` in process and returns the manifest.
func backupRun(t *testing.T, s backupSetup, plan string) catalog.Manifest {
	t.Helper()
	out, errs, code := run(t, "--config", s.config, "-o", "json", "backup", "run", plan)
	if code != ExitOK {
		t.Fatalf("backup run %s: exit %d\n%s\n%s", plan, code, out, errs)
	}
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("backup run -o json: %v\n%s", err, out)
	}
	return m
}

func backupList(t *testing.T, s backupSetup, extra ...string) []job.BackupEntry {
	t.Helper()
	out, errs, code := run(t, append([]string{"--config", s.config, "-o", "json", "backup", "list"}, extra...)...)
	if code != ExitOK {
		t.Fatalf("backup list: exit %d\n%s", code, errs)
	}
	var list []job.BackupEntry
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("backup list -o json: %v\n%s", err, out)
	}
	return list
}

// flipByte changes one byte of an object in an fs store (objects are 0440
// under <root>/objects/<key>), as bit rot or tampering would.
func flipByte(t *testing.T, root, key string, at int64) {
	t.Helper()
	p := filepath.Join(root, "objects", filepath.FromSlash(key))
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// TestBackupCLI: keys init, backup run, list, show, verify and verify
// --read-data against a real etcd; then a corrupted artifact fails verify
// with exit code 4, naming it.
func TestBackupCLI(t *testing.T) {
	requireBackupCommands(t)
	e := testenv.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	etcdtest.Fill(t, ctx, etcdtest.Client(t, e.Endpoint), "/registry/configmaps/bulk/", 50, 40<<10)
	s := newBackupSetup(t, map[string]string{"clinic": e.Endpoint})

	out, errs, code := run(t, "keys", "init", "--keyring", s.keyring, "--key", "clinic-kek")
	if code != ExitOK || !strings.Contains(out, "clinic-kek") {
		t.Fatalf("keys init: exit %d\n%s\n%s", code, out, errs)
	}
	if fi, err := os.Stat(s.keyring); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring: %v %v", fi, err)
	}
	if _, errs, code := run(t, "keys", "init", "--keyring", s.keyring); code == ExitOK || !strings.Contains(errs, s.keyring) {
		t.Fatalf("keys init over an existing keyring: exit %d\n%s", code, errs)
	}

	out, errs, code = run(t, "--config", s.config, "backup", "run", "clinic")
	if code != ExitOK {
		t.Fatalf("backup run: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"clinic-", "complete", "etcd-snapshot.db", "encryption-config.yaml", "aescbc, identity", "/registry/configmaps/", "local:clinic-kek@1"} {
		if !strings.Contains(out, want) {
			t.Errorf("backup run output lacks %q:\n%s", want, out)
		}
	}
	m := backupRun(t, s, "clinic")

	list := backupList(t, s)
	if len(list) != 2 || list[0].Backup != m.Backup || list[0].Store != "local" || list[0].EtcdRevision != m.Etcd.Revision {
		t.Fatalf("backup list: %+v", list)
	}

	// Each committed backup appended a signed evidence record.
	out, errs, code = run(t, "evidence", "verify", "--store-path", s.storeRoot)
	if code != ExitOK || !strings.Contains(out, m.Backup) {
		t.Fatalf("evidence verify after two backups: exit %d\n%s\n%s", code, out, errs)
	}
	out, _, code = run(t, "--config", s.config, "backup", "list", "--plan", "clinic")
	if code != ExitOK || !strings.Contains(out, m.Backup) || !strings.Contains(out, "POINT IN TIME") {
		t.Fatalf("backup list table:\n%s", out)
	}

	out, errs, code = run(t, "--config", s.config, "-o", "json", "backup", "show", m.Backup)
	var shown catalog.Manifest
	if code != ExitOK || json.Unmarshal([]byte(out), &shown) != nil || shown.DataKeyID != m.DataKeyID || shown.Etcd.Inventory.Digest != m.Etcd.Inventory.Digest {
		t.Fatalf("backup show: exit %d\n%s\n%s", code, out, errs)
	}
	if strings.Contains(out, "dGhpcyBpcyBub3Qg") {
		t.Fatal("backup show prints the encryption config's key")
	}

	for _, extra := range [][]string{nil, {"--read-data"}} {
		out, errs, code := run(t, append([]string{"--config", s.config, "backup", "verify", m.Backup}, extra...)...)
		if code != ExitOK || !strings.Contains(out, "verified") {
			t.Fatalf("backup verify %v: exit %d\n%s\n%s", extra, code, out, errs)
		}
	}

	// Corrupt the snapshot artifact in the middle: verify fails with exit
	// code 4, naming the artifact's object key and the digest.
	a, _ := m.Artifact(catalog.ArtifactEtcdSnapshot)
	key := catalog.ArtifactKey(m.Backup, a.Name)
	flipByte(t, s.storeRoot, key, a.CiphertextSize/2)
	out, errs, code = run(t, "--config", s.config, "backup", "verify", m.Backup)
	if code != ExitVerification || !strings.Contains(errs, key) || !strings.Contains(errs, "ciphertext SHA-256") || !strings.Contains(out, "failed") {
		t.Fatalf("verify of a corrupted artifact: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	_, errs, code = run(t, "--config", s.config, "backup", "verify", m.Backup, "--read-data")
	if code != ExitVerification || !strings.Contains(errs, key) {
		t.Fatalf("verify --read-data of a corrupted artifact: exit %d\n%s", code, errs)
	}
	out, _, code = run(t, "--config", s.config, "-o", "json", "backup", "verify", m.Backup)
	var res catalog.VerifyResult
	if code != ExitVerification || json.Unmarshal([]byte(out), &res) != nil || res.OK || res.Artifacts[0].Ciphertext != catalog.CheckFailed {
		t.Fatalf("verify -o json: exit %d\n%s", code, out)
	}

	// A missing artifact is a verification failure too.
	other := list[1].Backup
	if err := os.Remove(filepath.Join(s.storeRoot, "objects", filepath.FromSlash(catalog.ArtifactKey(other, catalog.ArtifactEncryptionConfig)))); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "--config", s.config, "backup", "verify", other); code != ExitVerification || !strings.Contains(errs, catalog.ArtifactEncryptionConfig) {
		t.Fatalf("verify with a missing artifact: exit %d\n%s", code, errs)
	}
}

func TestBackupCLIErrors(t *testing.T) {
	requireBackupCommands(t)
	down := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	s := newBackupSetup(t, map[string]string{"down": down})
	if _, _, code := run(t, "keys", "init", "--keyring", s.keyring); code != ExitOK {
		t.Fatal(code)
	}
	_, errs, code := run(t, "--config", s.config, "backup", "run", "down")
	if code != ExitError || !strings.Contains(errs, down) || !strings.Contains(errs, "no answer") {
		t.Fatalf("backup run with etcd down: exit %d\n%s", code, errs)
	}
	if list := backupList(t, s); len(list) != 0 {
		t.Fatalf("a failed backup is listed: %+v", list)
	}
	// The failure is in the evidence log: kind backup, the ID the run
	// assigned, outcome failure, the step that failed.
	recs, _ := filepath.Glob(filepath.Join(s.storeRoot, "objects", "evidence", "*-backup-down-*.json"))
	if len(recs) != 1 {
		t.Fatalf("evidence records of the failed run: %v", recs)
	}
	rec, err := os.ReadFile(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rec), `"outcome":"failure"`) || !strings.Contains(string(rec), `"step":"etcd"`) ||
		!regexp.MustCompile(`"id":"down-\d{8}T\d{6}Z-[0-9a-f]{4}"`).Match(rec) || strings.Contains(string(rec), down) {
		t.Fatalf("failure record %s", rec)
	}
	if out, errs, code := run(t, "evidence", "verify", "--store-path", s.storeRoot); code != ExitOK {
		t.Fatalf("evidence verify: exit %d\n%s%s", code, out, errs)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"backup", "run", "nope"}, ExitUsage, `no BackupPlan named "nope"`},
		{[]string{"backup", "show", "not-an-id"}, ExitUsage, "backup ID"},
		{[]string{"backup", "show", "down-20260101T000000Z-abcd"}, ExitError, "incomplete"},
		{[]string{"backup", "verify", "other-20260101T000000Z-abcd"}, ExitUsage, "--store"},
		{[]string{"backup", "verify", "down-20260101T000000Z-abcd", "--read-data", "--key-provider", "kms"}, ExitError, "no manifest at backups/down-20260101T000000Z-abcd/manifest.json"},
		{[]string{"backup", "list", "--plan", "nope"}, ExitUsage, "nope"},
	} {
		_, errs, code := run(t, append([]string{"--config", s.config}, c.args...)...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want %d with %q; stderr:\n%s", c.args, code, c.code, c.want, errs)
		}
	}
	if _, errs, code := run(t, "backup", "list"); code != ExitUsage || !strings.Contains(errs, "--config") {
		t.Errorf("backup list without --config: exit %d\n%s", code, errs)
	}
	out, _, _ := run(t, "backup", "run", "--help")
	if !strings.Contains(out, "Examples:") || !strings.Contains(out, "backup run control-plane") {
		t.Errorf("backup run --help:\n%s", out)
	}
}

// TestBackupS3LockCheck: a plan whose S3 bucket has no Object Lock is
// refused before anything is written; with a locked bucket the backup
// goes through and verifies.
func TestBackupS3LockCheck(t *testing.T) {
	requireBackupCommands(t)
	srv := testenv.StartS3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", srv.Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	makeBucket(t, srv, "locked", true)
	makeBucket(t, srv, "unlocked", false)
	e := testenv.StartEtcd(t)

	dir := t.TempDir()
	keyring := filepath.Join(dir, "keyring.json")
	if _, _, code := run(t, "keys", "init", "--keyring", keyring); code != ExitOK {
		t.Fatal(code)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: {type: local, keyring: %s}
`, strconv.Quote(keyring))
	for _, b := range []string{"locked", "unlocked"} {
		fmt.Fprintf(&cfg, `---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: %[1]s}
spec:
  type: s3
  bucket: %[1]s
  prefix: clusters/test
  endpoint: %[2]s
  forcePathStyle: true
  objectLock: {mode: COMPLIANCE, retention: 1d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: to-%[1]s}
spec:
  store: %[1]s
  keyProvider: local
  retention: 1d
  sources: [{etcd: {endpoints: [%[3]s], dialTimeout: 30s}}]
`, b, srv.Endpoint, e.Endpoint)
	}
	path := filepath.Join(dir, "s3.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	_, errs, code := run(t, "--config", path, "backup", "run", "to-unlocked")
	if code == ExitOK || !strings.Contains(errs, "Object Lock is not enabled") || !strings.Contains(errs, "refused") {
		t.Fatalf("backup into an unlocked bucket: exit %d\n%s", code, errs)
	}
	st := s3Client(t, srv)
	objs, err := st.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String("unlocked")})
	if err != nil || len(objs.Contents) != 0 {
		t.Fatalf("objects in the unlocked bucket: %v %v", objs, err)
	}

	out, errs, code := run(t, "--config", path, "-o", "json", "backup", "run", "to-locked")
	if code != ExitOK {
		t.Fatalf("backup into a locked bucket: exit %d\n%s\n%s", code, out, errs)
	}
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "--config", path, "backup", "verify", m.Backup, "--read-data"); code != ExitOK {
		t.Fatalf("verify --read-data: exit %d\n%s", code, errs)
	}
	head, err := st.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String("locked"), Key: aws.String("clusters/test/" + catalog.ManifestKey(m.Backup))})
	if err != nil || head.ObjectLockMode != "COMPLIANCE" || head.ObjectLockRetainUntilDate == nil || !head.ObjectLockRetainUntilDate.Equal(m.RetainUntil) {
		t.Fatalf("manifest's lock: %+v %v", head, err)
	}

	// The backup's evidence record verifies straight from the bucket.
	out, errs, code = run(t, "--config", path, "-o", "json", "evidence", "verify", "--store", "locked")
	if code != ExitOK {
		t.Fatalf("evidence verify --store locked: exit %d\n%s\n%s", code, out, errs)
	}
	var vr struct {
		Store   string
		Valid   bool
		Records int
	}
	if err := json.Unmarshal([]byte(out), &vr); err != nil || !vr.Valid || vr.Records < 1 || vr.Store != "locked" {
		t.Fatalf("evidence verify --store locked: %v\n%s", err, out)
	}
	if _, _, code := run(t, "--config", path, "evidence", "verify", "--store", "nope"); code != ExitUsage {
		t.Errorf("unknown store: exit %d", code)
	}

	// The etcd snapshot comes out of the bucket decrypted and verified, and
	// etcd's own tool reads it.
	snap := filepath.Join(dir, "etcd-snapshot.db")
	if out, errs, code := run(t, "--config", path, "backup", "export", m.Backup, catalog.ArtifactEtcdSnapshot, "--out", snap); code != ExitOK {
		t.Fatalf("backup export: exit %d\n%s\n%s", code, out, errs)
	}
	status, err := exec.Command(testenv.Binary(t, "etcdutl"), "snapshot", "status", snap, "-w", "json").CombinedOutput()
	if err != nil || !strings.Contains(string(status), `"revision"`) {
		t.Fatalf("etcdutl snapshot status of the exported snapshot: %v\n%s", err, status)
	}

	// Issue 11's attack: anyone with s3:PutObject publishes new versions
	// of the manifest (its point in time six hours on) and of the newest
	// evidence record. Object Lock keeps the first versions, which are
	// the ones read; every command that checks names the keys.
	manifestKey := "clusters/test/" + catalog.ManifestKey(m.Backup)
	forged := m
	forged.Started, forged.Completed = m.Started.Add(6*time.Hour), m.Completed.Add(6*time.Hour)
	fb, err := forged.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("locked"), Key: aws.String(manifestKey), Body: bytes.NewReader(fb)}); err != nil {
		t.Fatalf("publish a second version of the manifest: %v", err)
	}
	recs, err := st.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String("locked"), Prefix: aws.String("clusters/test/evidence/0")})
	if err != nil || len(recs.Contents) == 0 {
		t.Fatalf("list evidence: %v", err)
	}
	recordKey := aws.ToString(recs.Contents[len(recs.Contents)-1].Key)
	if _, err := st.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("locked"), Key: aws.String(recordKey), Body: strings.NewReader(`{"forged":true}`)}); err != nil {
		t.Fatalf("publish a second version of %s: %v", recordKey, err)
	}
	out, errs, code = run(t, "--config", path, "-o", "json", "backup", "list")
	if code != ExitOK || !strings.Contains(out, m.Started.UTC().Format(time.RFC3339Nano)) || strings.Contains(out, forged.Started.UTC().Format(time.RFC3339Nano)) {
		t.Fatalf("backup list after the forgery: exit %d, want the genuine start %s\n%s\n%s", code, m.Started.UTC().Format(time.RFC3339Nano), out, errs)
	}
	for _, args := range [][]string{
		{"backup", "verify", m.Backup},
		{"backup", "verify", m.Backup, "--read-data"},
		{"evidence", "verify", "--store", "locked"},
	} {
		out, errs, code = run(t, append([]string{"--config", path}, args...)...)
		want := catalog.ManifestKey(m.Backup)
		if args[0] == "evidence" {
			want = strings.TrimPrefix(recordKey, "clusters/test/")
		}
		if code != ExitVerification || !strings.Contains(out+errs, "tampering") || !strings.Contains(out+errs, want) {
			t.Errorf("%v after the forgery: exit %d, want %d naming %s as tampering\n%s\n%s", args, code, ExitVerification, want, out, errs)
		}
	}
	out, errs, code = run(t, "--config", path, "store", "check", "locked")
	if code == ExitOK || !strings.Contains(out, "tampering") || !strings.Contains(out, catalog.ManifestKey(m.Backup)) {
		t.Errorf("store check after the forgery: exit %d, want FAIL naming the manifest\n%s\n%s", code, out, errs)
	}
}

func s3Client(t *testing.T, srv *testenv.S3) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(srv.Endpoint), Region: srv.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	})
}

// TestBackupKilled kills a real `lifeboat backup run` with SIGKILL while
// the etcd snapshot streams (slowed by a proxy): the backup has no
// manifest and is not listed, and the next run of the plan succeeds.
func TestBackupKilled(t *testing.T) {
	requireBackupCommands(t)
	bin := filepath.Join(t.TempDir(), "lifeboat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e := testenv.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	etcdtest.Fill(t, ctx, etcdtest.Client(t, e.Endpoint), "/registry/configmaps/bulk/", 128, 128<<10) // 16 MiB
	proxy := etcdtest.NewProxy(t, e.Endpoint, etcdtest.ProxyOptions{BytesPerSecond: 2 << 20})
	s := newBackupSetup(t, map[string]string{"slow": proxy.Endpoint})
	if _, _, code := run(t, "keys", "init", "--keyring", s.keyring); code != ExitOK {
		t.Fatal(code)
	}

	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config", s.config, "backup", "run", "slow")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the snapshot artifact is streaming into the store's
	// temporary directory, then kill the process as a crash would.
	deadline := time.Now().Add(time.Minute)
	for {
		if n := tmpBytes(s.storeRoot); n >= 1<<20 {
			t.Logf("killing lifeboat with %d bytes of the artifact written", n)
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the artifact never started streaming; output:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("lifeboat was not killed by SIGKILL (%v); it finished first?\n%s", err, logs.String())
	}

	if list := backupList(t, s); len(list) != 0 {
		t.Fatalf("a killed backup is listed: %+v", list)
	}
	manifests, _ := filepath.Glob(filepath.Join(s.storeRoot, "objects", "backups", "*", "manifest.json"))
	snapshots, _ := filepath.Glob(filepath.Join(s.storeRoot, "objects", "backups", "*", "artifacts", catalog.ArtifactEtcdSnapshot))
	if len(manifests) != 0 || len(snapshots) != 0 {
		t.Fatalf("the killed backup left a manifest %v or a committed snapshot %v", manifests, snapshots)
	}

	proxy.SetRate(0)
	out, err := exec.Command(bin, "--config", s.config, "-o", "json", "backup", "run", "slow").Output()
	if err != nil {
		t.Fatalf("the next run failed: %v\n%s", err, out)
	}
	list := backupList(t, s)
	if len(list) != 1 || list[0].Plan != "slow" {
		t.Fatalf("after the next run: %+v", list)
	}
	if _, errs, code := run(t, "--config", s.config, "backup", "verify", list[0].Backup, "--read-data"); code != ExitOK {
		t.Fatalf("verify: exit %d\n%s", code, errs)
	}
}

// tmpBytes is the size of the largest file in an fs store's tmp/.
func tmpBytes(root string) int64 {
	entries, _ := os.ReadDir(filepath.Join(root, "tmp"))
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Size() > n {
			n = fi.Size()
		}
	}
	return n
}

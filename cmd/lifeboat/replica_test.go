package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/replica"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

const replicaConfig = `apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: {type: local, keyring: %[1]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: primary}
spec:
  type: s3
  bucket: primary
  prefix: clusters/test
  endpoint: %[2]s
  forcePathStyle: true
  objectLock: {mode: COMPLIANCE, retention: 1d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: dr}
spec:
  type: s3
  bucket: dr-region
  prefix: clusters/test
  endpoint: %[3]s
  forcePathStyle: true
  objectLock: {mode: COMPLIANCE, retention: 2d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: control-plane}
spec:
  store: primary
  replicas: [dr]
  keyProvider: local
  retention: 1d
  sources:
    - etcd: {endpoints: [%[4]q], dialTimeout: 30s}
    - encryptionConfig: {file: %[5]q}
`

// objectVersions lists every version and delete marker under prefix in a
// bucket, by key.
func objectVersions(t *testing.T, c *s3.Client, bucket, prefix string) (map[string][]string, int) {
	t.Helper()
	out := map[string][]string{}
	res, err := c.ListObjectVersions(t.Context(), &s3.ListObjectVersionsInput{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range res.Versions {
		out[aws.ToString(v.Key)] = append(out[aws.ToString(v.Key)], aws.ToString(v.VersionId))
	}
	return out, len(res.DeleteMarkers)
}

// TestReplicaTwoServers: a plan replicating from one versitygw server to a
// second (two regions): a backup taken while the replica's server is down
// commits and says so; a copy interrupted by stopping the replica's
// server resumes with `backup replicate` and completes without writing a
// locked object twice; backup list shows the states; the replica verifies
// (data, MAC, signed record, evidence log); a drill from the replica
// passes; a byte flipped on the replica is caught by `backup verify
// --store`.
func TestReplicaTwoServers(t *testing.T) {
	requireBackupCommands(t)
	t.Setenv(embedded.EnvKubeAPIServer, testenv.Binary(t, "kube-apiserver"))
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	srvA := testenv.StartS3(t)
	srvB := testenv.StartS3WithSecret(t, srvA.SecretKey)
	t.Setenv("AWS_ACCESS_KEY_ID", srvA.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srvA.SecretKey)
	t.Setenv("AWS_REGION", srvA.Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	makeBucket(t, srvA, "primary", true)
	makeBucket(t, srvB, "dr-region", true)
	src := testenv.StartCluster(t)
	if _, err := seedDemoCluster(ctx, scratch.Access{Server: src.Server, Client: src.Client()}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	keyring, signingKey := filepath.Join(dir, "keyring.json"), filepath.Join(dir, "signing.pem")
	if _, err := local.Create(ctx, local.Options{Path: keyring}, "dr-kek"); err != nil {
		t.Fatal(err)
	}
	signer, err := evidence.LoadOrCreateSigner(signingKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "signer.pub")
	pemKey, _ := evidence.MarshalPublicKey(signer.PublicKey())
	if err := os.WriteFile(pubFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, replicaConfig, keyring, srvA.Endpoint, srvB.Endpoint, src.Etcd.Endpoint, src.EncryptionConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	listed := func() job.BackupEntry {
		t.Helper()
		out, errs, code := run(t, "--config", cfg, "-o", "json", "backup", "list")
		var list []job.BackupEntry
		if code != ExitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
			t.Fatalf("backup list: exit %d\n%s\n%s", code, out, errs)
		}
		return list[0]
	}

	// The replica's region is down: the backup commits all the same,
	// says so, and the failure is recorded.
	srvB.Stop()
	out, errs, code := run(t, "--config", cfg, "-o", "json", "backup", "run", "control-plane", "--signing-key", signingKey)
	if code != ExitOK || !strings.Contains(errs, "is committed, but not every replica has it yet") {
		t.Fatalf("backup run with the replica down: exit %d\n%s\n%s", code, out, errs)
	}
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if e := listed(); len(e.Replicas) != 1 || e.Replicas[0] != (job.ReplicaState{Store: "dr", State: replica.StateUnreachable}) {
		t.Fatalf("replica down: %+v", e.Replicas)
	}
	srvB.Restart(srvB.Ready)
	if e := listed(); e.Replicas[0].State != replica.StateMissing {
		t.Fatalf("replica back, nothing copied: %+v", e.Replicas)
	}

	// A copy interrupted by stopping the replica's server after its first
	// object.
	set, err := config.LoadPaths(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env := &wire.Env{Set: set, Getenv: os.Getenv}
	var first string
	res, err := job.Replicate(ctx, env, m.Backup, []string{"dr"}, job.ReplicateOptions{Signer: signer, Progress: func(e replica.Event) {
		if first == "" && e.Copied {
			first = e.Key
			srvB.Stop()
		}
	}})
	if err == nil || first == "" || len(res) != 1 || res[0].State != replica.StateIncomplete || res[0].Record == "" {
		t.Fatalf("interrupted copy: %+v %v", res, err)
	}
	t.Logf("interrupted after %s: %v", first, err)
	srvB.Restart(srvB.Ready)
	cB := s3Client(t, srvB)
	before, _ := objectVersions(t, cB, "dr-region", "clusters/test/")
	if len(before) != 1 || len(before["clusters/test/"+first]) != 1 {
		t.Fatalf("after the interruption the replica holds %v, want only %s", before, first)
	}
	if e := listed(); e.Replicas[0].State != replica.StateIncomplete {
		t.Fatalf("interrupted: %+v", e.Replicas)
	}

	// The catch-up resumes: the object already there is read back and
	// kept, the rest copied, the manifest last.
	out, errs, code = run(t, "--config", cfg, "backup", "replicate", m.Backup, "--to", "dr", "--signing-key", signingKey)
	if code != ExitOK || !strings.Contains(out, "replicated") {
		t.Fatalf("backup replicate: exit %d\n%s\n%s", code, out, errs)
	}
	after, markers := objectVersions(t, cB, "dr-region", "clusters/test/")
	for key, vs := range after {
		if len(vs) != 1 {
			t.Errorf("%s has %d versions on the replica: an object was written twice", key, len(vs))
		}
	}
	if markers != 0 || after["clusters/test/"+first][0] != before["clusters/test/"+first][0] {
		t.Fatalf("%s rewritten: version %v, was %v (%d delete markers)", first, after["clusters/test/"+first], before["clusters/test/"+first], markers)
	}
	for _, key := range []string{catalog.ManifestKey(m.Backup), catalog.ArtifactKey(m.Backup, catalog.ArtifactEtcdSnapshot), "evidence/seq/0000000001.json"} {
		if len(after["clusters/test/"+key]) != 1 {
			t.Errorf("%s not on the replica", key)
		}
	}
	// Locked on the replica under its own, longer rule.
	head, err := cB.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("dr-region"), Key: aws.String("clusters/test/" + catalog.ArtifactKey(m.Backup, catalog.ArtifactEtcdSnapshot))})
	if err != nil || head.ObjectLockMode != "COMPLIANCE" || head.ObjectLockRetainUntilDate == nil || !head.ObjectLockRetainUntilDate.Equal(m.RetainUntil.Add(24*time.Hour)) {
		t.Fatalf("replica's lock: %v %v %v, want COMPLIANCE until %s (the replica's 2d)", head.ObjectLockMode, head.ObjectLockRetainUntilDate, err, m.RetainUntil.Add(24*time.Hour))
	}
	if e := listed(); e.Replicas[0].State != replica.StateReplicated {
		t.Fatalf("after catch-up: %+v", e.Replicas)
	}

	// Every reader works on the replica: data, MAC, signed record, log.
	out, errs, code = run(t, "--config", cfg, "backup", "verify", m.Backup, "--store", "dr", "--read-data", "--key", pubFile)
	if code != ExitOK || !strings.Contains(out, "MAC ok, signed evidence record matches") {
		t.Fatalf("verify the replica: exit %d\n%s\n%s", code, out, errs)
	}
	out, errs, code = run(t, "--config", cfg, "-o", "json", "evidence", "verify", "--store", "dr", "--key", pubFile)
	if code != ExitOK || !strings.Contains(out, `"valid": true`) {
		t.Fatalf("evidence verify --store dr: exit %d\n%s\n%s", code, out, errs)
	}

	// A drill from the replica.
	out, errs, code = runOwn(t, newDrillCommand, []string{cfg, "../../drills/control-plane.yaml"}, "drill", "run", "control-plane", "--store", "dr", "--signing-key", signingKey, "-o", "json")
	var dr drillOutput
	if code != ExitOK || json.Unmarshal([]byte(out), &dr) != nil || dr.Report.Verdict != evidence.VerdictPass || dr.ReadFrom != "dr" || dr.Store != "primary" {
		t.Fatalf("drill from the replica: exit %d\n%s\n%s", code, out, errs)
	}
	if dr.Report.BackupID != m.Backup {
		t.Fatalf("drilled %s, want %s", dr.Report.BackupID, m.Backup)
	}
	// The primary's log: the drill names the replica it read; the
	// replications are recorded, failures too.
	primary, err := env.OpenStore(ctx, func() *config.Store { cs, _ := set.Store("primary"); return cs }(), true)
	if err != nil {
		t.Fatal(err)
	}
	log := evidence.NewLog(primary, nil, nil, evidence.WithTrustedKeys(signer.PublicKey()))
	drills, err := log.OfKind(ctx, evidence.KindDrill)
	if err != nil || len(drills) != 1 || drills[0].Subject["fromStore"] != "dr" {
		t.Fatalf("drill record: %v %v", drills, err)
	}
	reps, err := log.OfKind(ctx, job.KindReplica)
	var outcomes []string
	for _, r := range reps {
		outcomes = append(outcomes, r.Outcome+"/"+r.Subject["step"].(string))
	}
	if err != nil || strings.Join(outcomes, ",") != "failure/open,failure/artifact,success/" {
		t.Fatalf("replica records: %v %v", outcomes, err)
	}

	// A restore from the replica (the primary's region lost, say): its
	// record goes to the plan's store, never into the replica's log, which
	// stays its primary's: the next replication continues it.
	restoreDir := filepath.Join(dir, "restore")
	out, errs, code = run(t, "--config", cfg, "restore", "apply", m.Backup, "--store", "dr", "--signing-key", signingKey, "--confirm", m.Backup,
		"--member", "etcd-a=http://127.0.0.1:"+fmt.Sprint(testenv.FreePort(t)), "--out", restoreDir)
	if code != ExitOK || !strings.Contains(out, "Restored backup") {
		t.Fatalf("restore apply --store dr: exit %d\n%s\n%s", code, out, errs)
	}
	if restores, err := log.OfKind(ctx, job.KindRestore); err != nil || len(restores) != 1 {
		t.Fatalf("restore record on the primary: %v %v", restores, err)
	}
	if _, errs, code := run(t, "--config", cfg, "backup", "replicate", m.Backup, "--signing-key", signingKey); code != ExitOK {
		t.Fatalf("replicate after a restore from the replica: exit %d\n%s", code, errs)
	}
	out, errs, code = run(t, "--config", cfg, "-o", "json", "evidence", "verify", "--store", "dr", "--key", pubFile)
	if code != ExitOK || !strings.Contains(out, `"restore": 1`) {
		t.Fatalf("the replica's log after the restore: exit %d\n%s\n%s", code, out, errs)
	}

	// A byte flipped on the replica's disk, behind the server's back.
	flipped := filepath.Join(srvB.Root, "dr-region", "clusters", "test", filepath.FromSlash(catalog.ArtifactKey(m.Backup, catalog.ArtifactEtcdSnapshot)))
	flipFile(t, flipped, 4096)
	out, errs, code = run(t, "--config", cfg, "backup", "verify", m.Backup, "--store", "dr")
	if code != ExitVerification || !strings.Contains(errs, catalog.ArtifactKey(m.Backup, catalog.ArtifactEtcdSnapshot)) {
		t.Fatalf("verify the flipped replica: exit %d, want %d naming the artifact\n%s\n%s", code, ExitVerification, out, errs)
	}
	if _, errs, code := run(t, "--config", cfg, "backup", "verify", m.Backup); code != ExitOK {
		t.Fatalf("the primary after the replica's flip: exit %d\n%s", code, errs)
	}
}

// flipFile changes one byte of a file.
func flipFile(t *testing.T, path string, at int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, fi.Mode()|0o200); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestRestoreEtcdThreeMembers is the lost-control-plane restore: a real
// etcd holding a Secret's key is backed up; `restore plan` verifies and
// writes nothing; `restore apply` refuses without --confirm, then writes
// three member data directories and the encryption configuration (0600);
// three real etcd processes started on them form one healthy cluster of
// exactly those members that serves the backed-up key, at a revision bumped
// past the snapshot's; a signed restore record names the stages.
func TestRestoreEtcdThreeMembers(t *testing.T) {
	src := testenv.StartEtcd(t)
	etcdctl := testenv.Binary(t, "etcdctl")
	ctl := func(endpoints string, args ...string) string {
		t.Helper()
		out, err := exec.Command(etcdctl, append([]string{"--endpoints", endpoints, "--dial-timeout", "5s"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("etcdctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ctl(src.Endpoint, "put", "/registry/secrets/ehr/db", "PHI-canary-restore")

	s := newRotateSetupWith(t, "")
	if _, errs, code := run(t, "keys", "init", "--keyring", s.keyring, "--key", "clinic-kek"); code != ExitOK {
		t.Fatalf("keys init: %s", errs)
	}
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte(fmt.Sprintf(`---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: control-plane}
spec:
  store: local
  keyProvider: local
  retention: 1d
  sources:
    - etcd: {endpoints: [%s]}
    - encryptionConfig: {file: %s}
`, strconv.Quote(src.Endpoint), strconv.Quote(filepath.Join(s.dir, "encryption-config.yaml"))))...)
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "--config", s.config, "-o", "json", "backup", "run", "control-plane", "--signing-key", s.signingKey)
	if code != ExitOK {
		t.Fatalf("backup run: exit %d\n%s\n%s", code, out, errs)
	}
	var m catalog.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}

	type member struct{ name, peer, client string }
	var members []member
	args := []string{"--config", s.config}
	var flags []string
	for _, n := range []string{"etcd-a", "etcd-b", "etcd-c"} {
		mem := member{n, "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))}
		members = append(members, mem)
		flags = append(flags, "--member", mem.name+"="+mem.peer)
	}
	outDir := filepath.Join(s.dir, "restore")
	flags = append(flags, "--out", outDir)

	out, errs, code = run(t, append(append(args, "restore", "plan", m.Backup), flags...)...)
	if code != ExitOK || !strings.Contains(out, "Would restore") || !strings.Contains(out, "Nothing was written") {
		t.Fatalf("restore plan: exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := os.Stat(outDir); !os.IsNotExist(err) {
		t.Fatalf("restore plan wrote %s", outDir)
	}
	_, errs, code = run(t, append(append(args, "restore", "apply", m.Backup, "--signing-key", s.signingKey), flags...)...)
	if code == ExitOK || !strings.Contains(errs, "--confirm "+m.Backup) {
		t.Fatalf("restore apply without --confirm: exit %d\n%s", code, errs)
	}
	out, errs, code = run(t, append(append(args, "restore", "apply", m.Backup, "--signing-key", s.signingKey, "--confirm", m.Backup), flags...)...)
	if code != ExitOK || !strings.Contains(out, "Restored backup") {
		t.Fatalf("restore apply: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("restore apply:\n%s", out)
	enc := filepath.Join(outDir, catalog.ArtifactEncryptionConfig)
	if fi, err := os.Stat(enc); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("encryption configuration: %v %v", fi, err)
	}

	etcdBin := testenv.Binary(t, "etcd")
	var endpoints []string
	for _, mem := range members {
		cmd := exec.Command(etcdBin, "--name", mem.name, "--data-dir", filepath.Join(outDir, mem.name+".etcd"),
			"--listen-peer-urls", mem.peer, "--initial-advertise-peer-urls", mem.peer,
			"--listen-client-urls", mem.client, "--advertise-client-urls", mem.client)
		logf, _ := os.Create(filepath.Join(s.dir, mem.name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("--- %s ---\n%s", mem.name, b)
			}
		})
		endpoints = append(endpoints, mem.client)
	}
	all := strings.Join(endpoints, ",")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		if out, err := exec.CommandContext(ctx, etcdctl, "--endpoints", all, "--dial-timeout", "2s", "endpoint", "health").CombinedOutput(); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("the restored cluster never became healthy: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := ctl(all, "get", "/registry/secrets/ehr/db", "--print-value-only"); strings.TrimSpace(got) != "PHI-canary-restore" {
		t.Fatalf("restored key: %q", got)
	}
	list := ctl(all, "member", "list")
	for _, mem := range members {
		if !strings.Contains(list, mem.name) || !strings.Contains(list, mem.peer) {
			t.Fatalf("member list lacks %s (%s):\n%s", mem.name, mem.peer, list)
		}
	}
	if n := strings.Count(strings.TrimSpace(list), "\n") + 1; n != 3 {
		t.Fatalf("member list has %d members, want 3:\n%s", n, list)
	}
	var status []struct {
		Status struct {
			Header struct {
				Revision int64 `json:"revision"`
			} `json:"header"`
		} `json:"Status"`
	}
	if err := json.Unmarshal([]byte(ctl(endpoints[0], "endpoint", "status", "-w", "json")), &status); err != nil || len(status) != 1 {
		t.Fatalf("endpoint status: %v", err)
	}
	if rev := status[0].Status.Header.Revision; rev <= job.RestoreRevisionBump {
		t.Fatalf("restored revision %d, want it bumped past %d", rev, job.RestoreRevisionBump)
	}
	recs := s.records(t, job.KindRestore)
	if len(recs) != 1 || recs[0].Subject["backup"] != m.Backup {
		t.Fatalf("restore records: %+v", recs)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestRestoreManifests: a backup of a seeded real cluster's objects is
// restored into a second, empty real kube-apiserver. The dry run admits
// everything, persists nothing and prints the target's kube-system UID;
// --apply without that UID is refused; with it, the objects are created
// (the ehr namespace, its Secret, Deployment and NetworkPolicy are served)
// and a signed restore record names the target; a second apply skips
// everything that exists.
func TestRestoreManifests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src := testenv.StartCluster(t)
	if _, err := seedDemoCluster(ctx, scratch.Access{Server: src.Server, Client: src.Client()}); err != nil {
		t.Fatal(err)
	}
	dst := testenv.StartCluster(t)

	s := newRotateSetup(t)
	s.addPlan(t, fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: objects}
spec:
  store: local
  keyProvider: local
  retention: 1d
  cluster: {kubeconfig: %s}
  sources:
    - manifests: {}
`, strconv.Quote(src.Kubeconfig)))
	m := s.backupRun(t, "objects")
	pub := s.signerPub(t)
	restore := func(extra ...string) (string, string, int) {
		return run(t, append([]string{"--config", s.config, "restore", "manifests", m.Backup, "--kubeconfig", dst.Kubeconfig, "--key", pub, "--signing-key", s.signingKey}, extra...)...)
	}
	served := func(path string) bool {
		var v map[string]any
		return getJSON(ctx, dst, path, &v) == nil
	}

	out, errs, code := restore()
	uid := regexp.MustCompile(`kube-system UID ([0-9a-f-]{36})`).FindStringSubmatch(out)
	if code != ExitOK || uid == nil || !strings.Contains(out, "Would restore") || !strings.Contains(out, "Nothing was persisted") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("dry run:\n%s", out)
	if served("/api/v1/namespaces/ehr") {
		t.Fatal("the dry run created namespace ehr")
	}
	_, errs, code = restore("--apply")
	if code == ExitOK || !strings.Contains(errs, "--confirm "+uid[1]) {
		t.Fatalf("--apply without --confirm: exit %d\n%s", code, errs)
	}
	out, errs, code = restore("--apply", "--confirm", uid[1])
	if code != ExitOK || !strings.Contains(out, "Restored: backup "+m.Backup) || !strings.Contains(out, "Restore record: evidence/") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	for _, p := range []string{"/api/v1/namespaces/ehr", "/api/v1/namespaces/ehr/secrets/ehr-api-credentials",
		"/apis/apps/v1/namespaces/ehr/deployments/ehr-api", "/apis/networking.k8s.io/v1/namespaces/ehr/networkpolicies/default-deny"} {
		if !served(p) {
			t.Errorf("not restored: %s", p)
		}
	}
	recs := s.records(t, job.KindRestore)
	if len(recs) != 1 || recs[0].Subject["target"] != "manifests" || recs[0].Subject["kubeSystemUID"] != uid[1] {
		t.Fatalf("restore records: %+v", recs)
	}
	out, errs, code = restore("--apply", "--confirm", uid[1], "-o", "json")
	var again job.RestoreManifestsResult
	if code != ExitOK || json.Unmarshal([]byte(out), &again) != nil || again.Restore.Counts["created"] != 0 || again.Restore.Counts["updated"] != 0 {
		t.Fatalf("second apply: exit %d\n%s\n%s", code, out, errs)
	}
}

package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

// TestBackupShowPolicies: backup show --policies lists a manifests
// export's policy objects in the table (kind, namespace, name, short
// digest, Pod Security labels) and adds them to -o json; without the flag
// the output is the manifest alone.
func TestBackupShowPolicies(t *testing.T) {
	requireBackupCommands(t)
	ctx := context.Background()
	s := newBackupSetup(t, map[string]string{"cluster": "http://127.0.0.1:1"})
	st, err := fs.Open(ctx, fs.Options{Root: s.storeRoot})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	id, err := catalog.NewID("cluster", started)
	if err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	roleSum := "0123456789ab" + strings.Repeat("cd", 26)
	m := catalog.Manifest{
		Format: catalog.ManifestFormat, Backup: id, Plan: "cluster", Status: catalog.StatusComplete,
		Started: started, Completed: started.Add(time.Second), RetainUntil: started.Add(24 * time.Hour),
		KEK: keys.Ref{Provider: "local", Key: "k", Version: "1"}, DataKeyID: strings.Repeat("0f", 16),
		Artifacts: []catalog.Artifact{{Name: catalog.ArtifactManifests, Source: catalog.SourceManifests, Compression: "zstd",
			PlaintextSize: 10, PlaintextSHA256: sum, CiphertextSize: 20, CiphertextSHA256: sum}},
		Manifests: &catalog.Manifests{
			Objects: 3,
			Counts: []catalog.ObjectCount{{Version: "v1", Kind: "Namespace", Count: 2},
				{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role", Namespace: "ehr", Count: 1}},
			Policies: []catalog.PolicyObject{
				{Version: "v1", Kind: "Namespace", Name: "ehr", SHA256: sum, Labels: map[string]string{
					"pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/enforce": "restricted"}},
				{Version: "v1", Kind: "Namespace", Name: "scratch", SHA256: sum},
				{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role", Namespace: "ehr", Name: "reader", SHA256: roleSum},
			},
			IndexSHA256: sum,
		},
		Lifeboat: catalog.Lifeboat{Version: "test"},
		MAC:      strings.Repeat("cd", 32), // `backup show` reads no data key
	}
	if _, err := catalog.Write(ctx, st, m); err != nil {
		t.Fatal(err)
	}

	out, errs, code := run(t, "--config", s.config, "backup", "show", id, "--policies")
	t.Logf("show --policies:\n%s", out)
	if code != ExitOK {
		t.Fatalf("show --policies: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{
		"KIND", "POD SECURITY", id,
		"Role.rbac.authorization.k8s.io  ehr        reader   0123456789ab",
		"enforce=restricted,warn=restricted", "scratch", "(none)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show --policies lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, roleSum) {
		t.Errorf("the table shows full digests:\n%s", out)
	}

	out, errs, code = run(t, "--config", s.config, "-o", "json", "backup", "show", id, "--policies")
	var shown struct {
		catalog.Manifest
		Policies []catalog.PolicyObject `json:"policies"`
	}
	if code != ExitOK || json.Unmarshal([]byte(out), &shown) != nil || shown.Backup != id || len(shown.Policies) != 3 ||
		shown.Policies[2].SHA256 != roleSum || shown.Policies[0].Labels["pod-security.kubernetes.io/warn"] != "restricted" {
		t.Fatalf("show -o json --policies: exit %d\n%s\n%s", code, out, errs)
	}

	out, _, code = run(t, "--config", s.config, "backup", "show", id)
	if code != ExitOK || strings.Contains(out, "POD SECURITY") {
		t.Fatalf("show without --policies:\n%s", out)
	}
	out, _, code = run(t, "--config", s.config, "-o", "json", "backup", "show", id)
	// manifests.policies is indented by 4; a top-level field would be by 2.
	if code != ExitOK || strings.Contains(out, "\n  \"policies\"") || !strings.Contains(out, "\n    \"policies\"") {
		t.Fatalf("show -o json without --policies has a top-level policies field:\n%s", out)
	}
}

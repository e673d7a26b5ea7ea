package backup_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

// TestPublishRecordsEverySection: a backup's evidence record says what
// each source took, so an auditor reading the log alone sees the volumes,
// Vault keys and Velero backup behind it, and never an object name of the
// manifests export.
func TestPublishRecordsEverySection(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sum := strings.Repeat("ab", 32)
	t0 := time.Now().UTC().Truncate(time.Second)
	m := catalog.Manifest{
		Format: catalog.ManifestFormat, Backup: "all-20261126T010000Z-0a1b", Plan: "all", Status: catalog.StatusPartial,
		Started: t0, Completed: t0.Add(time.Minute), RetainUntil: t0.Add(24 * time.Hour),
		KEK: keys.Ref{Provider: "local", Key: "k", Version: "1"}, DataKeyID: strings.Repeat("0f", 16),
		Artifacts: []catalog.Artifact{{Name: catalog.ArtifactManifests, Source: catalog.SourceManifests, Compression: "zstd",
			PlaintextSize: 10, PlaintextSHA256: sum, CiphertextSize: 20, CiphertextSHA256: sum}},
		Manifests: &catalog.Manifests{Objects: 3, IndexSHA256: sum,
			Counts:   []catalog.ObjectCount{{Version: "v1", Kind: "ConfigMap", Namespace: "ehr", Count: 3}},
			Policies: []catalog.PolicyObject{{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole", Name: "reader", SHA256: sum}}},
		Volumes: &catalog.Volumes{Snapshots: []catalog.VolumeSnapshot{
			{Namespace: "ehr", Claim: "db", Snapshot: "s-db", Content: "c", Driver: "d", Handle: "h-db", RestoreSize: 1 << 30, ReadyAt: t0},
			{Namespace: "ehr", Claim: "logs", Snapshot: "s-logs", Error: "timed out"}}},
		Velero:   &catalog.Velero{Namespace: "velero", Backup: "all-20261126t010000z-0a1b", Phase: "Completed", Warnings: 1},
		Skipped:  []catalog.Skip{{Source: "volumes", Reason: "ehr/logs: timed out"}},
		Lifeboat: catalog.Lifeboat{Version: "test"}, MAC: strings.Repeat("cd", 32),
	}
	signer, err := evidence.LoadOrCreateSigner(filepath.Join(t.TempDir(), "signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := backup.Publish(ctx, m, backup.PublishOptions{Store: f.st, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rec.Subject)
	if err != nil {
		t.Fatal(err)
	}
	sub := string(b)
	for _, want := range []string{
		`"manifests":{"inconsistentResources":0,"indexSHA256":"` + sum + `","objects":3,"policyObjects":1,"skippedResources":0}`,
		`{"claim":"db","handle":"h-db","namespace":"ehr","restoreSize":1073741824,"snapshot":"s-db"}`,
		`{"claim":"logs","failed":true,"namespace":"ehr","snapshot":"s-logs"}`,
		`"failed":1`,
		`"velero":{"backup":"all-20261126t010000z-0a1b","errors":0,"namespace":"velero","phase":"Completed","warnings":1}`,
	} {
		if !strings.Contains(sub, want) {
			t.Errorf("record subject lacks %s:\n%s", want, sub)
		}
	}
	if rec.Outcome != evidence.OutcomePartial || strings.Contains(sub, "reader") || strings.Contains(sub, "ConfigMap") {
		t.Errorf("outcome %s, subject %s", rec.Outcome, sub)
	}
}

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// TestManifestTableSections: backup show summarises every source section
// without printing object names, which stay inside the encrypted artifact.
func TestManifestTableSections(t *testing.T) {
	now := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	m := catalog.Manifest{
		Backup: "p-20261126T010000Z-abcd", Plan: "p", Status: catalog.StatusPartial,
		Started: now, Completed: now.Add(time.Second), RetainUntil: now.Add(time.Hour),
		Manifests: &catalog.Manifests{Objects: 5, IndexSHA256: strings.Repeat("a", 64),
			Counts: []catalog.ObjectCount{
				{Version: "v1", Kind: "ConfigMap", Namespace: "ehr", Count: 3},
				{Version: "v1", Kind: "ConfigMap", Namespace: "billing", Count: 1},
				{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole", Count: 1}},
			Policies:     []catalog.PolicyObject{{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole", Name: "reader", SHA256: strings.Repeat("b", 64)}},
			Skipped:      []catalog.ResourceSkip{{Resource: "secrets/v1", Reason: "forbidden"}},
			Inconsistent: []string{"configmaps/v1", "feeds.lifeboat-test.dev/v1"}},
		Volumes: &catalog.Volumes{Snapshots: []catalog.VolumeSnapshot{
			{Namespace: "ehr", Claim: "db", Snapshot: "s1", Driver: "csi.example", Handle: "h1", RestoreSize: 2 << 30},
			{Namespace: "ehr", Claim: "logs", Snapshot: "s2", Error: "timed out"}}, Expired: []string{"ehr/old"}},
		Vault: &catalog.Vault{Address: "https://vault:8200", TransitMount: "transit", RaftSnapshot: true,
			TransitKeys: []catalog.VaultTransitKey{{Name: "ehr", LatestVersion: 3}},
			KV:          []catalog.VaultKVPath{{Path: "secret/ehr", Secrets: 7}}},
		Velero:  &catalog.Velero{Namespace: "velero", Backup: "b1", Phase: "PartiallyFailed", Errors: 2, Warnings: 1},
		Skipped: []catalog.Skip{{Source: "manifests", Reason: "secrets/v1: forbidden"}},
	}
	var b strings.Builder
	for _, r := range manifestTable(m).rows {
		b.WriteString(strings.Join(r, " = ") + "\n")
	}
	out := b.String()
	for _, want := range []string{
		"manifests = 5 objects of 2 kinds in 2 namespaces, 1 policy objects, 1 resources skipped",
		"manifests inconsistent = configmaps/v1, feeds.lifeboat-test.dev/v1 (listed across an expired continue token: not a consistent snapshot)",
		"volume snapshot = ehr/db: s1, csi.example handle h1, restore size 2.0 GiB",
		"volume snapshot = ehr/logs: FAILED: timed out",
		"volume snapshots expired = ehr/old",
		"vault transit key = transit/ehr v3 (canary recorded)",
		"vault kv = secret/ehr: 7 secrets",
		"velero backup = velero/b1: PartiallyFailed, 2 errors, 1 warnings",
		"skipped = manifests: secrets/v1: forbidden",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "reader") {
		t.Errorf("the summary lists policy names (that is --policies' job):\n%s", out)
	}
}

package catalog_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

// manifestsManifest is a valid manifest with a manifests section.
func manifestsManifest() catalog.Manifest {
	sum := strings.Repeat("ab", 32)
	t0 := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	return catalog.Manifest{
		Format: catalog.ManifestFormat, Backup: "cluster-20261125T020000Z-7f3a", Plan: "cluster", Status: catalog.StatusPartial,
		Started: t0, Completed: t0.Add(time.Minute), RetainUntil: t0.Add(24 * time.Hour),
		KEK: keys.Ref{Provider: "local", Key: "k", Version: "1"}, DataKeyID: strings.Repeat("0f", 16),
		Artifacts: []catalog.Artifact{{Name: catalog.ArtifactManifests, Source: catalog.SourceManifests, Compression: "zstd",
			PlaintextSize: 10, PlaintextSHA256: sum, CiphertextSize: 20, CiphertextSHA256: sum}},
		Manifests: &catalog.Manifests{
			Objects: 2,
			Counts:  []catalog.ObjectCount{{Version: "v1", Kind: "Namespace", Count: 2}},
			Policies: []catalog.PolicyObject{
				{Version: "v1", Kind: "Namespace", Name: "ehr", SHA256: sum, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}},
				{Version: "v1", Kind: "Namespace", Name: "scratch", SHA256: sum},
			},
			Skipped:     []catalog.ResourceSkip{{Resource: "secrets/v1", Reason: "list: forbidden"}},
			IndexSHA256: sum,
		},
		Skipped:  []catalog.Skip{{Source: "manifests", Reason: "secrets/v1: list: forbidden"}},
		Lifeboat: catalog.Lifeboat{Version: "test"}, MAC: strings.Repeat("cd", 32),
	}
}

func TestManifestsSection(t *testing.T) {
	m := manifestsManifest()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := m.Manifests.Skips(); len(got) != 1 || got[0] != m.Skipped[0] {
		t.Fatalf("Skips: %v", got)
	}
	if got := (*catalog.Manifests)(nil).Skips(); got != nil {
		t.Fatalf("Skips of nil: %v", got)
	}

	// A resource listed across an expired continue token is a skip too:
	// the backup is partial, and says why.
	m = manifestsManifest()
	m.Manifests.Skipped = nil
	m.Manifests.Inconsistent = []string{"secrets/v1", "feeds.lifeboat-test.dev/v1"}
	m.Skipped = m.Manifests.Skips()
	want := []catalog.Skip{
		{Source: "manifests", Reason: "secrets/v1: listed across an expired continue token, not a consistent snapshot; objects changed meanwhile may be missing"},
		{Source: "manifests", Reason: "feeds.lifeboat-test.dev/v1: listed across an expired continue token, not a consistent snapshot; objects changed meanwhile may be missing"},
	}
	if !slices.Equal(m.Skipped, want) {
		t.Fatalf("Skips of inconsistent: %v", m.Skipped)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("Validate with inconsistent: %v", err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"inconsistent": [`) {
		t.Fatalf("manifest lacks inconsistent:\n%s", b)
	}
	var back catalog.Manifest
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back.Manifests.Inconsistent, m.Manifests.Inconsistent) {
		t.Fatalf("round trip: %v, %+v", err, back.Manifests)
	}
	for name, mutate := range map[string]func(*catalog.Manifests){
		"secret policy": func(x *catalog.Manifests) {
			x.Policies = append(x.Policies, catalog.PolicyObject{Version: "v1", Kind: "Secret", Namespace: "ehr", Name: "db", SHA256: x.IndexSHA256})
		},
		"non-PSA label": func(x *catalog.Manifests) { x.Policies[0].Labels["team"] = "ehr" },
		"labels on a role": func(x *catalog.Manifests) {
			x.Policies[1].Kind = "Role"
			x.Policies[1].Group = "rbac.authorization.k8s.io"
			x.Policies[1].Labels = x.Policies[0].Labels
		},
		"counts mismatch":         func(x *catalog.Manifests) { x.Objects = 3 },
		"no index digest":         func(x *catalog.Manifests) { x.IndexSHA256 = "" },
		"skip and no reason":      func(x *catalog.Manifests) { x.Skipped[0].Reason = "" },
		"inconsistent empty":      func(x *catalog.Manifests) { x.Inconsistent = []string{""} },
		"inconsistent no version": func(x *catalog.Manifests) { x.Inconsistent = []string{"secrets"} },
		"inconsistent object name": func(x *catalog.Manifests) {
			x.Inconsistent = []string{"secrets/v1/ehr/db"}
		},
		"inconsistent whole group": func(x *catalog.Manifests) { x.Inconsistent = []string{"*.metrics.k8s.io/v1beta1"} },
		"inconsistent twice": func(x *catalog.Manifests) {
			x.Inconsistent = []string{"configmaps/v1", "configmaps/v1"}
		},
	} {
		m := manifestsManifest()
		mutate(m.Manifests)
		if err := m.Validate(); err == nil || !strings.HasPrefix(err.Error(), "field manifests.") {
			t.Errorf("%s: Validate: %v", name, err)
		}
	}
}

// TestManifestsSkipsMustBeInSkipped: a manifest whose manifests section
// records a skipped or inconsistent resource, but whose own skipped list
// does not, is refused, so status complete cannot hide the gap.
func TestManifestsSkipsMustBeInSkipped(t *testing.T) {
	m := manifestsManifest()
	m.Skipped, m.Status = nil, catalog.StatusComplete
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "secrets/v1: list: forbidden") {
		t.Fatalf("complete manifest hiding a skipped resource: %v", err)
	}
	m = manifestsManifest()
	m.Manifests.Inconsistent = []string{"configmaps/v1"}
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "configmaps/v1") {
		t.Fatalf("inconsistent resource missing from skipped: %v", err)
	}
	m.Skipped = m.Manifests.Skips()
	if err := m.Validate(); err != nil {
		t.Fatalf("with every skip listed: %v", err)
	}
}

// TestLabelKeysDifferingInCase: a Namespace labelled both
// pod-security.kubernetes.io/enforce and .../Enforce (both valid label
// keys) is recorded and read back with both; the manifest stays readable.
func TestLabelKeysDifferingInCase(t *testing.T) {
	m := manifestsManifest()
	m.Manifests.Policies[0].Labels["pod-security.kubernetes.io/Enforce"] = "privileged"
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := catalog.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("a manifest with label keys differing in case does not decode: %v", err)
	}
	if l := got.Manifests.Policies[0].Labels; len(l) != 2 || l["pod-security.kubernetes.io/Enforce"] != "privileged" {
		t.Fatalf("labels read back: %v", l)
	}
}

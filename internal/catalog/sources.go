package catalog

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// This file holds the manifest sections of the Kubernetes and Vault sources
// (docs/format.md §6.1–§6.4). Each section's package fills it; the
// validate methods keep a manifest from claiming more than it holds.

// Source names of the sources added after etcd.
const (
	SourceManifests = "manifests"
	SourceVolumes   = "volumes"
	SourceVault     = "vault"
	SourceVelero    = "velero"
)

// Artifact names of those sources.
const (
	// ArtifactManifests is a tar of one YAML document per Kubernetes object,
	// ending with the index (docs/format.md §6.1).
	ArtifactManifests = "manifests.tar"
	// ArtifactVaultTransit holds the transit keys' backups (§6.3).
	ArtifactVaultTransit = "vault-transit.json"
	// ArtifactVaultRaft is Vault's integrated-storage (raft) snapshot, as
	// Vault streamed it.
	ArtifactVaultRaft = "vault-raft.snap"
	// ArtifactVaultKV holds the KV v2 secrets under the plan's paths.
	ArtifactVaultKV = "vault-kv.json"
)

// Manifests holds the facts of a manifests export (§6.1). Object names and
// per-object digests live only in the encrypted artifact's index; the
// manifest keeps counts and the policy objects.
type Manifests struct {
	// Objects is the number of objects in the artifact.
	Objects int `json:"objects"`
	// Counts are per group/version/kind and namespace ("" for
	// cluster-scoped), sorted.
	Counts []ObjectCount `json:"counts"`
	// Policies are the policy objects taken (§6.1), sorted.
	Policies []PolicyObject `json:"policies,omitempty"`
	// Skipped are resources that could not be listed, with the reason;
	// any entry makes the backup partial.
	Skipped []ResourceSkip `json:"skipped,omitempty"`
	// Inconsistent are resources ("resource.group/version", or
	// "resource/version" for the core group) whose list went on across
	// an expired continue token: they are in the artifact, but not as a
	// consistent snapshot, so objects changed meanwhile may be missing.
	// Any entry makes the backup partial (Skips).
	Inconsistent []string `json:"inconsistent,omitempty"`
	// IndexSHA256 is the SHA-256 of the index member of the tar.
	IndexSHA256 string `json:"indexSHA256"`
}

// ObjectCount counts the objects of one kind in one namespace.
type ObjectCount struct {
	Group     string `json:"group"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Count     int    `json:"count"`
}

// PolicyObject is one policy object: RBAC, NetworkPolicy, admission policy
// or binding, webhook configuration, ResourceQuota, LimitRange, or a
// Namespace for its Pod Security labels.
type PolicyObject struct {
	Group     string `json:"group"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// SHA256 is the digest of the object's document in the artifact. For a
	// Namespace it is the digest of its Pod Security labels (§6.1).
	SHA256 string `json:"sha256"`
	// Labels are a Namespace's pod-security.kubernetes.io/* labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// ResourceSkip records a resource that was not exported.
type ResourceSkip struct {
	// Resource is "resource.group/version", or "resource/version" for the
	// core group.
	Resource string `json:"resource"`
	Reason   string `json:"reason"`
}

// Volumes holds the CSI VolumeSnapshots a backup took (§6.2).
type Volumes struct {
	// SnapshotClass is the VolumeSnapshotClass used; empty means the
	// driver's default.
	SnapshotClass string `json:"snapshotClass,omitempty"`
	// Snapshots are one per claim, sorted by namespace and claim.
	Snapshots []VolumeSnapshot `json:"snapshots"`
	// Expired are VolumeSnapshots of earlier backups of the plan that this
	// run deleted because their retention had ended, as "namespace/name".
	Expired []string `json:"expired,omitempty"`
}

// VolumeSnapshot is one claim's snapshot.
type VolumeSnapshot struct {
	Namespace string `json:"namespace"`
	Claim     string `json:"claim"`
	// Snapshot is the VolumeSnapshot's name.
	Snapshot string `json:"snapshot"`
	// Content is the bound VolumeSnapshotContent's name, Driver its CSI
	// driver and Handle the storage system's snapshot handle.
	Content string `json:"content,omitempty"`
	Driver  string `json:"driver,omitempty"`
	Handle  string `json:"handle,omitempty"`
	// RestoreSize is the minimum size of a volume restored from it.
	RestoreSize int64 `json:"restoreSize,omitempty"`
	// ReadyAt is when lifeboat saw readyToUse.
	ReadyAt time.Time `json:"readyAt,omitzero"`
	// Error is set when the snapshot failed or timed out under onError
	// partial; such a snapshot is also listed in the manifest's skipped.
	Error string `json:"error,omitempty"`
}

// Vault holds what a vault source took (§6.3).
type Vault struct {
	// Address is the Vault server's URL.
	Address string `json:"address"`
	// TransitMount is the transit engine's mount path.
	TransitMount string `json:"transitMount,omitempty"`
	// TransitKeys are the transit keys backed up, with their canaries.
	TransitKeys []VaultTransitKey `json:"transitKeys,omitempty"`
	// RaftSnapshot is set when the backup holds a raft snapshot.
	RaftSnapshot bool `json:"raftSnapshot,omitempty"`
	// KV are the KV v2 paths backed up.
	KV []VaultKVPath `json:"kv,omitempty"`
}

// VaultTransitKey is one backed-up transit key and its canary.
type VaultTransitKey struct {
	Name string `json:"name"`
	// Type is the transit key type, e.g. aes256-gcm96.
	Type string `json:"type,omitempty"`
	// LatestVersion is the key's latest version at backup time.
	LatestVersion int `json:"latestVersion"`
	// Derived is set for a key created with derived=true; its canary was
	// encrypted with CanaryContext.
	Derived bool `json:"derived,omitempty"`
	// CanaryContext is the base64 context a derived key's canary was
	// encrypted with (§6.3); empty for a key that is not derived.
	CanaryContext string `json:"canaryContext,omitempty"`
	// Canary is a random value encrypted under the key at backup time: its
	// ciphertext, and the SHA-256 of the plaintext. A restored key must
	// decrypt the ciphertext to a plaintext with that digest.
	CanaryCiphertext string `json:"canaryCiphertext"`
	CanarySHA256     string `json:"canarySHA256"`
}

// VaultKVPath is one KV v2 path backed up.
type VaultKVPath struct {
	// Path is "mount/path" as the plan names it.
	Path string `json:"path"`
	// Secrets is the number of secrets found under it.
	Secrets int `json:"secrets"`
}

// Velero records the Velero backup run for this backup (§6.4).
type Velero struct {
	Namespace string `json:"namespace"`
	// Backup is the Velero Backup's name.
	Backup string `json:"backup"`
	// Phase is Velero's final phase: Completed, PartiallyFailed or Failed.
	Phase    string `json:"phase"`
	Errors   int    `json:"errors"`
	Warnings int    `json:"warnings"`
	// IncludedNamespaces are the namespaces asked for; empty means all.
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`
	// StorageLocation is the Backup's spec.storageLocation as Velero set
	// it (its default location when lifeboat named none).
	StorageLocation string `json:"storageLocation,omitempty"`
	// Started and Completed are Velero's own timestamps, when it set them.
	Started   time.Time `json:"started,omitzero"`
	Completed time.Time `json:"completed,omitzero"`
	// Expires is Velero's status.expiration: when Velero's garbage
	// collection deletes the backup.
	Expires time.Time `json:"expires,omitzero"`
}

func (x *Manifests) validate() error {
	if x.Objects < 0 {
		return errors.New("objects: must not be negative")
	}
	n := 0
	for i, c := range x.Counts {
		if c.Version == "" || c.Kind == "" || c.Count <= 0 {
			return fmt.Errorf("counts[%d]: version, kind and a positive count are required", i)
		}
		n += c.Count
	}
	if n != x.Objects {
		return fmt.Errorf("counts: add up to %d, but objects is %d", n, x.Objects)
	}
	for i, p := range x.Policies {
		if p.Version == "" || p.Kind == "" || p.Name == "" || !IsSHA256Hex(p.SHA256) {
			return fmt.Errorf("policies[%d]: version, kind, name and a SHA-256 are required", i)
		}
		if p.Group == "" && p.Kind == "Secret" {
			return fmt.Errorf("policies[%d]: a Secret is never a policy object", i)
		}
		for k := range p.Labels {
			if p.Group != "" || p.Kind != "Namespace" || len(k) <= len(podSecurityLabelPrefix) || k[:len(podSecurityLabelPrefix)] != podSecurityLabelPrefix {
				return fmt.Errorf("policies[%d].labels: only a Namespace's %s* labels are recorded", i, podSecurityLabelPrefix)
			}
		}
	}
	for i, s := range x.Skipped {
		if s.Resource == "" || s.Reason == "" {
			return fmt.Errorf("skipped[%d]: resource and reason are required", i)
		}
	}
	if err := validateInconsistent(x.Inconsistent); err != nil {
		return err
	}
	if !IsSHA256Hex(x.IndexSHA256) {
		return errors.New("indexSHA256: want 64 lowercase hex digits")
	}
	return nil
}

func (x *Volumes) validate() error {
	for i, s := range x.Snapshots {
		if s.Namespace == "" || s.Claim == "" || s.Snapshot == "" {
			return fmt.Errorf("snapshots[%d]: namespace, claim and snapshot are required", i)
		}
		if s.Error == "" && (s.Content == "" || s.Handle == "" || s.ReadyAt.IsZero()) {
			return fmt.Errorf("snapshots[%d]: a snapshot without error needs content, handle and readyAt", i)
		}
		if s.RestoreSize < 0 {
			return fmt.Errorf("snapshots[%d]: restoreSize must not be negative", i)
		}
		if i > 0 {
			p := x.Snapshots[i-1]
			if p.Namespace > s.Namespace || p.Namespace == s.Namespace && p.Claim >= s.Claim {
				return fmt.Errorf("snapshots[%d]: not sorted by namespace and claim, or a claim listed twice", i)
			}
		}
	}
	for i, e := range x.Expired {
		slash := -1
		for j := 0; j < len(e); j++ {
			if e[j] == '/' {
				slash = j
				break
			}
		}
		if slash <= 0 || slash == len(e)-1 {
			return fmt.Errorf("expired[%d]: %q is not namespace/name", i, e)
		}
	}
	return nil
}

func (x *Vault) validate() error {
	if x.Address == "" {
		return errors.New("address: missing")
	}
	if len(x.TransitKeys) == 0 && !x.RaftSnapshot && len(x.KV) == 0 {
		return errors.New("transitKeys, raftSnapshot, kv: the section records nothing taken")
	}
	if len(x.TransitKeys) > 0 && x.TransitMount == "" {
		return errors.New("transitMount: required with transitKeys")
	}
	seen := make(map[string]bool, len(x.TransitKeys))
	for i, k := range x.TransitKeys {
		if k.Name == "" || k.LatestVersion <= 0 || k.CanaryCiphertext == "" || !IsSHA256Hex(k.CanarySHA256) {
			return fmt.Errorf("transitKeys[%d]: name, latestVersion, canaryCiphertext and canarySHA256 are required", i)
		}
		if seen[k.Name] {
			return fmt.Errorf("transitKeys[%d].name: %q appears twice", i, k.Name)
		}
		seen[k.Name] = true
		if k.Derived != (k.CanaryContext != "") {
			return fmt.Errorf("transitKeys[%d]: canaryContext is required for a derived key and only for one", i)
		}
		if _, err := base64.StdEncoding.DecodeString(k.CanaryContext); err != nil {
			return fmt.Errorf("transitKeys[%d].canaryContext: not base64", i)
		}
	}
	for i, k := range x.KV {
		if k.Path == "" || k.Secrets < 0 {
			return fmt.Errorf("kv[%d]: path is required and secrets must not be negative", i)
		}
	}
	return nil
}

func (x *Velero) validate() error {
	if x.Namespace == "" || x.Backup == "" {
		return errors.New("namespace, backup: required")
	}
	// A Failed Velero backup fails its source, so no committed manifest
	// records one.
	switch x.Phase {
	case "Completed", "PartiallyFailed":
	default:
		return fmt.Errorf("phase: %q is not Completed or PartiallyFailed", x.Phase)
	}
	if x.Errors < 0 || x.Warnings < 0 {
		return errors.New("errors, warnings: must not be negative")
	}
	return nil
}

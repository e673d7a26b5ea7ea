package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// PublishOptions say where a backup's evidence record goes.
type PublishOptions struct {
	Store     evidence.StoreLike
	Signer    *evidence.Signer
	Retention time.Duration
	// Tiers are the retention tiers whose lock the backup took
	// (docs/format.md §1.2), each as "<tier>/<period>"; recorded as
	// subject.retentionTiers when not empty.
	Tiers  []string
	Now    func() time.Time
	Logger *slog.Logger
}

// backupHIPAA are the sections a committed backup is evidence for
// (docs/hipaa.md).
var backupHIPAA = []string{
	"§164.308(a)(7)(ii)(A)", // data backup plan
	"§164.310(d)(2)(iv)",    // retrievable exact copy: digests recorded
	"§164.312(a)(2)(iv)",    // encryption: client-side AES-256-GCM, KEK version
	"§164.312(c)(1)",        // integrity: AEAD, SHA-256, Object Lock
	"§164.316(b)(2)(i)",     // retention of the evidence
}

// Publish appends the evidence record of a committed backup m: what was
// backed up, digests, the KEK version, retention and the point in time.
func Publish(ctx context.Context, m catalog.Manifest, opts PublishOptions) (evidence.Record, error) {
	if opts.Store == nil || opts.Signer == nil {
		return evidence.Record{}, errors.New("publish backup evidence: store and signer are required")
	}
	arts := make([]any, 0, len(m.Artifacts))
	for _, a := range m.Artifacts {
		arts = append(arts, map[string]any{
			"name": a.Name, "source": a.Source,
			"ciphertextSHA256": a.CiphertextSHA256, "ciphertextSize": a.CiphertextSize,
			"plaintextSHA256": a.PlaintextSHA256, "plaintextSize": a.PlaintextSize,
		})
	}
	subject := map[string]any{
		"plan":        m.Plan,
		"status":      m.Status,
		"started":     m.Started.UTC().Format(time.RFC3339Nano),
		"completed":   m.Completed.UTC().Format(time.RFC3339Nano),
		"retainUntil": m.RetainUntil.UTC().Format(time.RFC3339Nano),
		"kek":         map[string]any{"provider": m.KEK.Provider, "key": m.KEK.Key, "version": m.KEK.Version},
		"artifacts":   arts,
		"manifest":    catalog.ManifestKey(m.Backup),
	}
	// The stored manifest is exactly m.Marshal(): its digest pins it.
	mb, err := m.Marshal()
	if err != nil {
		return evidence.Record{}, fmt.Errorf("publish evidence of backup %s: %w", m.Backup, err)
	}
	subject["manifestSHA256"] = evidence.Hash(mb)
	if m.Etcd != nil {
		subject["etcd"] = map[string]any{
			"revision": m.Etcd.Revision, "takenAt": m.Etcd.TakenAt.UTC().Format(time.RFC3339Nano),
			"keys": m.Etcd.Inventory.Keys, "inventoryDigest": m.Etcd.Inventory.Digest,
		}
	}
	if x := m.Manifests; x != nil {
		subject["manifests"] = map[string]any{
			"objects": x.Objects, "policyObjects": len(x.Policies), "skippedResources": len(x.Skipped),
			"inconsistentResources": len(x.Inconsistent), "indexSHA256": x.IndexSHA256,
		}
	}
	if v := m.Volumes; v != nil {
		snaps := make([]any, 0, len(v.Snapshots))
		failed := 0
		for _, s := range v.Snapshots {
			e := map[string]any{"namespace": s.Namespace, "claim": s.Claim, "snapshot": s.Snapshot}
			if s.Error != "" {
				failed++
				e["failed"] = true
			} else {
				e["handle"], e["restoreSize"] = s.Handle, s.RestoreSize
			}
			snaps = append(snaps, e)
		}
		subject["volumes"] = map[string]any{"snapshots": snaps, "failed": failed, "expired": len(v.Expired)}
	}
	if v := m.Vault; v != nil {
		names := make([]any, 0, len(v.TransitKeys))
		for _, k := range v.TransitKeys {
			names = append(names, k.Name)
		}
		paths := make([]any, 0, len(v.KV))
		for _, k := range v.KV {
			paths = append(paths, map[string]any{"path": k.Path, "secrets": k.Secrets})
		}
		subject["vault"] = map[string]any{"address": v.Address, "transitKeys": names, "raftSnapshot": v.RaftSnapshot, "kv": paths}
	}
	if v := m.Velero; v != nil {
		subject["velero"] = map[string]any{"namespace": v.Namespace, "backup": v.Backup, "phase": v.Phase, "errors": v.Errors, "warnings": v.Warnings}
	}
	if len(m.Skipped) > 0 {
		var sk []any
		for _, s := range m.Skipped {
			sk = append(sk, map[string]any{"source": s.Source, "reason": s.Reason})
		}
		subject["skipped"] = sk
	}
	if len(opts.Tiers) > 0 {
		tiers := make([]any, len(opts.Tiers))
		for i, t := range opts.Tiers {
			tiers[i] = t
		}
		subject["retentionTiers"] = tiers
	}
	outcome := evidence.OutcomeSuccess
	if m.Status == catalog.StatusPartial {
		outcome = evidence.OutcomePartial
	}
	opts2 := []evidence.Option{evidence.WithRetention(opts.Retention)}
	if opts.Logger != nil {
		opts2 = append(opts2, evidence.WithLogger(opts.Logger))
	}
	rec, err := evidence.NewLog(opts.Store, opts.Signer, opts.Now, opts2...).Append(ctx, evidence.Record{
		Kind: evidence.KindBackup, ID: m.Backup, Outcome: outcome, Subject: subject, HIPAA: backupHIPAA,
	})
	if err != nil {
		return evidence.Record{}, fmt.Errorf("publish evidence of backup %s: %w", m.Backup, err)
	}
	return rec, nil
}

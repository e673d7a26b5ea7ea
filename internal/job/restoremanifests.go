package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/kube"
	"github.com/lifeboat-dr/lifeboat/internal/source/manifests"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// RestoreManifestsOptions configure RestoreManifests.
type RestoreManifestsOptions struct {
	RestoreSelection
	// Target reaches the cluster restored into (a kubeconfig and context).
	Target kube.Options
	// NamespaceMap, IncludeNamespaces, ExcludeNamespaces,
	// IncludeResources, ExcludeResources and Existing: see
	// manifests.RestoreOptions.
	NamespaceMap                         map[string]string
	IncludeNamespaces, ExcludeNamespaces []string
	IncludeResources, ExcludeResources   []string
	Existing                             string
	// Apply writes; without it every object is sent with dryRun=All (the
	// plan). Confirm must then be the target's kube-system namespace UID,
	// which the plan prints: the target's identity, so that a restore
	// aimed at the wrong cluster is refused.
	Apply   bool
	Confirm string
	// Signer signs the restore record. Required with Apply.
	Signer *evidence.Signer
	// Progress, when set, is called after each object.
	Progress func(done, total int)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// RestoreManifestsResult is what RestoreManifests did or would do.
type RestoreManifestsResult struct {
	RestoreCommon
	// Server and KubeSystemUID identify the target cluster.
	Server        string                  `json:"server"`
	KubeSystemUID string                  `json:"kubeSystemUID"`
	Restore       manifests.RestoreResult `json:"restore"`
}

// RestoreManifests restores a backup's manifests export into the cluster
// opts.Target reaches (docs/restore.md): the backup is chosen and verified
// as for every restore, manifests.tar is decrypted (AEAD tags and digest)
// and read back against the index the authenticated manifest names, then
// applied with server-side apply in dependency order. Without Apply every
// write is a server-side dry run: the API server admits and validates each
// object and persists nothing, so the plan shows what would be created,
// updated, skipped or refused. Apply needs Confirm to be the target's
// kube-system UID and appends a signed `restore` record.
func RestoreManifests(ctx context.Context, env *wire.Env, o RestoreManifestsOptions) (RestoreManifestsResult, error) {
	var res RestoreManifestsResult
	now := o.Now
	if now == nil {
		now = time.Now
	}
	fail := func(err error) (RestoreManifestsResult, error) {
		return res, fmt.Errorf("restore manifests: %w", err)
	}
	cfg, server, uid, err := targetIdentity(ctx, o.Target, o.Apply, o.Confirm, o.Signer)
	res.Server, res.KubeSystemUID = server, uid
	if err != nil {
		return fail(err)
	}

	src, err := openForRestore(ctx, env, o.RestoreSelection, !o.Apply, now)
	res.RestoreCommon = src.common()
	if err != nil {
		return fail(err)
	}
	m := src.m
	if m.Manifests == nil {
		return fail(fmt.Errorf("backup %s holds no manifests export", src.id))
	}
	t0 := now()
	a, err := readManifestsArchive(ctx, src)
	if err != nil {
		return fail(err)
	}
	res.Stages = append(res.Stages, RestoreStage{Name: "decrypt", Detail: fmt.Sprintf("%s decrypted, AEAD tags and SHA-256 checked; %d objects, each matching the index", catalog.ArtifactManifests, len(a.Index.Objects)), DurationMs: now().Sub(t0).Milliseconds()})

	t0 = now()
	rr, err := manifests.Restore(ctx, a, manifests.RestoreOptions{
		Config: cfg, NamespaceMap: o.NamespaceMap,
		IncludeNamespaces: o.IncludeNamespaces, ExcludeNamespaces: o.ExcludeNamespaces,
		IncludeResources: o.IncludeResources, ExcludeResources: o.ExcludeResources,
		Existing: o.Existing, DryRun: !o.Apply, Progress: o.Progress, Logger: env.Logger,
	})
	res.Restore = rr
	name := "apply"
	if !o.Apply {
		name = "dry run"
	}
	res.Stages = append(res.Stages, RestoreStage{Name: name, Detail: fmt.Sprintf("%d created, %d updated, %d skipped, %d failed", rr.Counts[manifests.OutcomeCreated], rr.Counts[manifests.OutcomeUpdated], rr.Counts[manifests.OutcomeSkipped], rr.Counts[manifests.OutcomeFailed]), DurationMs: now().Sub(t0).Milliseconds()})
	if err != nil {
		return fail(err)
	}
	if !o.Apply {
		return res, nil
	}
	res.Applied = true
	outcome := evidence.OutcomeSuccess
	if rr.Failed() > 0 {
		outcome = evidence.OutcomePartial
	}
	counts := map[string]any{}
	for k, v := range rr.Counts {
		counts[k] = int64(v)
	}
	rec, err := appendRestoreRecord(ctx, src, o.Signer, now, outcome, res.Stages, map[string]any{
		"target": "manifests", "server": res.Server, "kubeSystemUID": res.KubeSystemUID,
		"objects": int64(len(a.Index.Objects)), "counts": counts,
	})
	if err != nil {
		return res, fmt.Errorf("restore manifests: the objects are applied, but the restore record is not: %w", err)
	}
	res.Evidence = rec.Key()
	if rr.Failed() > 0 {
		return res, fmt.Errorf("restore manifests: %d of %d objects failed (see the table): %w", rr.Failed(), len(a.Index.Objects), ErrPartialRestore)
	}
	return res, nil
}

// readManifestsArchive decrypts the backup's manifests.tar and reads it
// back against the index its authenticated manifest names. Nothing is
// used before the whole artifact has decrypted and its digest held: the
// plaintext is kept in memory until then.
func readManifestsArchive(ctx context.Context, src restoreSource) (*manifests.Archive, error) {
	m := src.m
	if m.Manifests == nil {
		return nil, fmt.Errorf("backup %s holds no manifests export", src.id)
	}
	dk, _, err := catalog.OpenKey(ctx, src.st, src.id, m.DataKeyID, src.kek)
	if err != nil {
		return nil, err
	}
	defer dk.Destroy()
	if err := m.CheckMAC(dk); err != nil {
		return nil, err
	}
	var tarBuf bytes.Buffer
	if _, err := catalog.DecryptArtifact(ctx, src.st, m, catalog.ArtifactManifests, dk, &tarBuf); err != nil {
		return nil, err
	}
	return manifests.ReadArchive(&tarBuf, m.Manifests.IndexSHA256)
}

// appendRestoreRecord appends the signed `restore` record of a restore
// (docs/format.md §5.3.2): the backup, its manifest's SHA-256, the stages,
// and the target's own members.
func appendRestoreRecord(ctx context.Context, src restoreSource, signer *evidence.Signer, now func() time.Time, outcome string, stages []RestoreStage, subject map[string]any) (evidence.Record, error) {
	st := make([]any, 0, len(stages))
	for _, s := range stages {
		st = append(st, map[string]any{"name": s.Name, "durationMs": s.DurationMs})
	}
	subject["backup"], subject["manifestSHA256"], subject["stages"] = src.id, src.sum, st
	return evidence.NewLog(src.evSt, signer, now, evidence.WithRetention(config.EvidenceRetention(src.evCS))).Append(ctx, evidence.Record{
		Kind: KindRestore, ID: src.id + "-" + now().UTC().Format("20060102T150405Z"), Outcome: outcome,
		Subject: subject, HIPAA: []string{"§164.308(a)(7)(ii)(B)", "§164.310(d)(2)(iv)"},
	})
}

// targetIdentity reaches the target cluster and returns its config, API
// server URL and kube-system namespace UID: the identity a restore that
// writes must be confirmed with, so that one aimed at the wrong cluster is
// refused before anything is sent.
func targetIdentity(ctx context.Context, target kube.Options, apply bool, confirm string, signer *evidence.Signer) (*rest.Config, string, string, error) {
	cfg, err := kube.Config(target)
	if err != nil {
		return nil, "", "", fmt.Errorf("target: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", "", fmt.Errorf("target: %w", err)
	}
	ks, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		return nil, cfg.Host, "", fmt.Errorf("target %s: read namespace kube-system (its UID identifies the cluster): %w", cfg.Host, err)
	}
	uid := string(ks.UID)
	if apply && confirm != uid {
		return nil, cfg.Host, uid, fmt.Errorf("this writes into the cluster at %s: confirm with --confirm %s (its kube-system namespace UID)", cfg.Host, uid)
	}
	if apply && signer == nil {
		return nil, cfg.Host, uid, errors.New("no evidence signer")
	}
	return cfg, cfg.Host, uid, nil
}

// ErrPartialRestore: a restore applied, but some objects failed.
var ErrPartialRestore = errors.New("some objects were not restored")

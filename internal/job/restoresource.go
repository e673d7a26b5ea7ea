package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// RestoreCommon is what every restore into a running target reports
// (inlined in their results' JSON): the backup, how it was chosen and
// checked, whether anything was written, the stages and the record.
type RestoreCommon struct {
	Backup string `json:"backup"`
	// PassedOver are the backups the selection (--latest, --before)
	// ranked first but refused, and why.
	PassedOver []string           `json:"passedOver,omitempty"`
	Record     backup.RecordCheck `json:"record"`
	// KeyObjects says which of the backup's key objects unwrap with the
	// key providers this restore could open.
	KeyObjects []catalog.KeyObjectCheck `json:"keyObjects"`
	Applied    bool                     `json:"applied"`
	Stages     []RestoreStage           `json:"stages"`
	// Evidence is the signed restore record's key, once applied.
	Evidence string `json:"evidence,omitempty"`
}

// common fills a RestoreCommon from what openForRestore found.
func (src restoreSource) common() RestoreCommon {
	return RestoreCommon{Backup: src.id, PassedOver: src.passedOver, Record: src.record, KeyObjects: src.keyObjects, Stages: src.stages}
}

// restoreSource is a backup chosen for a restore and verified: its store,
// the key providers that read it, its manifest (whose MAC held) and the
// stages so far.
type restoreSource struct {
	st store.Store
	cs *config.Store
	// evSt and evCS receive the restore record: the store read, or, when
	// that is a replica of the plan, the plan's store (a replica's log is
	// its primary's, docs/format.md §9.2); nil when opened read-only.
	evSt       store.Store
	evCS       *config.Store
	kek        wire.PlanKeys
	id         string
	m          catalog.Manifest
	sum        string
	record     backup.RecordCheck
	passedOver []string
	keyObjects []catalog.KeyObjectCheck
	stages     []RestoreStage
}

// openForRestore selects the backup sel names, compares its manifest with
// its signed record (with trusted keys), refuses a partial backup unless
// allowed, verifies it as `backup verify --read-data` does (the MAC, every
// artifact's AEAD tags and digests), and tries every key object. It is the
// common first half of every restore (docs/restore.md).
func openForRestore(ctx context.Context, env *wire.Env, sel RestoreSelection, readOnly bool, now func() time.Time) (restoreSource, error) {
	var src restoreSource
	planName := sel.Plan
	if sel.Backup != "" {
		p, _, err := catalog.ParseID(sel.Backup)
		if err != nil {
			return src, err
		}
		planName = p
	}
	storeName := sel.Store
	p, havePlan := env.Set.BackupPlan(planName)
	if havePlan {
		storeName = cmpOr(storeName, p.Spec.Store)
	}
	cs, ok := env.Set.Store(storeName)
	if !ok {
		return src, fmt.Errorf("no Store named %q (name it with --store)", storeName)
	}
	fromReplica := havePlan && storeName != p.Spec.Store && slices.Contains(p.Spec.Replicas, storeName)
	st, err := env.OpenStore(ctx, cs, readOnly || fromReplica)
	if err != nil {
		return src, err
	}
	src.st, src.cs = st, cs
	src.evSt, src.evCS = st, cs
	if fromReplica && !readOnly {
		pcs, _ := env.Set.Store(p.Spec.Store)
		if src.evSt, err = env.OpenStore(ctx, pcs, false); err != nil {
			return src, fmt.Errorf("the restore record goes to the plan's store %s (%s is its replica): %w", pcs.Metadata.Name, storeName, err)
		}
		src.evCS = pcs
	}
	if src.kek, err = env.BackupKeys(ctx, planName, sel.KeyProvider); err != nil {
		return src, err
	}
	id := sel.Backup
	if id == "" {
		if (!sel.Latest && sel.Before.IsZero()) || (sel.Latest && !sel.Before.IsZero()) || sel.Plan == "" {
			return src, errors.New("name the backup: an ID, or --plan with --latest or --before")
		}
		// With trusted keys, a backup whose manifest does not match its
		// signed record is passed over: the times the selection orders by
		// are not authenticated until then.
		var accept func(context.Context, catalog.Manifest) error
		if len(sel.Trusted) > 0 {
			// Only a backup a signed record speaks for is taken: one with
			// no record (a backup planted under a new ID) or a record
			// without the manifest's digest is passed over too.
			accept = func(ctx context.Context, m catalog.Manifest) error {
				_, sum, err := catalog.ReadDigest(ctx, st, m.Backup)
				if err != nil {
					return err
				}
				rc, err := backup.CheckRecord(ctx, st, m.Backup, sum, sel.Trusted...)
				if err != nil {
					return err
				}
				if rc.Status != backup.RecordOK {
					return fmt.Errorf("no signed evidence record speaks for it (record %s)", rc.Status)
				}
				return nil
			}
		}
		m, refused, err := catalog.SelectAccepted(ctx, st, catalog.Selector{Plan: sel.Plan, Latest: sel.Latest, Before: sel.Before}, accept)
		for _, r := range refused {
			src.passedOver = append(src.passedOver, r.Error())
		}
		if err != nil {
			return src, err
		}
		id = m.Backup
	}
	src.id = id
	stage := func(name, detail string, t0 time.Time) {
		src.stages = append(src.stages, RestoreStage{Name: name, Detail: detail, DurationMs: now().Sub(t0).Milliseconds()})
	}
	t0 := now()
	if src.m, src.sum, err = catalog.ReadDigest(ctx, st, id); err != nil {
		return src, err
	}
	if src.record, err = backup.CheckRecord(ctx, st, id, src.sum, sel.Trusted...); err != nil {
		return src, err
	}
	if src.m.Status == catalog.StatusPartial && !sel.AllowPartial {
		return src, fmt.Errorf("backup %s is partial (%d sources skipped); restore it only with --allow-partial", id, len(src.m.Skipped))
	}
	if readOnly {
		// The plan reads every byte of the backup.
		vr, err := catalog.Verify(ctx, st, id, true, src.kek)
		if err != nil {
			return src, err
		}
		if vr.ManifestSHA256 != src.sum {
			return src, fmt.Errorf("manifest %s changed between two reads (SHA-256 %s, then %s): %w", catalog.ManifestKey(id), src.sum, vr.ManifestSHA256, catalog.ErrVerification)
		}
		stage("verify", fmt.Sprintf("manifest MAC %s, %d artifacts decrypted and their digests checked, signed record %s", vr.ManifestMAC, len(vr.Artifacts), src.record.Status), t0)
	} else {
		// An apply decrypts each artifact it uses once, checking every
		// AEAD tag and both digests before anything is written from it;
		// reading them all first as well would double the time to a
		// restored cluster. The manifest is trusted only once its MAC
		// holds.
		dk, ko, err := catalog.OpenKey(ctx, st, id, src.m.DataKeyID, src.kek)
		if err != nil {
			return src, err
		}
		if dk.ID() != src.m.DataKeyID {
			dk.Destroy()
			return src, fmt.Errorf("backup %s: key object for %s holds data key %s, manifest says %s: %w: %w",
				id, ko.KEK, dk.ID(), src.m.DataKeyID, envelope.ErrWrongKey, catalog.ErrVerification)
		}
		err = src.m.CheckMAC(dk)
		dk.Destroy()
		if err != nil {
			return src, err
		}
		stage("verify", fmt.Sprintf("manifest MAC ok; each artifact the restore uses is decrypted once and checked (AEAD tags, ciphertext and plaintext SHA-256) before any of it is used; signed record %s", src.record.Status), t0)
	}
	t0 = now()
	if src.keyObjects, err = catalog.CheckKeyObjects(ctx, st, id, src.m.DataKeyID, src.kek); err != nil {
		return src, err
	}
	var unwrap []string
	for _, k := range src.keyObjects {
		if k.Unwraps {
			unwrap = append(unwrap, k.KEK)
		}
	}
	stage("keys", fmt.Sprintf("%d of %d key objects unwrap with the key providers opened (%s): %s", len(unwrap), len(src.keyObjects), strings.Join(src.kek.Names, ", "), strings.Join(unwrap, ", ")), t0)
	return src, nil
}

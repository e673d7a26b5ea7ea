package catalog

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Sentinel errors.
var (
	// ErrNoBackup: no complete backup matches (Select), or the backup has
	// no manifest (Read): it does not exist or is incomplete.
	ErrNoBackup = errors.New("no such complete backup")
	// ErrVerification: stored data does not match the backup's manifest
	// (a digest, a size, a missing or unreadable artifact or key object,
	// a manifest that does not decode). Errors wrapping it also wrap the
	// specific cause where there is one (store.ErrIntegrity,
	// envelope.ErrAuthentication, ...).
	ErrVerification = errors.New("backup failed verification")
)

// Write stores m as backups/<id>/manifest.json with m.RetainUntil as its
// retention. The manifest is the backup's commit point: call Write only
// after every artifact and key object of the backup is stored.
func Write(ctx context.Context, st store.Store, m Manifest) (store.ObjectInfo, error) {
	b, err := m.Marshal()
	if err != nil {
		return store.ObjectInfo{}, err
	}
	sum := sha256.Sum256(b)
	info, err := st.Put(ctx, ManifestKey(m.Backup), bytes.NewReader(b), store.PutOptions{
		RetainUntil: m.RetainUntil, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b)),
	})
	if err != nil {
		return store.ObjectInfo{}, fmt.Errorf("write manifest of backup %s: %w", m.Backup, err)
	}
	return info, nil
}

// Read reads and strictly decodes backup id's manifest. A backup without a
// manifest (missing or incomplete) fails with ErrNoBackup, and one whose
// manifest does not decode, or names another backup, with ErrVerification.
func Read(ctx context.Context, st store.Store, id string) (Manifest, error) {
	m, _, err := ReadDigest(ctx, st, id)
	return m, err
}

// ReadDigest is Read that also returns the hex SHA-256 of the manifest's
// stored bytes, which the backup's evidence record carries
// (manifestSHA256, docs/format.md §6).
func ReadDigest(ctx context.Context, st store.Store, id string) (Manifest, string, error) {
	if _, _, err := ParseID(id); err != nil {
		return Manifest{}, "", fmt.Errorf("read manifest: %w", err)
	}
	key := ManifestKey(id)
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if errors.Is(err, store.ErrNotFound) {
		return Manifest{}, "", fmt.Errorf("backup %s: no manifest at %s (the backup does not exist or is incomplete): %w", id, key, ErrNoBackup)
	}
	if err != nil {
		return Manifest{}, "", fmt.Errorf("backup %s: read manifest: %w", id, err)
	}
	defer rc.Close()
	h := sha256.New()
	m, err := Decode(io.TeeReader(rc, h))
	if err != nil {
		if errors.Is(err, store.ErrIntegrity) {
			err = fmt.Errorf("%w: %w", err, ErrVerification)
		}
		return Manifest{}, "", fmt.Errorf("backup %s: manifest %s: %w", id, key, err)
	}
	if m.Backup != id {
		return Manifest{}, "", fmt.Errorf("backup %s: manifest %s names backup %q: %w", id, key, m.Backup, ErrVerification)
	}
	return m, hex.EncodeToString(h.Sum(nil)), nil
}

// ListOptions filter List.
type ListOptions struct {
	// Plan, when set, lists only that plan's backups.
	Plan string
}

// List returns the complete backups in st (those with a manifest), newest
// first (by start time, then ID). Backups without a manifest are not
// listed. A manifest that cannot be read or decoded fails the whole list,
// naming it: a catalog that cannot be trusted is not silently shortened.
func List(ctx context.Context, st store.Store, opts ListOptions) ([]Manifest, error) {
	var ids []string
	for info, err := range st.List(ctx, "backups/") {
		if err != nil {
			return nil, fmt.Errorf("list backups: %w", err)
		}
		rest, ok := strings.CutPrefix(info.Key, "backups/")
		if !ok {
			continue
		}
		id, file, ok := strings.Cut(rest, "/")
		if !ok || file != "manifest.json" {
			continue
		}
		plan, _, err := ParseID(id)
		if err != nil || (opts.Plan != "" && plan != opts.Plan) {
			continue
		}
		ids = append(ids, id)
	}
	out := make([]Manifest, 0, len(ids))
	for _, id := range ids {
		m, err := Read(ctx, st, id)
		if err != nil {
			return nil, fmt.Errorf("list backups: %w", err)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int {
		if c := b.Started.Compare(a.Started); c != 0 {
			return c
		}
		return cmp.Compare(b.Backup, a.Backup)
	})
	return out, nil
}

// Selector chooses one complete backup of a plan. Exactly one of Latest,
// Before and ID is set.
type Selector struct {
	// Plan is the plan whose backups are considered. Required with Latest
	// and Before; with ID it must match the ID's plan when set.
	Plan string
	// Latest chooses the newest complete backup.
	Latest bool
	// Before chooses the newest complete backup whose snapshot time (the
	// etcd snapshot's takenAt, else the backup's start) is before it.
	Before time.Time
	// ID chooses the backup with this ID; it must be complete.
	ID string
}

// Select returns the backup s chooses, or an error wrapping ErrNoBackup
// when none matches.
func Select(ctx context.Context, st store.Store, s Selector) (Manifest, error) {
	n := 0
	for _, set := range []bool{s.Latest, !s.Before.IsZero(), s.ID != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return Manifest{}, errors.New("select backup: set exactly one of latest, before and id")
	}
	if s.ID != "" {
		plan, _, err := ParseID(s.ID)
		if err != nil {
			return Manifest{}, fmt.Errorf("select backup: %w", err)
		}
		if s.Plan != "" && plan != s.Plan {
			return Manifest{}, fmt.Errorf("select backup: %s belongs to plan %q, not %q: %w", s.ID, plan, s.Plan, ErrNoBackup)
		}
		return Read(ctx, st, s.ID)
	}
	if s.Plan == "" {
		return Manifest{}, errors.New("select backup: a plan is required with latest or before")
	}
	all, err := List(ctx, st, ListOptions{Plan: s.Plan})
	if err != nil {
		return Manifest{}, fmt.Errorf("select backup: %w", err)
	}
	cands := candidates(all, s)
	if len(cands) == 0 {
		if s.Latest {
			return Manifest{}, fmt.Errorf("select backup: plan %q has no complete backup: %w", s.Plan, ErrNoBackup)
		}
		return Manifest{}, fmt.Errorf("select backup: plan %q has no complete backup before %s: %w", s.Plan, s.Before.UTC().Format(time.RFC3339), ErrNoBackup)
	}
	return cands[0], nil
}

// candidates orders the backups s could choose, best first: for Latest
// newest first by start (List's order); for Before, those whose point in
// time is before it, newest point in time first.
func candidates(all []Manifest, s Selector) []Manifest {
	if s.Latest {
		return all
	}
	var out []Manifest
	for _, m := range all {
		if m.PointInTime().Before(s.Before) {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b Manifest) int { return b.PointInTime().Compare(a.PointInTime()) })
	return out
}

// SelectAccepted is Select for Latest and Before that returns the best
// backup accept takes, passing over those it refuses (a manifest that
// does not match its signed evidence record, say: the times Select orders
// by are read before anything authenticates them, so a forged backup may
// rank first). Refused lists why each was passed over, best first.
func SelectAccepted(ctx context.Context, st store.Store, s Selector, accept func(context.Context, Manifest) error) (m Manifest, refused []error, err error) {
	if s.ID != "" || accept == nil {
		m, err := Select(ctx, st, s)
		if err == nil && accept != nil {
			err = accept(ctx, m)
		}
		return m, nil, err
	}
	if _, err := Select(ctx, st, s); err != nil {
		return Manifest{}, nil, err
	}
	all, err := List(ctx, st, ListOptions{Plan: s.Plan})
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("select backup: %w", err)
	}
	for _, c := range candidates(all, s) {
		if err := accept(ctx, c); err != nil {
			if ctx.Err() != nil {
				return Manifest{}, refused, ctx.Err()
			}
			refused = append(refused, fmt.Errorf("%s: %w", c.Backup, err))
			continue
		}
		return c, refused, nil
	}
	return Manifest{}, refused, fmt.Errorf("select backup: no backup of plan %q passed the checks: %w: %w", s.Plan, errors.Join(refused...), ErrNoBackup)
}

// PointInTime is the time the backup's data reflects: the etcd snapshot's
// takenAt when there is one, else the backup's start. RPO is measured from
// it.
func (m *Manifest) PointInTime() time.Time {
	if m.Etcd != nil {
		return m.Etcd.TakenAt
	}
	return m.Started
}

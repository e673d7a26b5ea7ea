package rotation

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Policy says when old KEK versions are retired. The values are those of
// config.RetirePolicy.
type Policy string

// Retire policies.
const (
	// RetireAfterVerifiedRewrap retires an old version once every
	// committed backup holds a verified key object under another enabled
	// version.
	RetireAfterVerifiedRewrap Policy = "afterVerifiedRewrap"
	// RetireNever keeps every version enabled.
	RetireNever Policy = "never"
)

// ErrIncomplete is wrapped by Run's error when at least one backup could
// not be rewrapped or verified; Result names them.
var ErrIncomplete = errors.New("rotation incomplete: some backups are not rewrapped and verified")

// BackupState is what a rotation knows about one committed backup's key
// objects.
type BackupState struct {
	// Backup is the backup ID.
	Backup string
	// Verified lists the KEK versions under which the backup has a key
	// object that was read back and unwrapped to the manifest's data key
	// during this run. Versions not listed are unverified, whatever is
	// stored.
	Verified []keys.Ref
}

// State is the input of MayRetire.
type State struct {
	// Policy is the retirement policy.
	Policy Policy
	// Primary is the provider's primary version.
	Primary keys.Ref
	// Enabled lists the provider's enabled versions (the primary among
	// them).
	Enabled []keys.Ref
	// Backups lists every committed backup.
	Backups []BackupState
}

// Decision is MayRetire's answer.
type Decision struct {
	// Retire is true when the version may be retired.
	Retire bool
	// Reason says why not (empty when Retire).
	Reason string
	// Blocking names the backups that have no verified key object under
	// an enabled version other than the one asked about, in State order.
	Blocking []string
}

// MayRetire decides whether version may be retired: only when it is not
// the primary, the policy is RetireAfterVerifiedRewrap, and every
// committed backup has at least one verified key object under an enabled
// version other than it. A version that is not enabled is not retired
// again (Retire false, with a reason).
func MayRetire(version keys.Ref, s State) Decision {
	if version == s.Primary {
		return Decision{Reason: "it is the primary version"}
	}
	if s.Policy != RetireAfterVerifiedRewrap {
		return Decision{Reason: fmt.Sprintf("policy %q does not retire versions", policyName(s.Policy))}
	}
	if !slices.Contains(s.Enabled, version) {
		return Decision{Reason: "it is not an enabled version"}
	}
	var blocking []string
	for _, b := range s.Backups {
		ok := false
		for _, r := range b.Verified {
			if r != version && slices.Contains(s.Enabled, r) {
				ok = true
				break
			}
		}
		if !ok {
			blocking = append(blocking, b.Backup)
		}
	}
	if len(blocking) > 0 {
		return Decision{
			Reason:   fmt.Sprintf("%d backup(s) have no verified key object under another enabled version", len(blocking)),
			Blocking: blocking,
		}
	}
	return Decision{Retire: true}
}

func policyName(p Policy) string {
	if p == "" {
		return string(RetireNever)
	}
	return string(p)
}

// Outcome is what happened to one backup.
type Outcome string

// Backup outcomes.
const (
	// OutcomeRewrapped: a new key object under the primary was written and
	// verified.
	OutcomeRewrapped Outcome = "rewrapped"
	// OutcomeSkipped: a key object under the primary already existed (the
	// backup was made under it, or an earlier run wrote it) and was
	// verified; nothing was written.
	OutcomeSkipped Outcome = "skipped"
	// OutcomeFailed: the backup has no verified key object under the
	// primary; it blocks retirement.
	OutcomeFailed Outcome = "failed"
)

// BackupResult is the outcome for one backup.
type BackupResult struct {
	Backup  string
	Outcome Outcome
	// KeyObject is the store key of the key object under the primary.
	KeyObject string
	// Err is set when Outcome is OutcomeFailed.
	Err error
}

// BlockedVersion is an old version that was not retired, and why.
type BlockedVersion struct {
	Version keys.Ref
	Reason  string
	// Backups names the backups blocking it, if any.
	Backups []string
}

// Result is the outcome of Run.
type Result struct {
	// From is the primary version before the run, when the provider
	// reported one.
	From *keys.Version
	// Rotated is the version Rotate created, when Options.Rotate was set
	// and the rotation was due.
	Rotated *keys.Version
	// NotRotated says why Options.Rotate was set but no version was
	// created (the primary is younger than Options.MinAge).
	NotRotated string
	// PrimaryGeneration is the primary's material generation
	// (keys.Version.Generation); empty for most providers.
	PrimaryGeneration string
	// Primary is the primary version backups were rewrapped under.
	Primary keys.Ref
	// Backups holds one entry per committed backup, in catalog order
	// (newest first).
	Backups []BackupResult
	// Retired lists the versions retired by this run.
	Retired []keys.Ref
	// Blocked lists the enabled non-primary versions left enabled.
	Blocked []BlockedVersion
	// NotWrapped names the committed backups whose data key was never
	// wrapped under this provider's key (another plan's, or taken before
	// the plan listed this provider): they are another provider's
	// concern, neither rewrapped nor blocking this provider's retirement.
	NotWrapped []string
}

// Rewrapped returns the IDs of the backups given a new key object.
func (r *Result) Rewrapped() []string { return r.ids(OutcomeRewrapped) }

// Skipped returns the IDs of the backups already wrapped under the primary.
func (r *Result) Skipped() []string { return r.ids(OutcomeSkipped) }

// Failed returns the IDs of the backups that could not be rewrapped or
// verified.
func (r *Result) Failed() []string { return r.ids(OutcomeFailed) }

func (r *Result) ids(o Outcome) []string {
	var out []string
	for _, b := range r.Backups {
		if b.Outcome == o {
			out = append(out, b.Backup)
		}
	}
	return out
}

// Options configure Run.
type Options struct {
	// Store holds the backups. Required.
	Store store.Store
	// Provider is the KEK provider the backups' data keys are wrapped
	// with. Required.
	Provider keys.Provider
	// Policy is the retirement policy; empty means RetireNever.
	Policy Policy
	// Rotate rotates the KEK before rewrapping. Without it Run rewraps
	// under the current primary (finishing an interrupted run).
	Rotate bool
	// MinAge, when positive, makes Rotate a no-op while the primary is
	// younger than it (the KeyProvider's rotation.every); Result.NotRotated
	// then says so. Backups are still rewrapped under the primary.
	MinAge time.Duration
	// Now stamps new key objects' created field; nil means time.Now.
	Now func() time.Time
	// Logger receives progress lines; nil discards them.
	Logger *slog.Logger
	// Progress, when set, is called after each backup (from one
	// goroutine at a time, in the order backups finish).
	Progress func(BackupResult)
	// Concurrency is how many backups are rewrapped at once: rewrap only
	// reads and writes small key objects and calls the provider, so the
	// time is latency; zero means DefaultConcurrency.
	Concurrency int
}

// DefaultConcurrency is Options.Concurrency's default.
const DefaultConcurrency = 8

// Run rotates (if asked), rewraps and verifies every committed backup's
// data key under the primary version, and then retires the old versions
// the policy allows, only if every backup verified. It fails early (with a
// partial Result) when the catalog, the provider's versions, the rotation
// or a retirement fails, or ctx ends. When some backups failed it returns
// the full Result and an error wrapping ErrIncomplete that names them.
func Run(ctx context.Context, opts Options) (Result, error) {
	var res Result
	if opts.Store == nil || opts.Provider == nil {
		return res, errors.New("rotation: store and provider are required")
	}
	switch opts.Policy {
	case "":
		opts.Policy = RetireNever
	case RetireNever, RetireAfterVerifiedRewrap:
	default:
		return res, fmt.Errorf("rotation: unknown retire policy %q (want %s or %s)", opts.Policy, RetireAfterVerifiedRewrap, RetireNever)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	versions, err := opts.Provider.Versions(ctx)
	if err != nil {
		return res, fmt.Errorf("rotation: list KEK versions: %w", err)
	}
	if p := primaryOf(versions); p != nil {
		from := *p
		res.From = &from
	}
	if opts.Rotate {
		rotate := true
		if opts.MinAge > 0 && res.From != nil && !res.From.Created.IsZero() {
			if age := now().Sub(res.From.Created); age < opts.MinAge {
				rotate = false
				res.NotRotated = fmt.Sprintf("current version %s is younger than every (age %s, every %s)",
					res.From.Ref, age.Truncate(time.Minute), opts.MinAge)
				log.Info("KEK not rotated", "version", res.From.Ref.String(), "reason", res.NotRotated)
			}
		}
		if rotate {
			v, err := opts.Provider.Rotate(ctx)
			if err != nil {
				if res.From != nil {
					return res, fmt.Errorf("rotation: rotate KEK (primary %s): %w", res.From.Ref, err)
				}
				return res, fmt.Errorf("rotation: rotate KEK: %w", err)
			}
			if res.From != nil && v.Ref == res.From.Ref && v.Generation == res.From.Generation {
				// Nothing new to rewrap under: a provider that rotates
				// material under one version (awskms managed) returned
				// before its new material was current, or did not rotate.
				// Rewrapping would only rewrite the old generation, and the
				// run would record a rotation that did not happen.
				return res, fmt.Errorf("rotation: rotate KEK: the provider reported a rotation of %s, but its version and material generation (%q) are unchanged; nothing is rewrapped", v.Ref, v.Generation)
			}
			res.Rotated = &v
			log.Info("KEK rotated", "version", v.Ref.String(), "generation", v.Generation)
			if versions, err = opts.Provider.Versions(ctx); err != nil {
				return res, fmt.Errorf("rotation: list KEK versions after rotating to %s: %w", v.Ref, err)
			}
		}
	}
	var enabled []keys.Ref
	for _, v := range versions {
		if v.State == keys.StateEnabled {
			enabled = append(enabled, v.Ref)
		}
	}
	primary := primaryOf(versions)
	if primary == nil {
		return res, errors.New("rotation: the provider reports no primary KEK version")
	}
	res.Primary = primary.Ref
	res.PrimaryGeneration = primary.Generation
	if primary.State != keys.StateEnabled {
		return res, fmt.Errorf("rotation: the primary KEK version %s is %s, not enabled: %w", primary.Ref, primary.State, keys.ErrVersionRetired)
	}

	backups, err := catalog.List(ctx, opts.Store, catalog.ListOptions{})
	if err != nil {
		return res, fmt.Errorf("rotation: %w", err)
	}
	state := State{Policy: opts.Policy, Primary: res.Primary, Enabled: enabled}
	var todo []catalog.Manifest
	for _, m := range backups {
		if !wrappedUnder(m, res.Primary) {
			res.NotWrapped = append(res.NotWrapped, m.Backup)
			log.Info("backup not wrapped under this key provider; left to its own", "backup", m.Backup, "kek", m.KEK.String())
			continue
		}
		todo = append(todo, m)
	}
	// Rewrap with bounded concurrency; results keep the catalog's order.
	results := make([]BackupResult, len(todo))
	done := make([]bool, len(todo))
	workers := cmp.Or(opts.Concurrency, DefaultConcurrency)
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
	)
	for range min(workers, max(1, len(todo))) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(todo) || ctx.Err() != nil {
					return
				}
				br := rewrap(ctx, opts, todo[i], res.Primary, res.PrimaryGeneration, now)
				if br.Outcome == OutcomeFailed && ctx.Err() != nil {
					// Stopped, not failed: the backup is neither verified
					// nor known to be broken.
					return
				}
				mu.Lock()
				results[i], done[i] = br, true
				if br.Outcome != OutcomeFailed {
					log.Info("backup key object verified", "backup", br.Backup, "outcome", string(br.Outcome), "object", br.KeyObject)
				} else {
					log.Warn("backup key object not rewrapped", "backup", br.Backup, "object", br.KeyObject, "error", br.Err.Error())
				}
				if opts.Progress != nil {
					opts.Progress(br)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i, br := range results {
		if !done[i] {
			continue
		}
		res.Backups = append(res.Backups, br)
		bs := BackupState{Backup: br.Backup}
		if br.Outcome != OutcomeFailed {
			bs.Verified = []keys.Ref{res.Primary}
		}
		state.Backups = append(state.Backups, bs)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("rotation: %w", err)
	}
	failed := res.Failed()

	for _, v := range versions {
		if v.Primary || v.State != keys.StateEnabled {
			continue
		}
		if len(failed) > 0 {
			// Retire nothing unless every backup is verified under the
			// primary, whatever the policy.
			res.Blocked = append(res.Blocked, BlockedVersion{
				Version: v.Ref, Reason: "not every backup is rewrapped and verified under the primary", Backups: failed,
			})
			continue
		}
		d := MayRetire(v.Ref, state)
		if !d.Retire {
			res.Blocked = append(res.Blocked, BlockedVersion{Version: v.Ref, Reason: d.Reason, Backups: d.Blocking})
			continue
		}
		if err := opts.Provider.Retire(ctx, v.Ref.Version); err != nil {
			return res, fmt.Errorf("rotation: retire %s: %w", v.Ref, err)
		}
		res.Retired = append(res.Retired, v.Ref)
		log.Info("KEK version retired", "version", v.Ref.String())
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("rotation: %d backup(s) not rewrapped and verified under %s: %s: %w",
			len(failed), res.Primary, strings.Join(failed, ", "), ErrIncomplete)
	}
	return res, nil
}

// wrappedUnder reports whether backup m's data key was wrapped under the
// key of ref (its provider and key, any version) at backup time: the
// manifest's kek or one of its alsoWrapped (docs/format.md §6). A backup
// of a plan that lists several keyProviders is each one's concern; one
// whose plan never listed this provider is not, and rotating or retiring
// this provider's versions cannot affect it.
func wrappedUnder(m catalog.Manifest, ref keys.Ref) bool {
	same := func(r keys.Ref) bool { return r.Provider == ref.Provider && r.Key == ref.Key }
	return same(m.KEK) || slices.ContainsFunc(m.AlsoWrapped, same)
}

// primaryOf returns the primary version in vs, or nil.
func primaryOf(vs []keys.Version) *keys.Version {
	for i := range vs {
		if vs[i].Primary {
			return &vs[i]
		}
	}
	return nil
}

// rewrap makes sure backup m has a verified key object under primary, at
// the name for primary's material generation (docs/format.md
// §3.2).
func rewrap(ctx context.Context, opts Options, m catalog.Manifest, primary keys.Ref, generation string, now func() time.Time) BackupResult {
	key := catalog.KeysPrefix(m.Backup) + envelope.KeyObjectNameAt(primary, generation)
	br := BackupResult{Backup: m.Backup, KeyObject: key}
	fail := func(err error) BackupResult {
		br.Outcome = OutcomeFailed
		br.Err = fmt.Errorf("backup %s: %w", m.Backup, err)
		return br
	}
	_, err := opts.Store.Stat(ctx, key)
	switch {
	case err == nil:
		br.Outcome = OutcomeSkipped
	case errors.Is(err, store.ErrNotFound):
		written, err := writeKeyObject(ctx, opts, m, key, primary, now)
		if err != nil {
			return fail(err)
		}
		br.Outcome = OutcomeSkipped
		if written {
			br.Outcome = OutcomeRewrapped
		}
	default:
		return fail(fmt.Errorf("stat key object %s: %w", key, err))
	}
	if err := verify(ctx, opts, m, key, primary); err != nil {
		return fail(err)
	}
	return br
}

// writeKeyObject opens the backup's data key from its existing key objects
// and stores it wrapped under primary at key. It reports false, and no
// error, when the object already exists (an earlier run wrote it).
func writeKeyObject(ctx context.Context, opts Options, m catalog.Manifest, key string, primary keys.Ref, now func() time.Time) (bool, error) {
	var ko envelope.KeyObject
	if rw, ok := opts.Provider.(Rewrapper); ok {
		var err error
		if ko, err = rewrapInProvider(ctx, opts.Store, rw, m, primary, now); err != nil {
			return false, err
		}
	} else {
		dk, _, err := catalog.OpenKey(ctx, opts.Store, m.Backup, m.DataKeyID, opts.Provider)
		if err != nil {
			return false, err
		}
		ko, err = envelope.SealKey(ctx, opts.Provider, m.Backup, dk, now())
		dk.Destroy()
		if err != nil {
			return false, err
		}
	}
	if ko.KEK != primary {
		return false, fmt.Errorf("wrapped under %s, not the primary %s (was the KEK rotated during the run?)", ko.KEK, primary)
	}
	b, err := ko.Marshal()
	if err != nil {
		return false, err
	}
	_, err = opts.Store.Put(ctx, key, bytes.NewReader(b), store.PutOptions{RetainUntil: m.RetainUntil, Size: int64(len(b))})
	if errors.Is(err, store.ErrExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store key object %s: %w", key, err)
	}
	return true, nil
}

// Rewrapper is implemented by providers that re-encrypt a wrapped key
// under their primary version without returning the plaintext data key
// (keys/vault, with transit's rewrap). Run uses it when the provider has
// it, and otherwise unwraps and wraps again.
type Rewrapper interface {
	Rewrap(ctx context.Context, w keys.Wrapped, aad []byte) (keys.Wrapped, error)
}

// rewrapInProvider rewraps m's data key from one of its existing key
// objects of the same provider and key, tried newest first, falling back
// to the next on failure as readers do (docs/format.md §3).
func rewrapInProvider(ctx context.Context, st store.Store, rw Rewrapper, m catalog.Manifest, primary keys.Ref, now func() time.Time) (envelope.KeyObject, error) {
	var kos []envelope.KeyObject
	var tried []error
	for info, err := range st.List(ctx, catalog.KeysPrefix(m.Backup)) {
		if err != nil {
			return envelope.KeyObject{}, fmt.Errorf("list key objects: %w", err)
		}
		ko, err := readKeyObject(ctx, st, info.Key)
		if err != nil {
			tried = append(tried, err)
			continue
		}
		if ko.Backup != m.Backup || ko.DataKeyID != m.DataKeyID ||
			ko.KEK.Provider != primary.Provider || ko.KEK.Key != primary.Key {
			tried = append(tried, fmt.Errorf("key object %s: not a wrap of this backup's data key by %s:%s", info.Key, primary.Provider, primary.Key))
			continue
		}
		kos = append(kos, ko)
	}
	slices.SortStableFunc(kos, func(a, b envelope.KeyObject) int { return b.Created.Compare(a.Created) })
	for _, ko := range kos {
		w, err := rw.Rewrap(ctx, keys.Wrapped{KEK: ko.KEK, Ciphertext: ko.Wrapped}, envelope.WrapContext(m.Backup))
		if err != nil {
			if ctx.Err() != nil {
				return envelope.KeyObject{}, fmt.Errorf("rewrap: %w", ctx.Err())
			}
			tried = append(tried, fmt.Errorf("rewrap key object under %s: %w", ko.KEK, err))
			continue
		}
		return envelope.KeyObject{
			Format: envelope.KeyObjectFormat, Backup: m.Backup, DataKeyID: m.DataKeyID,
			KEK: w.KEK, Wrapped: w.Ciphertext, Created: now().UTC(),
		}, nil
	}
	return envelope.KeyObject{}, fmt.Errorf("no key object could be rewrapped: %w", errors.Join(tried...))
}

func readKeyObject(ctx context.Context, st store.Store, key string) (envelope.KeyObject, error) {
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return envelope.KeyObject{}, fmt.Errorf("read key object %s: %w", key, err)
	}
	ko, err := envelope.ReadKeyObject(rc)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return envelope.KeyObject{}, fmt.Errorf("key object %s: %w", key, err)
	}
	return ko, nil
}

// verify reads the key object at key back and checks that it is wrapped
// under primary and unwraps to the manifest's data key.
func verify(ctx context.Context, opts Options, m catalog.Manifest, key string, primary keys.Ref) error {
	ko, err := readKeyObject(ctx, opts.Store, key)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if ko.KEK != primary {
		return fmt.Errorf("verify key object %s: wrapped under %s, not %s: %w", key, ko.KEK, primary, envelope.ErrKeyObject)
	}
	if ko.DataKeyID != m.DataKeyID {
		return fmt.Errorf("verify key object %s: holds data key %s, manifest says %s: %w", key, ko.DataKeyID, m.DataKeyID, envelope.ErrWrongKey)
	}
	dk, err := envelope.OpenKey(ctx, opts.Provider, m.Backup, ko)
	if err != nil {
		return fmt.Errorf("verify key object %s: %w", key, err)
	}
	defer dk.Destroy()
	if dk.ID() != m.DataKeyID {
		return fmt.Errorf("verify key object %s: unwraps to data key %s, manifest says %s: %w", key, dk.ID(), m.DataKeyID, envelope.ErrWrongKey)
	}
	return nil
}

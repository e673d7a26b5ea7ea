package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// NamedStore is one store a rotation run covers.
type NamedStore struct {
	Name  string
	Store store.Store
}

// PolicyOptions configure RunPolicy.
type PolicyOptions struct {
	// Stores are every store written by a plan that uses the provider; a
	// version may be retired only once all of them are rewrapped.
	Stores []NamedStore
	// Provider is the KEK provider. Required.
	Provider keys.Provider
	// Policy is the retirement policy; empty means RetireNever.
	Policy Policy
	// Rotate creates a new version first (if MinAge allows).
	Rotate bool
	// MinAge is the KeyProvider's rotation.every (see Options.MinAge).
	MinAge time.Duration
	// Now stamps new key objects; nil means time.Now.
	Now func() time.Time
	// Logger receives progress lines; nil discards them.
	Logger *slog.Logger
	// Concurrency is Options.Concurrency.
	Concurrency int
}

// RunPolicy carries out a rotation policy over every store, filling rr as
// it goes (rr.Stores, rr.Results, the versions, what was retired): pass 1
// rotates once (in the first store's run, if due) and rewraps and
// verifies every committed backup in every store, retiring nothing; then
// Retirement, a pure judgement over all stores' results, decides what may
// be retired, and only that is retired. An error wrapping ErrIncomplete
// means some backups failed (rr names them); any other error means the run
// stopped early.
func RunPolicy(ctx context.Context, rr *RunRecord, opts PolicyOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if rr.Results == nil {
		rr.Results = map[string]*Result{}
	}
	rr.Stores = rr.Stores[:0]
	for _, s := range opts.Stores {
		rr.Stores = append(rr.Stores, s.Name)
	}
	rr.RetirePolicy = opts.Policy
	if rr.RetirePolicy == "" {
		rr.RetirePolicy = RetireNever
	}
	rotate := opts.Rotate
	if !rotate && rr.NotRotatedReason == "" {
		rr.NotRotatedReason = "--no-rotate (finishing an earlier run)"
	}
	for _, s := range opts.Stores {
		r, err := Run(ctx, Options{
			Store: s.Store, Provider: opts.Provider, Policy: RetireNever,
			Rotate: rotate, MinAge: opts.MinAge, Now: opts.Now, Logger: log.With("store", s.Name),
			Concurrency: opts.Concurrency,
		})
		if r.From != nil && rr.From == nil {
			from := *r.From
			rr.From = &from
			rr.Provider, rr.Key = from.Ref.Provider, from.Ref.Key
		}
		if rotate {
			switch {
			case r.Rotated != nil:
				rr.Rotated = r.Rotated
			case r.NotRotated != "":
				rr.NotRotatedReason = r.NotRotated
			case err != nil:
				rr.NotRotatedReason = "rotate failed: " + err.Error()
			}
		}
		rotate = false
		if r.Primary != (keys.Ref{}) {
			rr.Primary, rr.PrimaryGeneration = r.Primary, r.PrimaryGeneration
			rr.Provider, rr.Key = r.Primary.Provider, r.Primary.Key
		}
		if err != nil && !errors.Is(err, ErrIncomplete) {
			if len(r.Backups) > 0 {
				rr.Results[s.Name] = &r
			}
			rr.RetirementWithheld = "the run stopped early"
			return fmt.Errorf("store %s: %w", s.Name, err)
		}
		rr.Results[s.Name] = &r
	}
	// A backup hidden by a delete marker (or shadowed by a version someone
	// else wrote) was not listed, so not rewrapped: retiring a version
	// could make it unreadable. Withhold retirement while any store holds
	// what lifeboat did not write under backups/.
	for _, s := range opts.Stores {
		va, ok := s.Store.(store.VersionAuditor)
		if !ok {
			continue
		}
		findings, err := va.AuditVersions(ctx, "backups/")
		if err != nil {
			rr.RetirementWithheld = "the store's object versions could not be audited"
			return fmt.Errorf("retire: store %s: %w", s.Name, err)
		}
		if len(findings) > 0 {
			rr.RetirementWithheld = fmt.Sprintf("store %s holds %d keys under backups/ with versions or delete markers lifeboat did not write (first: %s); a backup hidden by one was not rewrapped (see `lifeboat store check %s`)",
				s.Name, len(findings), findings[0], s.Name)
			log.Error("retirement withheld: the store was written by someone else", "store", s.Name, "keys", len(findings))
			if n := rr.Totals().Failed; n > 0 {
				return fmt.Errorf("%d backup(s) not rewrapped and verified under %s: %w", n, rr.Primary, ErrIncomplete)
			}
			return nil
		}
	}
	versions, err := opts.Provider.Versions(ctx)
	if err != nil {
		rr.RetirementWithheld = "the provider's versions could not be read"
		return fmt.Errorf("retire: list KEK versions: %w", err)
	}
	j := Retirement(rr, versions)
	rr.Kept, rr.RetirementWithheld = j.Kept, j.Withheld
	for _, v := range j.Retire {
		if err := opts.Provider.Retire(ctx, v.Version); err != nil {
			return fmt.Errorf("retire %s: %w", v, err)
		}
		rr.Retired = append(rr.Retired, v)
		log.Info("KEK version retired", "version", v.String())
	}
	if n := rr.Totals().Failed; n > 0 {
		return fmt.Errorf("%d backup(s) not rewrapped and verified under %s: %w", n, rr.Primary, ErrIncomplete)
	}
	return nil
}

// RetireJudgement is Retirement's answer.
type RetireJudgement struct {
	// Retire lists the versions that may be retired now.
	Retire []keys.Ref
	// Kept lists the enabled non-primary versions that may not, and why.
	Kept []BlockedVersion
	// Withheld says why retirement was not considered at all ("" when it
	// was).
	Withheld string
}

// Retirement decides, over every store of a run, which old versions may be
// retired: none unless every store in rr.Stores was reached and every
// backup in every one of them was verified under the primary, and then
// each enabled non-primary version as MayRetire says over the union of all
// stores' backups (named store/backup). It is a pure function of rr and
// the provider's versions.
func Retirement(rr *RunRecord, versions []keys.Version) RetireJudgement {
	if len(rr.Stores) == 0 {
		return RetireJudgement{Withheld: "no store was covered"}
	}
	for _, name := range rr.Stores {
		if rr.Results[name] == nil {
			return RetireJudgement{Withheld: fmt.Sprintf("store %s was not reached", name)}
		}
	}
	if n := rr.Totals().Failed; n > 0 {
		return RetireJudgement{Withheld: fmt.Sprintf("%d backup(s) not rewrapped and verified", n)}
	}
	if rr.RetirePolicy != RetireAfterVerifiedRewrap {
		return RetireJudgement{Withheld: fmt.Sprintf("policy retireOldVersions is %s", policyName(rr.RetirePolicy))}
	}
	state := State{Policy: rr.RetirePolicy, Primary: rr.Primary}
	for _, v := range versions {
		if v.State == keys.StateEnabled {
			state.Enabled = append(state.Enabled, v.Ref)
		}
	}
	for _, name := range rr.Stores {
		for _, b := range rr.Results[name].Backups {
			bs := BackupState{Backup: name + "/" + b.Backup}
			if b.Outcome != OutcomeFailed {
				bs.Verified = []keys.Ref{rr.Primary}
			}
			state.Backups = append(state.Backups, bs)
		}
	}
	var j RetireJudgement
	for _, v := range versions {
		if v.Primary || v.State != keys.StateEnabled || v.Ref == rr.Primary {
			continue
		}
		d := MayRetire(v.Ref, state)
		if d.Retire {
			j.Retire = append(j.Retire, v.Ref)
			continue
		}
		j.Kept = append(j.Kept, BlockedVersion{Version: v.Ref, Reason: d.Reason, Backups: d.Blocking})
	}
	return j
}

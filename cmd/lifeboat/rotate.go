package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/vault"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

type rotateStoreResult struct {
	Store     string   `json:"store"`
	Rewrapped []string `json:"rewrapped"`
	Skipped   []string `json:"skipped"`
	Failed    []string `json:"failed,omitempty"`
}

type rotateResult struct {
	Policy     string              `json:"policy"`
	Provider   string              `json:"keyProvider"`
	Rotated    string              `json:"rotated,omitempty"`
	NotRotated string              `json:"notRotated,omitempty"`
	Outcome    string              `json:"outcome"`
	Primary    string              `json:"primary"`
	Stores     []rotateStoreResult `json:"stores"`
	Retired    []string            `json:"retired,omitempty"`
	Blocked    []string            `json:"blocked,omitempty"`
}

func newKeysRotateCommand(a *app) *cobra.Command {
	var (
		noRotate   bool
		signingKey string
	)
	cmd := &cobra.Command{
		Use:   "rotate POLICY",
		Short: "Rotate a KEK and rewrap every backup's data key under the new version",
		Long: `rotate carries out a RotationPolicy: it creates a new version of the policy's
KEK, then, in every store written by a plan that uses that key provider,
writes a new key object for each committed backup wrapped under the new
version and checks that it unwraps. Artifacts and existing key objects are
never touched, so locked backups stay readable under their old versions.

It is idempotent and resumable: a rerun after a crash finds the key
objects already written and only verifies them (use --no-rotate to finish
an interrupted run without creating yet another version). Old versions are
retired only when the policy says afterVerifiedRewrap and every backup in
every store was verified under the new version; a backup that cannot be
rewrapped is named and blocks retirement.

With the KeyProvider's rotation.every set, no version is created while the
current one is younger than that; backups are still rewrapped and verified
under it.

Each run appends a signed record of kind rotation to the evidence log of
every store it touched (docs/format.md §5): versions, counts, failed
backups with the reason, what was retired or why not, and an outcome that
is success only when every backup was rewrapped and verified.`,
		Example: `  lifeboat --config schedules/ keys rotate quarterly
  lifeboat --config schedules/ keys rotate quarterly --no-rotate   # finish an interrupted run`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ctx := cmd.Context()
			set, err := loadConfigSet(a, "keys rotate")
			if err != nil {
				return err
			}
			pol, ok := set.RotationPolicy(argv[0])
			if !ok {
				return usageError{fmt.Errorf("keys rotate: no RotationPolicy named %q in %v", argv[0], a.configPaths)}
			}
			kp, ok := set.KeyProvider(pol.Spec.KeyProvider)
			if !ok {
				return fmt.Errorf("keys rotate %s: no KeyProvider named %q", pol.Metadata.Name, pol.Spec.KeyProvider)
			}
			// Every store a plan using this key provider writes to: a
			// version may be retired only once all of them are rewrapped.
			var storeNames []string
			for _, p := range set.BackupPlansUsing(kp.Metadata.Name) {
				if !slices.Contains(storeNames, p.Spec.Store) {
					storeNames = append(storeNames, p.Spec.Store)
				}
			}
			if len(storeNames) == 0 {
				return fmt.Errorf("keys rotate %s: no BackupPlan uses key provider %s, so there is nothing to rewrap", pol.Metadata.Name, kp.Metadata.Name)
			}
			// Without a signing key the run could not be evidenced: stop
			// before changing anything.
			signer, err := loadSigner(signingKey)
			if err != nil {
				return fmt.Errorf("keys rotate %s: %w", pol.Metadata.Name, err)
			}
			started := time.Now().UTC()
			id, err := newRotationID(pol.Metadata.Name, started)
			if err != nil {
				return fmt.Errorf("keys rotate %s: %w", pol.Metadata.Name, err)
			}
			rr := &rotation.RunRecord{
				ID:     id,
				Policy: pol.Metadata.Name, KeyProvider: kp.Metadata.Name,
				Provider: string(kp.Spec.Type), Key: configuredKey(kp),
				Stores: storeNames, Started: started, Results: map[string]*rotation.Result{},
				RetirePolicy: rotation.Policy(pol.Spec.RetireOldVersions),
			}
			if rr.RetirePolicy == "" {
				rr.RetirePolicy = rotation.RetireNever
			}
			res, runErr := rotateRun(ctx, a, set, pol, kp, rr, !noRotate)
			rr.Err = runErr
			rr.Finished = time.Now().UTC()
			if runErr != nil && rr.RetirementWithheld == "" && len(rr.Retired) == 0 && len(rr.Kept) == 0 {
				rr.RetirementWithheld = "the run stopped early"
			}
			// Evidence in every store opened, whatever happened; an
			// interrupted run is recorded too, within a bound.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			var recErrs []error
			for _, name := range storeNames {
				st := res.stores[name]
				if st == nil {
					continue
				}
				rec, err := rotation.Publish(rctx, rr, rotation.PublishOptions{
					Store: st, StoreName: name, Signer: signer, Retention: res.retention[name], Logger: a.logger,
				})
				if err != nil {
					a.logger.Error("rotation has no evidence record in this store", "store", name, "rotation", rr.ID, "err", err)
					recErrs = append(recErrs, err)
					continue
				}
				a.logger.Info("evidence recorded", "rotation", rr.ID, "store", name, "record", rec.Key(), "seq", rec.Seq, "outcome", rec.Outcome)
			}
			if runErr != nil && !errors.Is(runErr, rotation.ErrIncomplete) {
				return errors.Join(runErr, errors.Join(recErrs...))
			}
			out := rotateResult{Policy: pol.Metadata.Name, Provider: kp.Metadata.Name, Primary: rr.Primary.String(), Outcome: rr.Outcome(storeNames[0])}
			if rr.Rotated != nil {
				out.Rotated = rr.Rotated.Ref.String()
			} else {
				out.NotRotated = rr.NotRotatedReason
			}
			var failed []string
			for _, name := range storeNames {
				r := rr.Results[name]
				out.Stores = append(out.Stores, rotateStoreResult{Store: name, Rewrapped: nz(r.Rewrapped()), Skipped: nz(r.Skipped()), Failed: r.Failed()})
				for _, f := range r.Failed() {
					failed = append(failed, name+"/"+f)
				}
			}
			for _, v := range rr.Retired {
				out.Retired = append(out.Retired, v.String())
			}
			for _, b := range rr.Kept {
				out.Blocked = append(out.Blocked, b.Version.String()+": "+b.Reason)
			}
			if rr.RetirementWithheld != "" {
				out.Blocked = append(out.Blocked, "all old versions: "+rr.RetirementWithheld)
			}
			t := table{header: []string{"STORE", "REWRAPPED", "ALREADY DONE", "FAILED"}}
			for _, s := range out.Stores {
				t.rows = append(t.rows, []string{s.Store, fmt.Sprint(len(s.Rewrapped)), fmt.Sprint(len(s.Skipped)), strings.Join(s.Failed, ", ")})
			}
			if err := a.render(cmd.OutOrStdout(), out, t); err != nil {
				return err
			}
			if a.output == "table" {
				switch {
				case out.Rotated != "":
					fmt.Fprintf(cmd.OutOrStdout(), "primary %s (new: %s)\n", out.Primary, out.Rotated)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "primary %s (not rotated: %s)\n", out.Primary, out.NotRotated)
				}
				for _, v := range out.Retired {
					fmt.Fprintf(cmd.OutOrStdout(), "retired %s\n", v)
				}
				for _, b := range out.Blocked {
					fmt.Fprintf(cmd.OutOrStdout(), "kept    %s\n", b)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "outcome %s (evidence record %s)\n", out.Outcome, rr.ID)
			}
			if len(failed) > 0 {
				return reportedError{fmt.Errorf("keys rotate %s: %d backup(s) not rewrapped: %s: %w", pol.Metadata.Name, len(failed), strings.Join(failed, ", "), rotation.ErrIncomplete)}
			}
			if len(recErrs) > 0 {
				return fmt.Errorf("keys rotate %s: rotation done, but its evidence is not recorded everywhere: %w", pol.Metadata.Name, errors.Join(recErrs...))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noRotate, "no-rotate", false, "do not create a new version; only rewrap under the current primary (finishes an interrupted run)")
	cmd.Flags().StringVar(&signingKey, "signing-key", "", "evidence signing key (Ed25519 PEM, created 0600 on first use); default: lifeboat/evidence-signing.pem in the user's config directory")
	return cmd
}

// newRotationID returns a rotation run's ID, the same in every store's
// evidence record of the run (docs/format.md §5.3.1):
// <policy>-<UTC start as 20060102T150405Z>-<4 random hex digits>, like a
// backup ID, so that two runs started in the same second get different
// IDs. It is checked against the evidence ID rule: 1 to 128 bytes of
// [A-Za-z0-9._-] (a policy name is a DNS label, at most 63 bytes, so the
// ID is at most 85).
func newRotationID(policy string, started time.Time) (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new rotation ID: %w", err)
	}
	id := policy + "-" + started.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	if len(id) > 128 {
		return "", fmt.Errorf("new rotation ID %q: longer than 128 bytes", id)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", fmt.Errorf("new rotation ID %q: byte %d is not one of [A-Za-z0-9._-]", id, i)
		}
	}
	return id, nil
}

func nz(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// rotateOpened is what rotateRun opened: the stores, by name, and their
// evidence retention.
type rotateOpened struct {
	stores    map[string]store.Store
	retention map[string]time.Duration
}

// rotateRun carries out pol over every store in rr.Stores, filling rr as
// it goes: pass 1 rotates once (if due) and rewraps and verifies in every
// store, retiring nothing; pass 2 retires what the policy allows, only
// when every backup in every store verified.
func rotateRun(ctx context.Context, a *app, set *config.Set, pol *config.RotationPolicy, kp *config.KeyProvider, rr *rotation.RunRecord, rotate bool) (rotateOpened, error) {
	opened := rotateOpened{stores: map[string]store.Store{}, retention: map[string]time.Duration{}}
	for _, name := range rr.Stores {
		cs, _ := set.Store(name)
		st, err := openConfigStore(ctx, a, cs, false)
		if err != nil {
			return opened, fmt.Errorf("keys rotate %s: %w", pol.Metadata.Name, err)
		}
		opened.stores[name] = st
		if cs.Spec.ObjectLock != nil {
			opened.retention[name] = cs.Spec.ObjectLock.Retention.Std()
		}
	}
	if !rotate {
		rr.NotRotatedReason = "--no-rotate (finishing an earlier run)"
	}
	prov, err := openKeyProvider(ctx, kp)
	if err != nil {
		rr.NotRotatedReason = "the key provider could not be opened"
		return opened, fmt.Errorf("keys rotate %s: %w", pol.Metadata.Name, err)
	}
	var minAge time.Duration
	if kp.Spec.Rotation != nil {
		minAge = kp.Spec.Rotation.Every.Std()
	}
	for _, name := range rr.Stores {
		r, err := rotation.Run(ctx, rotation.Options{
			Store: opened.stores[name], Provider: prov, Policy: rotation.RetireNever,
			Rotate: rotate, MinAge: minAge, Logger: a.logger.With("store", name),
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
		if err != nil && !errors.Is(err, rotation.ErrIncomplete) {
			if len(r.Backups) > 0 {
				rr.Results[name] = &r
			}
			return opened, fmt.Errorf("keys rotate %s: store %s: %w", pol.Metadata.Name, name, err)
		}
		rr.Results[name] = &r
	}
	totals := rr.Totals()
	switch {
	case totals.Failed > 0:
		rr.RetirementWithheld = fmt.Sprintf("%d backup(s) not rewrapped and verified", totals.Failed)
		return opened, nil
	case rr.RetirePolicy != rotation.RetireAfterVerifiedRewrap:
		rr.RetirementWithheld = "policy retireOldVersions is never"
		return opened, nil
	}
	r, err := rotation.Run(ctx, rotation.Options{Store: opened.stores[rr.Stores[0]], Provider: prov, Policy: rotation.RetireAfterVerifiedRewrap, Logger: a.logger})
	rr.Retired, rr.Kept = r.Retired, r.Blocked
	if err != nil {
		return opened, fmt.Errorf("keys rotate %s: retire: %w", pol.Metadata.Name, err)
	}
	return opened, nil
}

// configuredKey is the key a KeyProvider names, for records written
// before the provider reports its own references.
func configuredKey(kp *config.KeyProvider) string {
	switch kp.Spec.Type {
	case config.KeyProviderAWSKMS:
		if kp.Spec.Alias != "" {
			return kp.Spec.Alias
		}
		return kp.Spec.KeyID
	case config.KeyProviderVault:
		mount := strings.Trim(kp.Spec.Mount, "/")
		if mount == "" {
			mount = vault.DefaultMount
		}
		return mount + "/" + kp.Spec.TransitKey
	}
	return kp.Spec.Keyring
}

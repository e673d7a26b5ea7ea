package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
)

type rotateStoreResult struct {
	Store     string   `json:"store"`
	Rewrapped []string `json:"rewrapped"`
	Skipped   []string `json:"skipped"`
	Failed    []string `json:"failed,omitempty"`
	// NotWrapped are backups never wrapped under this provider's key.
	NotWrapped []string `json:"notWrapped,omitempty"`
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
		noRotate    bool
		concurrency int
		signingKey  string
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
  lifeboat --config schedules/ keys rotate quarterly --no-rotate   # finish an interrupted run
  lifeboat --config schedules/ keys rotate quarterly --concurrency 2   # gentler on a rate-limited KMS`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if concurrency < 1 {
				return usageError{fmt.Errorf("keys rotate: --concurrency %d: want at least 1", concurrency)}
			}
			set, err := loadConfigSet(a, "keys rotate")
			if err != nil {
				return err
			}
			// Without a signing key the run could not be evidenced: stop
			// before changing anything.
			signer, err := a.env(set).Signer(cmd.Context(), signingKey, true)
			if err != nil {
				return fmt.Errorf("keys rotate %s: %w", argv[0], err)
			}
			res, runErr := job.Rotate(cmd.Context(), a.env(set), argv[0], job.RotateOptions{Signer: signer, NoRotate: noRotate, Concurrency: concurrency})
			rr := res.Run
			if rr == nil {
				return runErr
			}
			for name, rec := range res.Records {
				a.logger.Info("evidence recorded", "rotation", rr.ID, "store", name, "record", rec.Key(), "seq", rec.Seq, "outcome", rec.Outcome)
			}
			if runErr != nil && !errors.Is(runErr, rotation.ErrIncomplete) {
				return runErr
			}
			storeNames := rr.Stores
			var recErrs []error
			for _, e := range res.RecordErrors {
				recErrs = append(recErrs, e)
			}
			out := rotateResult{Policy: rr.Policy, Provider: rr.KeyProvider, Primary: rr.Primary.String(), Outcome: rr.Outcome(storeNames[0])}
			if rr.Rotated != nil {
				out.Rotated = rr.Rotated.Ref.String()
			} else {
				out.NotRotated = rr.NotRotatedReason
			}
			var failed []string
			for _, name := range storeNames {
				r := rr.Results[name]
				out.Stores = append(out.Stores, rotateStoreResult{Store: name, Rewrapped: nz(r.Rewrapped()), Skipped: nz(r.Skipped()), Failed: r.Failed(), NotWrapped: r.NotWrapped})
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
			t := table{header: []string{"STORE", "REWRAPPED", "ALREADY DONE", "OTHER PROVIDERS'", "FAILED"}}
			for _, s := range out.Stores {
				t.rows = append(t.rows, []string{s.Store, fmt.Sprint(len(s.Rewrapped)), fmt.Sprint(len(s.Skipped)), fmt.Sprint(len(s.NotWrapped)), strings.Join(s.Failed, ", ")})
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
				return reportedError{fmt.Errorf("keys rotate %s: %d backup(s) not rewrapped: %s: %w", rr.Policy, len(failed), strings.Join(failed, ", "), rotation.ErrIncomplete)}
			}
			if len(recErrs) > 0 {
				return fmt.Errorf("keys rotate %s: rotation done, but its evidence is not recorded everywhere: %w", rr.Policy, errors.Join(recErrs...))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noRotate, "no-rotate", false, "do not create a new version; only rewrap under the current primary (finishes an interrupted run)")
	cmd.Flags().IntVar(&concurrency, "concurrency", rotation.DefaultConcurrency, "backups rewrapped at once (each rewrap is a few small reads and writes and a provider call); 1 rewraps one at a time")
	cmd.Flags().StringVar(&signingKey, "signing-key", "", signingKeyHelp)
	return cmd
}

func nz(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
)

type rotateStoreResult struct {
	Store     string   `json:"store"`
	Rewrapped []string `json:"rewrapped"`
	Skipped   []string `json:"skipped"`
	Failed    []string `json:"failed,omitempty"`
}

type rotateResult struct {
	Policy   string              `json:"policy"`
	Provider string              `json:"keyProvider"`
	Rotated  string              `json:"rotated,omitempty"`
	Primary  string              `json:"primary"`
	Stores   []rotateStoreResult `json:"stores"`
	Retired  []string            `json:"retired,omitempty"`
	Blocked  []string            `json:"blocked,omitempty"`
}

func newKeysRotateCommand(a *app) *cobra.Command {
	var noRotate bool
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
rewrapped is named and blocks retirement.`,
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
			prov, err := openKeyProvider(ctx, kp)
			if err != nil {
				return fmt.Errorf("keys rotate %s: %w", pol.Metadata.Name, err)
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
			res := rotateResult{Policy: pol.Metadata.Name, Provider: kp.Metadata.Name}
			rotate := !noRotate
			var failed []string
			// Pass 1: rotate once, rewrap and verify in every store,
			// retiring nothing.
			for _, name := range storeNames {
				cs, _ := set.Store(name)
				st, err := openConfigStore(ctx, a, cs, false)
				if err != nil {
					return fmt.Errorf("keys rotate %s: %w", pol.Metadata.Name, err)
				}
				r, err := rotation.Run(ctx, rotation.Options{Store: st, Provider: prov, Policy: rotation.RetireNever, Rotate: rotate, Logger: a.logger})
				rotate = false
				if r.Rotated != nil {
					res.Rotated = r.Rotated.Ref.String()
				}
				res.Primary = r.Primary.String()
				res.Stores = append(res.Stores, rotateStoreResult{Store: name, Rewrapped: nz(r.Rewrapped()), Skipped: nz(r.Skipped()), Failed: r.Failed()})
				for _, f := range r.Failed() {
					failed = append(failed, name+"/"+f)
				}
				if err != nil && !errors.Is(err, rotation.ErrIncomplete) {
					return fmt.Errorf("keys rotate %s: store %s: %w", pol.Metadata.Name, name, err)
				}
			}
			// Pass 2: retire what the policy allows, only when nothing failed.
			if len(failed) == 0 && pol.Spec.RetireOldVersions == config.RetireAfterVerifiedRewrap {
				cs, _ := set.Store(storeNames[0])
				st, err := openConfigStore(ctx, a, cs, false)
				if err != nil {
					return fmt.Errorf("keys rotate %s: %w", pol.Metadata.Name, err)
				}
				r, err := rotation.Run(ctx, rotation.Options{Store: st, Provider: prov, Policy: rotation.RetireAfterVerifiedRewrap, Logger: a.logger})
				if err != nil {
					return fmt.Errorf("keys rotate %s: retire: %w", pol.Metadata.Name, err)
				}
				for _, v := range r.Retired {
					res.Retired = append(res.Retired, v.String())
				}
				for _, b := range r.Blocked {
					res.Blocked = append(res.Blocked, b.Version.String()+": "+b.Reason)
				}
			} else if len(failed) > 0 {
				res.Blocked = append(res.Blocked, "all old versions: backups not rewrapped: "+strings.Join(failed, ", "))
			} else {
				res.Blocked = append(res.Blocked, "all old versions: policy retireOldVersions is never")
			}
			t := table{header: []string{"STORE", "REWRAPPED", "ALREADY DONE", "FAILED"}}
			for _, s := range res.Stores {
				t.rows = append(t.rows, []string{s.Store, fmt.Sprint(len(s.Rewrapped)), fmt.Sprint(len(s.Skipped)), strings.Join(s.Failed, ", ")})
			}
			if err := a.render(cmd.OutOrStdout(), res, t); err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "primary %s%s\n", res.Primary, map[bool]string{true: " (new: " + res.Rotated + ")", false: ""}[res.Rotated != ""])
				for _, v := range res.Retired {
					fmt.Fprintf(cmd.OutOrStdout(), "retired %s\n", v)
				}
				for _, b := range res.Blocked {
					fmt.Fprintf(cmd.OutOrStdout(), "kept    %s\n", b)
				}
			}
			if len(failed) > 0 {
				return reportedError{fmt.Errorf("keys rotate %s: %d backup(s) not rewrapped: %s: %w", pol.Metadata.Name, len(failed), strings.Join(failed, ", "), rotation.ErrIncomplete)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noRotate, "no-rotate", false, "do not create a new version; only rewrap under the current primary (finishes an interrupted run)")
	return cmd
}

func nz(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

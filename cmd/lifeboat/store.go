package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

func newStoreCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Inspect the stores backups are written to",
	}
	cmd.AddCommand(newStoreCheckCommand(a))
	return cmd
}

func newStoreCheckCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "check STORE",
		Short: "Check a store's versioning and Object Lock against what its plans need",
		Long: `check reads the bucket's versioning and Object Lock configuration (S3) and
judges it against the Store's objectLock and the retention of every backup
plan that writes to it. A bucket without Object Lock fails unless the Store
says allowUnlocked: true, and even then the report says backups are not
immutable. An fs store passes with a warning: its write-once rules are kept
by lifeboat, not by the storage.

Credentials come from the AWS SDK's default chain (environment, shared
files, instance or pod identity); none are read from lifeboat's files.`,
		Example: `  lifeboat --config schedules/ store check s3-locked
  lifeboat --config lifeboat.yaml store check s3-locked -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if len(a.configPaths) == 0 {
				return usageError{errors.New("store check: name the configuration with --config")}
			}
			set, err := config.LoadPaths(a.configPaths...)
			if err != nil {
				return err
			}
			cs, ok := set.Store(argv[0])
			if !ok {
				return usageError{fmt.Errorf("store check: no Store named %q in %v", argv[0], a.configPaths)}
			}
			res, err := a.env(set).CheckStore(cmd.Context(), cs)
			if err != nil {
				return err
			}
			if err := a.env(set).AuditStore(cmd.Context(), cs, &res); err != nil {
				return err
			}
			t := table{header: []string{"CHECK", "RESULT"}, rows: [][]string{
				{"store", res.Store + " (" + res.Type + ")"},
				{"versioning", orNone(res.Status.Versioning)},
				{"object lock", lockText(res.Status)},
				{"default retention", retentionText(res.Status)},
				{"plans", fmt.Sprintf("%v", res.Requirement.Plans)},
				{"needs", fmt.Sprintf("%s for %s", orNone(res.Requirement.Mode), orNone(res.Requirement.Retention))},
			}}
			for _, p := range res.Verdict.Problems {
				t.rows = append(t.rows, []string{"problem", p})
			}
			verdict := "PASS"
			if !res.Verdict.OK {
				verdict = "FAIL"
			}
			t.rows = append(t.rows, []string{"verdict", verdict})
			if err := a.render(cmd.OutOrStdout(), res, t); err != nil {
				return err
			}
			if !res.Verdict.OK {
				return reportedError{fmt.Errorf("store %s does not satisfy its plans", res.Store)}
			}
			return nil
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func lockText(st store.LockStatus) string {
	switch {
	case st.EnforcedByLifeboat:
		return "write-once enforced by lifeboat"
	case st.Locked:
		return "enabled"
	default:
		return "not enabled"
	}
}

func retentionText(st store.LockStatus) string {
	if st.DefaultMode == "" {
		return "none"
	}
	return fmt.Sprintf("%s %dd", st.DefaultMode, int(st.DefaultRetention/(24*time.Hour)))
}

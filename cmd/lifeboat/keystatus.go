package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/job"
)

func newKeysStatusCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status [KEY_PROVIDER]",
		Short: "Show each KEK's versions, their age, the next rotation, and how many backups each version wraps",
		Long: `status lists, for each KeyProvider (or the one named), its KEK versions with
state and age, the next rotation its Schedules will run, and how many
committed backups have a key object under each version, counted in every
store written by a plan that uses the provider. A version that still wraps
backups no newer version wraps cannot be retired yet.

The counts come from the key objects' kek field, read without unwrapping:
only objects that decode as a key object of their backup and hold its data
key are counted (others are listed as ignored, and warned about). keys
rotate unwraps and checks every key object it relies on before it retires a
version.`,
		Example: `  lifeboat --config schedules/ keys status
  lifeboat --config schedules/ keys status local -o json`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			set, err := loadConfigSet(a, "keys status")
			if err != nil {
				return err
			}
			name := ""
			if len(argv) == 1 {
				name = argv[0]
			}
			out, failed, err := job.KeyStatuses(cmd.Context(), a.env(set), name)
			if err != nil {
				return err
			}
			t := table{header: []string{"PROVIDER", "VERSION", "STATE", "PRIMARY", "AGE", "BACKUPS WRAPPED", "NEXT ROTATION"}}
			for _, ks := range out {
				if ks.Error != "" {
					t.rows = append(t.rows, []string{ks.KeyProvider, "error: " + ks.Error, "", "", "", "", ""})
					continue
				}
				next := "not scheduled"
				if ks.NextRotation != nil {
					next = ks.NextRotation.UTC().Format(time.RFC3339) + " (" + ks.Schedule + ")"
				}
				for _, v := range ks.Versions {
					t.rows = append(t.rows, []string{ks.KeyProvider, v.Version, v.State, fmt.Sprint(v.Primary), v.Age, fmt.Sprintf("%d of %d", v.Backups, ks.Backups), next})
				}
				for _, o := range ks.Ignored {
					fmt.Fprintf(a.stderr, "warning: store %s: %s: not counted, not a key object of its backup holding its data key: %s\n", o.Store, o.Key, o.Reason)
				}
			}
			if err := a.render(cmd.OutOrStdout(), out, t); err != nil {
				return err
			}
			if failed > 0 {
				return reportedError{fmt.Errorf("keys status: %d key provider(s) could not be read", failed)}
			}
			return nil
		},
	}
}

package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

// evidenceStoreFlags name the store whose evidence log a command reads:
// --store (from --config) or --store-path (an fs store directory).
type evidenceStoreFlags struct {
	storePath, storeName string
	keyFiles             []string
}

func (f *evidenceStoreFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.storePath, "store-path", "", "an fs store directory")
	cmd.Flags().StringVar(&f.storeName, "store", "", "a Store of the --config files")
	cmd.Flags().StringArrayVar(&f.keyFiles, "key", nil, "public key file of a trusted evidence signer; repeatable (without it, signatures are checked for validity, not origin)")
}

func (f *evidenceStoreFlags) open(cmd *cobra.Command, a *app, name string) (store.Store, []evidence.PublicKey, error) {
	if (f.storePath == "") == (f.storeName == "") {
		return nil, nil, usageError{fmt.Errorf("%s: name the store with exactly one of --store and --store-path", name)}
	}
	keys, err := readTrustedKeys(f.keyFiles)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if f.storeName != "" {
		set, err := loadConfigSet(a, name)
		if err != nil {
			return nil, nil, err
		}
		cs, ok := set.Store(f.storeName)
		if !ok {
			return nil, nil, usageError{fmt.Errorf("%s: no Store named %q in the configuration", name, f.storeName)}
		}
		st, err := a.env(set).OpenStore(cmd.Context(), cs, true)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return st, keys, nil
	}
	st, err := fs.Open(cmd.Context(), fs.Options{Root: f.storePath, ReadOnly: true, Logger: a.logger})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return st, keys, nil
}

func newReportListCommand(a *app) *cobra.Command {
	var (
		sf       evidenceStoreFlags
		f        job.ReportFilter
		from, to string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List drill runs from the evidence log, with filters",
		Long: `list lists the drill runs recorded in a store's evidence log, oldest first:
time, drill, verdict, RTO and RPO against their targets, and the report's
key. Each comes from the run's signed evidence record; with --key every
record must be signed by one of the keys.`,
		Example: `  lifeboat report list --store-path /var/lib/lifeboat/store --key signer.pub
  lifeboat --config schedules/ report list --store s3-locked --drill control-plane --verdict fail --from 2026-01-01T00:00:00Z`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			for flag, p := range map[string]*time.Time{from: &f.From, to: &f.To} {
				if flag == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339, flag)
				if err != nil {
					return usageError{fmt.Errorf("report list: --from/--to %q: want an RFC 3339 time", flag)}
				}
				*p = t
			}
			st, keys, err := sf.open(cmd, a, "report list")
			if err != nil {
				return err
			}
			runs, err := job.ListReports(cmd.Context(), st, f, keys)
			if err != nil {
				return err
			}
			if a.output != "table" {
				return a.render(cmd.OutOrStdout(), runs, table{})
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tDRILL\tVERDICT\tRTO / TARGET\tRPO / TARGET\tRUN")
			ms := func(v *int64, target int64) string {
				t := (time.Duration(target) * time.Millisecond).String()
				if v == nil {
					return "not measured / " + t
				}
				return (time.Duration(*v) * time.Millisecond).String() + " / " + t
			}
			for _, r := range runs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.RFC3339), r.Drill, r.Verdict, ms(r.RTOMs, r.TargetRTOMs), ms(r.RPOMs, r.TargetRPOMs), r.RunID)
			}
			w.Flush()
			if len(keys) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "\nSigners not checked (no --key): the records' signatures are valid, but not checked to be a trusted signer's.")
			}
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&f.Drill, "drill", "", "only runs of this Drill")
	cmd.Flags().StringVar(&f.Verdict, "verdict", "", "only runs with this verdict: pass or fail")
	cmd.Flags().StringVar(&from, "from", "", "only runs recorded at or after this RFC 3339 time")
	cmd.Flags().StringVar(&to, "to", "", "only runs recorded before this RFC 3339 time")
	return cmd
}

func newReportShowCommand(a *app) *cobra.Command {
	var sf evidenceStoreFlags
	cmd := &cobra.Command{
		Use:   "show RUN_ID",
		Short: "Show a drill run's signed report, checked against its evidence record",
		Long: `show reads the report of drill run RUN_ID: its drill record is found in the
evidence log, report.json is read and its SHA-256 compared with the
record's, and its signature verified (by a trusted key with --key). It
prints the verdict, objectives, phases and checks. Exit code 4 when the
report does not match its record or its signature.`,
		Example: `  lifeboat report show control-plane-20261205T020000Z-ab12 --store-path /var/lib/lifeboat/store --key signer.pub`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			st, keys, err := sf.open(cmd, a, "report show")
			if err != nil {
				return err
			}
			// A report that does not match its record or signature is
			// evidence.ErrTampered: exit 4.
			rep, run, err := job.ShowReport(cmd.Context(), st, argv[0], keys)
			if err != nil {
				return err
			}
			if a.output != "table" {
				return a.render(cmd.OutOrStdout(), rep, table{})
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Drill %s, run %s: %s (report %s, signed by %s)\n", rep.Drill, rep.RunID, rep.Verdict, run.Report, rep.Signer)
			fmt.Fprintf(w, "Backup %s; started %s, finished %s\n\n", rep.BackupID, rep.Started.UTC().Format(time.RFC3339), rep.Finished.UTC().Format(time.RFC3339))
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PHASE\tSTARTED\tDURATION\tOUTCOME")
			for _, p := range rep.Phases {
				fmt.Fprintf(tw, "%s\t+%s\t%s\t%s\n", p.Name, time.Duration(p.StartedMs)*time.Millisecond, time.Duration(p.DurationMs)*time.Millisecond, p.Outcome)
			}
			fmt.Fprintln(tw, "\nCHECK\tRESULT\tDETAIL\t")
			for _, c := range rep.Checks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t\n", c.Name, c.Outcome, c.Detail)
			}
			tw.Flush()
			for _, r := range rep.Reasons {
				fmt.Fprintf(w, "reason: %s\n", r)
			}
			return nil
		},
	}
	sf.register(cmd)
	return cmd
}

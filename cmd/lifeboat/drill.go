package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/drill"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
)

func newDrillCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Run disaster-recovery drills that measure RTO and RPO",
		Long: `A drill restores a backup into a scratch cluster, verifies what came back,
and measures RTO (drill start to a verified, serving restore) and RPO (age
of the restored data) against the targets in its Drill definition. Every
run writes a signed report and an evidence record, pass or fail.`,
	}
	cmd.AddCommand(newDrillRunCommand(a))
	return cmd
}

// drillFlags are the flags of `drill run` (and the demo's drill).
type drillFlags struct {
	keep          bool
	signingKey    string
	kubeAPIServer string
	tempDir       string
	etcdPrefix    string
	keyProvider   string
	store         string
}

func (f *drillFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.keep, "keep", false, "leave the scratch cluster serving after the drill and print its kubeconfig; Ctrl-C tears it down")
	cmd.Flags().StringVar(&f.signingKey, "signing-key", "", signingKeyHelp)
	cmd.Flags().StringVar(&f.kubeAPIServer, "kube-apiserver", "", "kube-apiserver binary for the embedded scratch cluster (default: $"+embedded.EnvKubeAPIServer+", else kube-apiserver beside lifeboat)")
	cmd.Flags().StringVar(&f.tempDir, "tmp-dir", "", "directory for the run's private temporary files (decrypted artifacts, the scratch etcd: PHI in plaintext), which should be on encrypted or tmpfs storage (the decrypted etcd snapshot itself is held in a sealed memfd instead, swappable like any memory, when the host has room); stale lifeboat-drill-* directories older than 1h left there by a crashed run are removed; default: the system's")
	cmd.Flags().StringVar(&f.etcdPrefix, "etcd-prefix", "/registry", "the source kube-apiserver's --etcd-prefix")
	cmd.Flags().StringVar(&f.keyProvider, "key-provider", "", "unwrap with this one of the plan's keyProviders alone, as if the others were gone (the break-glass drill); default: the Drill's spec.keyProvider, else any of them")
	cmd.Flags().StringVar(&f.store, "store", "", "read the backup from this Store: the plan's store or one of its replicas (spec.replicas); the report and record still go to the plan's store")
}

func newDrillRunCommand(a *app) *cobra.Command {
	var f drillFlags
	cmd := &cobra.Command{
		Use:   "run DRILL_FILE_OR_NAME",
		Short: "Run a drill: restore a backup into a scratch cluster, verify, measure RTO/RPO",
		Long: `run runs the Drill defined in DRILL_FILE (a YAML file holding one Drill), or
the Drill named DRILL_NAME in the --config files, which also hold the backup
plan, store and key provider it uses.

The drill selects a backup (latest, latest before a time, or by ID),
fetches its artifacts and checks their SHA-256, unwraps the data key and
decrypts them, restores the etcd snapshot into a scratch cluster (embedded:
etcd in this process and the kube-apiserver binary that make testbin
builds, on 127.0.0.1) with the backed-up encryption-at-rest configuration,
and verifies: the etcd keyspace at the backup's revision equals the
manifest's inventory, every backed-up namespace, deployment, service, RBAC
object, NetworkPolicy and Secret is served by the restored API at its
backed-up resourceVersion, Secrets decrypt, and the Drill's named objects
exist as backed up.

With --key-provider NAME the backup is unwrapped with that key provider
alone (one of the plan's keyProviders), as if the others were lost with the
cluster: a passing drill proves the break-glass path, and its evidence
record names the provider and the KEK version that unwrapped.

The report (report.json, signed, plus report.md and report.html) goes to the
plan's store under reports/<run-id>/, with an evidence record. It times
each phase and states its peak memory: the resident memory of lifeboat and
of the processes it started (the scratch kube-apiserver), plus the
decrypted snapshot while it is held in memory. The RTO/RPO table is
printed with PASS or FAIL. Progress goes to stderr.

` + exitCodesHelp,
		Example: `  lifeboat --config schedules/ drill run drills/control-plane.yaml
  lifeboat --config lifeboat.yaml drill run control-plane --keep
  lifeboat --config schedules/ drill run control-plane --key-provider breakglass-kms
  lifeboat --config schedules/ drill run control-plane --store dr-us-west-2   # from a replica
  lifeboat --config schedules/ drill run control-plane -o junit > drill-results.xml   # for CI`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			// The RTO clock starts now: loading the configuration, opening
			// the store, the key provider and the signer count towards it.
			start := time.Now()
			ctx := cmd.Context()
			set, d, err := loadDrill(a, argv[0])
			if err != nil {
				return err
			}
			signer, err := a.env(set).Signer(cmd.Context(), f.signingKey, true)
			if err != nil {
				return fmt.Errorf("drill run %s: %w", d.Metadata.Name, err)
			}
			_, err = runDrill(ctx, a, cmd.OutOrStdout(), set, d, job.DrillOptions{
				Signer: signer, Start: start, Keep: f.keep, TempDir: f.tempDir, EtcdPrefix: f.etcdPrefix,
				KubeAPIServer: f.kubeAPIServer, KeyProvider: f.keyProvider, Store: f.store,
			}, false)
			return err
		},
	}
	f.register(cmd)
	return cmd
}

// loadDrill loads the --config files and finds the drill: the one Drill in
// the file arg names, or the Drill called arg.
func loadDrill(a *app, arg string) (*config.Set, *config.Drill, error) {
	paths := append([]string{}, a.configPaths...)
	isFile := false
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		isFile = true
		paths = append(paths, arg)
	}
	if len(paths) == 0 {
		return nil, nil, usageError{fmt.Errorf("drill run: %q is not a file; name the configuration holding drill %q with --config", arg, arg)}
	}
	set, err := config.LoadPaths(paths...)
	if err != nil {
		return nil, nil, err
	}
	if isFile {
		var inFile []*config.Drill
		for _, d := range set.Drills {
			if samePath(d.Source().File, arg) {
				inFile = append(inFile, d)
			}
		}
		switch len(inFile) {
		case 1:
			return set, inFile[0], nil
		case 0:
			return nil, nil, usageError{fmt.Errorf("drill run: %s holds no Drill", arg)}
		default:
			return nil, nil, usageError{fmt.Errorf("drill run: %s holds %d Drills; name one of them with --config %s", arg, len(inFile), arg)}
		}
	}
	d, ok := set.Drill(arg)
	if !ok {
		return nil, nil, usageError{fmt.Errorf("drill run: no Drill named %q in %v", arg, a.configPaths)}
	}
	return set, d, nil
}

func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// fsStoreDir is the root of an fs store, for printing report paths; empty
// for other stores.
func fsStoreDir(cs *config.Store) string {
	if cs.Spec.Type == config.StoreFS {
		return cs.Spec.Path
	}
	return ""
}

// drillOutput is the result of `drill run` for -o json and yaml.
type drillOutput struct {
	Report     evidence.Report `json:"report"`
	ReportKey  string          `json:"reportKey,omitempty"`
	Store      string          `json:"store"`
	ReadFrom   string          `json:"readFrom"`
	Evidence   string          `json:"evidence,omitempty"`
	Kubeconfig string          `json:"kubeconfig,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// runDrill runs drill d (job.Drill) with progress on stderr, prints the
// result (unless quiet: the demo prints its own) and, with Keep, serves
// the scratch cluster until interrupted. It returns the key of the stored
// report.json, if one was written. A failed drill returns a reportedError
// wrapping drill.ErrFailed.
func runDrill(ctx context.Context, a *app, stdout io.Writer, set *config.Set, d *config.Drill, o job.DrillOptions, quiet bool) (string, error) {
	o.Progress = func(e drill.Event) { printEvent(a.stderr, e) }
	jr, runErr := job.Drill(ctx, a.env(set), d, o)
	res := &jr.Result
	if jr.Interrupted {
		fmt.Fprintf(a.stderr, "drill %s interrupted: scratch cluster torn down, no report written\n", d.Metadata.Name)
		return "", runErr
	}
	if jr.Published == nil {
		return "", runErr
	}
	pub := *jr.Published
	out := drillOutput{Store: jr.Store, ReadFrom: jr.ReadFrom, Report: pub.Report, ReportKey: pub.Objects.JSON.Key, Evidence: pub.Record.Key()}
	if runErr != nil {
		out.Error = runErr.Error()
	}
	if res.Cluster != nil {
		out.Kubeconfig = res.Cluster.Access().Kubeconfig
	}
	if !quiet {
		if a.output == "junit" {
			b, err := evidence.RenderJUnit(pub.Report, out.ReportKey)
			if err == nil {
				_, err = stdout.Write(b)
			}
			if err != nil {
				stopKept(a, res)
				return out.ReportKey, err
			}
		} else if a.output == "table" {
			storeDir := ""
			if cs, ok := set.Store(jr.Store); ok {
				storeDir = fsStoreDir(cs)
			}
			printDrillResult(stdout, res, pub, jr.Store, storeDir)
			if jr.ReadFrom != jr.Store {
				fmt.Fprintf(stdout, "Backup read from replica store %s.\n", jr.ReadFrom)
			}
		} else if err := a.render(stdout, out, table{}); err != nil {
			stopKept(a, res)
			return out.ReportKey, err
		}
	}
	if res.Cluster != nil {
		serveKept(ctx, a, res)
	}
	if runErr != nil {
		return out.ReportKey, reportedError{runErr}
	}
	return out.ReportKey, nil
}

// printEvent writes one progress line.
func printEvent(w io.Writer, e drill.Event) {
	phase := e.Phase
	if phase == "" {
		phase = "drill"
	}
	msg := e.Message
	if msg == e.Phase {
		msg = "started"
	}
	fmt.Fprintf(w, "[%7.2fs] %-19s %s\n", e.Elapsed.Seconds(), phase, msg)
}

// printDrillResult prints the RTO/RPO table with PASS/FAIL, the phases,
// the checks and where the report is.
func printDrillResult(w io.Writer, res *drill.Result, pub drill.Published, storeName, storeDir string) {
	verdict := strings.ToUpper(res.Verdict)
	fmt.Fprintf(w, "\nDrill %s, run %s: %s\n", res.Drill, res.RunID, verdict)
	if res.BackupID != "" {
		fmt.Fprintf(w, "Backup %s (etcd revision %d, taken %s)\n", res.BackupID, res.Revision, res.PointInTime.UTC().Format(time.RFC3339))
	}
	if res.KeyObject != "" {
		fmt.Fprintf(w, "Data key unwrapped with %s (key providers tried: %s)\n", res.KeyObject, strings.Join(res.KeyProviders, ", "))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OBJECTIVE\tTARGET\tMEASURED\tRESULT")
	row := func(name string, target int64, got *int64) {
		m, result := "not measured", "FAIL"
		if got != nil {
			m = msText(*got)
			if *got <= target {
				result = "PASS"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, msText(target), m, result)
	}
	row("RTO", res.Targets.RTOMs, res.Measured.RTOMs)
	row("RPO", res.Targets.RPOMs, res.Measured.RPOMs)
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tSTARTED\tDURATION\tOUTCOME\tPEAK MEMORY")
	for _, p := range res.Phases {
		mem := "—"
		if p.PeakMemoryBytes > 0 {
			mem = byteSize(p.PeakMemoryBytes)
		}
		fmt.Fprintf(tw, "%s\t+%s\t%s\t%s\t%s\n", p.Name, roundDur(p.Offset), roundDur(p.Duration), p.Outcome, mem)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	for _, c := range res.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, strings.ToUpper(c.Outcome), c.Detail)
	}
	tw.Flush()

	if len(res.Reasons) > 0 {
		fmt.Fprintln(w, "\nWhy it failed:")
		for _, r := range res.Reasons {
			fmt.Fprintf(w, "  - %s\n", r)
		}
	}
	fmt.Fprintln(w)
	where := fmt.Sprintf("store %s", storeName)
	if storeDir != "" {
		where = filepath.Join(storeDir, "objects")
	}
	fmt.Fprintf(w, "Report:   %s (signed; also report.md, report.html) in %s\n", pub.Objects.JSON.Key, where)
	if storeDir != "" {
		fmt.Fprintf(w, "          %s\n", filepath.Join(storeDir, "objects", strings.TrimSuffix(pub.Objects.JSON.Key, ".json")+".md"))
	}
	fmt.Fprintf(w, "Evidence: %s (record %d, signer %s)\n", pub.Record.Key(), pub.Record.Seq, pub.Record.Signer)
}

func msText(ms int64) string { return roundDur(time.Duration(ms) * time.Millisecond) }

// roundDur shows a duration at a precision that suits its size.
func roundDur(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// serveKept leaves the kept scratch cluster serving until ctx ends (Ctrl-C)
// or its apiserver exits, then tears it down.
func serveKept(ctx context.Context, a *app, res *drill.Result) {
	acc := res.Cluster.Access()
	fmt.Fprintf(a.stderr, "\nScratch cluster kept, serving restored data at %s.\n  export KUBECONFIG=%s\n  kubectl get namespaces\nIt holds restored data (PHI): press Ctrl-C to tear it down.\n", acc.Server, acc.Kubeconfig)
	var exited <-chan struct{}
	if e, ok := res.Cluster.(interface{ Exited() <-chan struct{} }); ok {
		exited = e.Exited()
	}
	select {
	case <-ctx.Done():
	case <-exited:
		fmt.Fprintln(a.stderr, "the scratch kube-apiserver exited")
	}
	stopKept(a, res)
	fmt.Fprintln(a.stderr, "scratch cluster torn down and restored data removed")
}

func stopKept(a *app, res *drill.Result) {
	if res.Cluster == nil {
		return
	}
	if err := res.Cluster.Stop(); err != nil {
		a.logger.Warn("stop scratch cluster", "err", err)
	}
	res.Cluster = nil
}

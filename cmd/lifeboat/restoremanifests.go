package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/kube"
	"github.com/lifeboat-dr/lifeboat/internal/source/manifests"
)

func newRestoreManifestsCommand(a *app) *cobra.Command {
	var (
		o        job.RestoreManifestsOptions
		tf       restoreTargetFlags
		existing string
	)
	cmd := &cobra.Command{
		Use:   "manifests [ID]",
		Short: "Restore a backup's Kubernetes objects into a cluster: a server-side dry run, or --apply",
		Long: `manifests restores the objects of a backup's manifests export into the
cluster --kubeconfig/--context reaches, with server-side apply (field
manager lifeboat-restore), in dependency order: CRDs (waited on until
Established), Namespaces with their Pod Security labels, quotas, limit
ranges and NetworkPolicies, storage and snapshot classes, PVs and PVCs,
RBAC, ServiceAccounts, Secrets and ConfigMaps, workloads, Services,
everything else, and last webhook configurations, admission policies and
APIServices, so they cannot block the restore.

The backup is chosen and verified as for every restore (the manifest
against its signed record with --key, the MAC, every artifact), and the
export is read back against its authenticated index before anything is
sent. Without --apply every object is sent with dryRun=All: the API server
admits and validates it and persists nothing, so the table shows what would
be created, updated, skipped or refused. --apply writes; it needs --confirm
with the target's kube-system namespace UID, which the dry run prints, and
appends a signed restore record.

Not restored: nodes, events, leases, endpoints and endpoint slices,
controller revisions, CSRs and other state of the source cluster; objects a
controller owns (a Deployment's ReplicaSets and Pods: the restored owner
recreates them); the API server's own local APIServices. ownerReferences
are dropped (they carry the source cluster's UIDs). Objects that already
exist are skipped, or updated with --existing update.

Exit codes: 0 every object restored or skipped, 1 some failed (the table
names each with the API's reason), 4 the backup failed verification.`,
		Example: `  lifeboat --config /etc/lifeboat restore manifests control-plane-20261125T020000Z-7f3a \
      --kubeconfig ~/.kube/dr-cluster --key signer.pub
  lifeboat --config /etc/lifeboat restore manifests --plan control-plane --latest \
      --kubeconfig ~/.kube/dr-cluster --namespace-map ehr=ehr-restored --include-namespace ehr \
      --apply --confirm 6f1c0e4e-... --key signer.pub`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			set, err := loadConfigSet(a, "restore manifests")
			if err != nil {
				return err
			}
			if err := tf.parse(cmd, a, set, "restore manifests", argv); err != nil {
				return err
			}
			o.RestoreSelection, o.Target, o.NamespaceMap = tf.sel, tf.target, tf.nsMap
			o.Apply, o.Confirm, o.Signer, o.Existing = tf.apply, tf.confirm, tf.signer, existing
			if f, ok := cmd.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(f.Fd())) && a.output == "table" {
				o.Progress = func(done, total int) {
					fmt.Fprintf(f, "\r%d of %d objects", done, total)
					if done == total {
						fmt.Fprintln(f)
					}
				}
			}
			res, rerr := job.RestoreManifests(cmd.Context(), a.env(set), o)
			return finishRestore(cmd, a, res, res.RestoreCommon, rerr, func(w io.Writer) { printManifestsRestore(w, res) })
		},
	}
	tf.register(cmd)
	f := cmd.Flags()
	f.StringArrayVar(&o.IncludeNamespaces, "include-namespace", nil, "restore only these source namespaces (and cluster-scoped objects); repeatable")
	f.StringArrayVar(&o.ExcludeNamespaces, "exclude-namespace", nil, "leave these source namespaces out; repeatable")
	f.StringArrayVar(&o.IncludeResources, "include-resource", nil, "restore only these resources (deployments, or deployments.apps); repeatable")
	f.StringArrayVar(&o.ExcludeResources, "exclude-resource", nil, "leave these resources out; repeatable")
	f.StringVar(&existing, "existing", manifests.ExistingSkip, "what to do with an object that already exists: skip or update")
	return cmd
}

// printManifestsRestore prints the target, the per-kind table and the
// objects that failed.
func printManifestsRestore(w io.Writer, res job.RestoreManifestsResult) {
	printRestoreHead(w, res.RestoreCommon, dryRunVerb, "", fmt.Sprintf("%s (kube-system UID %s)", res.Server, res.KubeSystemUID))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tCREATED\tUPDATED\tSKIPPED\tFAILED")
	for _, k := range res.Restore.Kinds {
		kind := k.Kind
		if k.Group != "" {
			kind += "." + k.Group
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", kind, k.Outcomes[manifests.OutcomeCreated], k.Outcomes[manifests.OutcomeUpdated], k.Outcomes[manifests.OutcomeSkipped], k.Outcomes[manifests.OutcomeFailed])
	}
	c := res.Restore.Counts
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\n", c[manifests.OutcomeCreated], c[manifests.OutcomeUpdated], c[manifests.OutcomeSkipped], c[manifests.OutcomeFailed])
	tw.Flush()
	for _, o := range res.Restore.Objects {
		if o.Outcome == manifests.OutcomeFailed {
			fmt.Fprintf(w, "  FAILED %s: %s\n", o.Path, o.Reason)
		}
	}
	printRestoreTail(w, res.RestoreCommon, "Nothing was persisted.", "manifests", res.KubeSystemUID)
}

// dryRunVerb heads a restore that was a server-side dry run.
const dryRunVerb = "Would restore (server-side dry run, nothing persisted)"

// restoreTargetFlags are the flags every restore into a cluster shares:
// which backup, how it is checked, the target, and --apply.
type restoreTargetFlags struct {
	sel                  job.RestoreSelection
	target               kube.Options
	keyFiles, nsMapFlags []string
	nsMap                map[string]string
	before, signingKey   string
	apply                bool
	confirm              string
	signer               *evidence.Signer
}

func (tf *restoreTargetFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&tf.sel.Plan, "plan", "", "the BackupPlan whose backups --latest or --before select from")
	f.BoolVar(&tf.sel.Latest, "latest", false, "restore the plan's newest complete backup")
	f.StringVar(&tf.before, "before", "", "restore the plan's newest complete backup whose point in time is before this RFC 3339 time")
	f.StringVar(&tf.sel.Store, "store", "", "the Store holding the backup (default: its plan's)")
	f.StringVar(&tf.sel.KeyProvider, "key-provider", "", "unwrap with this KeyProvider alone (default: any of its plan's)")
	f.StringArrayVar(&tf.keyFiles, "key", nil, "public key file of the evidence signer: compare the manifest with its signed record; repeatable")
	f.BoolVar(&tf.sel.AllowPartial, "allow-partial", false, "restore a backup whose status is partial")
	f.StringVar(&tf.target.Kubeconfig, "kubeconfig", "", "kubeconfig of the target cluster (default: $KUBECONFIG, else ~/.kube/config)")
	f.StringVar(&tf.target.Context, "context", "", "kubeconfig context of the target cluster")
	f.StringArrayVar(&tf.nsMapFlags, "namespace-map", nil, "restore namespace FROM as TO, FROM=TO; repeatable")
	f.BoolVar(&tf.apply, "apply", false, "write (default: a server-side dry run that persists nothing)")
	f.StringVar(&tf.confirm, "confirm", "", "with --apply: the target's kube-system namespace UID, as the dry run prints it")
	f.StringVar(&tf.signingKey, "signing-key", "", signingKeyHelp)
}

// parse checks the shared flags and arguments and loads the signer when
// --apply writes.
func (tf *restoreTargetFlags) parse(cmd *cobra.Command, a *app, set *config.Set, name string, argv []string) error {
	var err error
	if tf.before != "" {
		if tf.sel.Before, err = time.Parse(time.RFC3339, tf.before); err != nil {
			return usageError{fmt.Errorf("%s: --before %q: want an RFC 3339 time", name, tf.before)}
		}
	}
	switch {
	case len(argv) == 1 && (tf.sel.Latest || tf.before != ""):
		return usageError{fmt.Errorf("%s: name the backup ID, or --plan P with --latest or --before, not both", name)}
	case len(argv) == 1:
		tf.sel.Backup = argv[0]
	case tf.sel.Plan == "" || tf.sel.Latest == (tf.before != ""):
		return usageError{fmt.Errorf("%s: name the backup ID, or --plan P with one of --latest and --before T", name)}
	}
	tf.nsMap = map[string]string{}
	for _, m := range tf.nsMapFlags {
		from, to, ok := strings.Cut(m, "=")
		if !ok || from == "" || to == "" {
			return usageError{fmt.Errorf("%s: --namespace-map %q: want FROM=TO", name, m)}
		}
		tf.nsMap[from] = to
	}
	if tf.sel.Trusted, err = readTrustedKeys(tf.keyFiles); err != nil {
		return err
	}
	if tf.apply {
		if tf.signer, err = a.env(set).Signer(cmd.Context(), tf.signingKey, true); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// finishRestore shows a restore's result: rendered as JSON or YAML, or
// printed as tables by print. It returns the restore's own error, after
// showing what was done when there is something to show.
func finishRestore(cmd *cobra.Command, a *app, res any, c job.RestoreCommon, rerr error, print func(io.Writer)) error {
	if rerr != nil && c.Backup == "" {
		return rerr
	}
	if a.output != "table" {
		if err := a.render(cmd.OutOrStdout(), res, table{}); err != nil {
			return err
		}
		return rerr
	}
	print(cmd.OutOrStdout())
	return rerr
}

// printRestoreHead prints a restore's first lines: what, into where, the
// signed record, the backups passed over and the stages.
func printRestoreHead(w io.Writer, c job.RestoreCommon, dryRun, what, target string) {
	verb := dryRun
	if c.Applied {
		verb = "Restored"
	}
	fmt.Fprintf(w, "%s: %sbackup %s into %s; signed evidence record %s\n", verb, what, c.Backup, target, recordText(c.Record))
	for _, p := range c.PassedOver {
		fmt.Fprintf(w, "  passed over: %s\n", p)
	}
	for _, s := range c.Stages {
		fmt.Fprintf(w, "  stage %-12s %6d ms  %s\n", s.Name, s.DurationMs, s.Detail)
	}
	fmt.Fprintln(w)
}

// printRestoreTail prints where the restore record is, or how to apply.
func printRestoreTail(w io.Writer, c job.RestoreCommon, nothing, command, confirm string) {
	switch {
	case c.Evidence != "":
		fmt.Fprintf(w, "\nRestore record: %s\n", c.Evidence)
	case !c.Applied:
		fmt.Fprintf(w, "\n%s Apply with: lifeboat restore %s %s ... --apply --confirm %s\n", nothing, command, c.Backup, confirm)
	}
}

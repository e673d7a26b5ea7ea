package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/job"
)

func newRestoreVolumesCommand(a *app) *cobra.Command {
	var (
		o  job.RestoreVolumesOptions
		tf restoreTargetFlags
	)
	cmd := &cobra.Command{
		Use:   "volumes [ID]",
		Short: "Restore a backup's volume snapshots into new claims: a server-side dry run, or --apply",
		Long: `volumes restores the CSI volume snapshots a backup recorded into new
PersistentVolumeClaims of the cluster --kubeconfig/--context reaches, the
way that works across clusters: for each claim a pre-provisioned
VolumeSnapshotContent (deletionPolicy Retain, the recorded CSI driver and
snapshot handle), a VolumeSnapshot bound to it in the (mapped) namespace,
waited on until the snapshot controller reports it ready, then the claim
with that snapshot as its dataSource. When the backup also holds a
manifests export, each claim keeps its backed-up access modes, storage
class and size; otherwise it is ReadWriteOnce, of the snapshot's restore
size, in the default storage class.

A claim that already exists is never touched; objects of the same name
that another restore made are left alone (the claim fails, naming them).
The CSI driver then provisions each volume from its snapshot; the table
shows each claim's phase when lifeboat returned.

Without --apply every create is a server-side dry run; --apply needs
--confirm with the target's kube-system namespace UID and appends a signed
restore record. Exit codes as for "restore manifests".`,
		Example: `  lifeboat --config /etc/lifeboat restore volumes control-plane-20261125T020000Z-7f3a \
      --kubeconfig ~/.kube/dr-cluster --namespace-map ehr=ehr-dr --key signer.pub
  lifeboat --config /etc/lifeboat restore volumes control-plane-20261125T020000Z-7f3a \
      --kubeconfig ~/.kube/dr-cluster --namespace-map ehr=ehr-dr --key signer.pub --apply --confirm 6f1c0e4e-...`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			set, err := loadConfigSet(a, "restore volumes")
			if err != nil {
				return err
			}
			if err := tf.parse(cmd, a, set, "restore volumes", argv); err != nil {
				return err
			}
			o.RestoreSelection, o.Target, o.NamespaceMap = tf.sel, tf.target, tf.nsMap
			o.Apply, o.Confirm, o.Signer = tf.apply, tf.confirm, tf.signer
			res, rerr := job.RestoreVolumes(cmd.Context(), a.env(set), o)
			return finishRestore(cmd, a, res, res.RestoreCommon, rerr, func(w io.Writer) { printVolumesRestore(w, res) })
		},
	}
	tf.register(cmd)
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 0, "how long to wait for each restored VolumeSnapshot to be ready (default 5m)")
	return cmd
}

func printVolumesRestore(w io.Writer, res job.RestoreVolumesResult) {
	printRestoreHead(w, res.RestoreCommon, dryRunVerb, "volumes of ", fmt.Sprintf("%s (kube-system UID %s)", res.Server, res.KubeSystemUID))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tCLAIM\tOUTCOME\tPHASE\tSNAPSHOT\tREASON")
	for _, c := range res.Claims {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Namespace, c.Claim, c.Outcome, c.Phase, c.Snapshot, c.Reason)
	}
	tw.Flush()
	printRestoreTail(w, res.RestoreCommon, "Nothing was persisted.", "volumes", res.KubeSystemUID)
}

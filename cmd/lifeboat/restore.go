package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/job"
)

func newRestoreCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a backup for a lost control plane: plan first, then apply",
		Long: `restore turns a backup back into a running control plane. "restore plan"
selects the backup, checks its manifest against the signed evidence record
(--key), unwraps the data key and verifies every artifact, and prints what
would be written and the order to follow; it writes nothing. "restore
apply" does the same, then writes one etcd data directory per member and
the backed-up encryption configuration, and appends a signed restore
record with each stage's duration. docs/restore.md is the runbook.

"restore manifests" restores the Kubernetes objects of a backup's
manifests export into a cluster reached by a kubeconfig, "restore volumes"
its claims from their recorded snapshots, and "restore vault" its transit
keys, KV secrets or raft snapshot into a Vault: each a dry run unless
--apply.`,
	}
	cmd.AddCommand(newRestoreSub(a, false), newRestoreSub(a, true), newRestoreManifestsCommand(a), newRestoreVolumesCommand(a), newRestoreVaultCommand(a))
	return cmd
}

func newRestoreSub(a *app, apply bool) *cobra.Command {
	var (
		o          job.RestoreEtcdOptions
		members    []string
		keyFiles   []string
		signingKey string
		before     string
	)
	use, short := "plan [ID]", "Verify a backup and print what restoring it would write; writes nothing"
	if apply {
		use, short = "apply [ID] --confirm ID", "Restore a backup's etcd into new member data directories"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Example: `  lifeboat --config /etc/lifeboat restore plan control-plane-20261125T020000Z-7f3a \
      --member etcd-a=https://10.0.0.1:2380 --member etcd-b=https://10.0.0.2:2380 --member etcd-c=https://10.0.0.3:2380 \
      --out /root/restore --key signer.pub
  lifeboat --config /etc/lifeboat restore plan --plan control-plane --before 2026-11-25T00:00:00Z \
      --member etcd-a=https://10.0.0.1:2380 --out /root/restore --key signer.pub
  lifeboat --config /etc/lifeboat restore apply control-plane-20261125T020000Z-7f3a ... \
      --confirm control-plane-20261125T020000Z-7f3a`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			set, err := loadConfigSet(a, "restore")
			if err != nil {
				return err
			}
			if before != "" {
				t, err := time.Parse(time.RFC3339, before)
				if err != nil {
					return usageError{fmt.Errorf("restore: --before %q: want an RFC 3339 time such as 2026-11-25T00:00:00Z", before)}
				}
				o.Before = t
			}
			switch {
			case len(argv) == 1 && (o.Latest || before != ""):
				return usageError{errors.New("restore: name the backup ID, or --plan P with --latest or --before, not both")}
			case len(argv) == 1:
				o.Backup = argv[0]
			case o.Plan == "" || o.Latest == (before != ""):
				return usageError{errors.New("restore: name the backup ID, or --plan P with one of --latest and --before T")}
			}
			for _, m := range members {
				name, peer, ok := strings.Cut(m, "=")
				if !ok {
					return usageError{fmt.Errorf("restore: --member %q: want NAME=PEER_URL", m)}
				}
				o.Members = append(o.Members, job.EtcdMember{Name: name, PeerURL: peer})
			}
			if o.Trusted, err = readTrustedKeys(keyFiles); err != nil {
				return err
			}
			o.Apply = apply
			if apply {
				if o.Signer, err = a.env(set).Signer(cmd.Context(), signingKey, true); err != nil {
					return fmt.Errorf("restore: %w", err)
				}
			}
			res, err := job.RestoreEtcd(cmd.Context(), a.env(set), o)
			if err != nil {
				return err
			}
			if a.output != "table" {
				return a.render(cmd.OutOrStdout(), res, table{})
			}
			w := cmd.OutOrStdout()
			verb := "Would restore"
			if res.Applied {
				verb = "Restored"
			}
			fmt.Fprintf(w, "%s backup %s (%s): etcd revision %d of cluster %s, taken %s; signed evidence record %s\n",
				verb, res.Backup, res.Status, res.Revision, res.ClusterID, res.PointInTime.UTC().Format(time.RFC3339), recordText(res.Record))
			for _, m := range res.Members {
				fmt.Fprintf(w, "  member %s (%s): %s\n", m.Name, m.PeerURL, m.DataDir)
			}
			if res.Encryption != "" {
				fmt.Fprintf(w, "  encryption configuration: %s (mode 0600)\n", res.Encryption)
			}
			for _, p := range res.PassedOver {
				fmt.Fprintf(w, "  passed over: %s\n", p)
			}
			for _, k := range res.KeyObjects {
				status := "unwraps"
				if !k.Unwraps {
					status = "does not unwrap: " + k.Problem
				}
				fmt.Fprintf(w, "  key object %s: %s\n", k.KEK, status)
			}
			for _, s := range res.Stages {
				mem := ""
				if s.PeakRSSBytes > 0 {
					mem = " (peak RSS " + byteSize(s.PeakRSSBytes)
					if s.MemoryFileBytes > 0 {
						mem += ", and " + byteSize(s.MemoryFileBytes) + " in the memory file"
					}
					mem += ")"
				}
				fmt.Fprintf(w, "  stage %-20s %6d ms  %s%s\n", s.Name, s.DurationMs, s.Detail, mem)
			}
			fmt.Fprintln(w, "\nThen:")
			for i, s := range res.Runbook {
				fmt.Fprintf(w, "  %d. %s\n", i+1, s)
			}
			if res.Evidence != "" {
				fmt.Fprintf(w, "\nRestore record: %s\n", res.Evidence)
			} else {
				fmt.Fprintf(w, "\nNothing was written. Apply with: lifeboat restore apply %s ... --confirm %s\n", res.Backup, res.Backup)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Plan, "plan", "", "the BackupPlan whose backups --latest or --before select from")
	f.BoolVar(&o.Latest, "latest", false, "restore the plan's newest complete backup")
	f.StringVar(&before, "before", "", "restore the plan's newest complete backup whose point in time is before this RFC 3339 time (with --plan); with --key, backups whose manifest does not match their signed record are passed over")
	f.StringArrayVar(&members, "member", nil, "a member of the restored etcd cluster, NAME=PEER_URL; repeatable")
	f.StringVar(&o.Out, "out", "", "directory for the data directories and the encryption configuration (absent or empty)")
	f.StringVar(&o.Store, "store", "", "the Store holding the backup (default: its plan's)")
	f.StringVar(&o.KeyProvider, "key-provider", "", "the KeyProvider that unwraps the data key (default: its plan's)")
	f.StringArrayVar(&keyFiles, "key", nil, "public key file of the evidence signer: compare the manifest with its signed record; repeatable")
	f.BoolVar(&o.AllowPartial, "allow-partial", false, "restore a backup whose status is partial")
	if apply {
		f.StringVar(&o.Confirm, "confirm", "", "the backup ID, repeated: nothing is written without it")
		f.StringVar(&signingKey, "signing-key", "", signingKeyHelp)
	}
	return cmd
}

package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/job"
)

func newBackupReplicateCommand(a *app) *cobra.Command {
	var (
		signingKey string
		to         []string
		keyFiles   []string
	)
	cmd := &cobra.Command{
		Use:   "replicate ID",
		Short: "Copy a committed backup to its plan's replica stores (catch up)",
		Long: `replicate copies backup ID, already encrypted, to the replica stores of its
plan (spec.replicas; --to names some of them), with each replica's own
Object Lock: every artifact (checked against the manifest's digest), every
key object, the store's evidence log up to its head (each record checked:
signature by a trusted key, seq, chain link), and the manifest last, which
commits the backup on the replica. The primary's manifest must match the
backup's signed evidence record first.

What is already on the replica is read back and skipped when its bytes are
the expected ones, so an interrupted copy resumes; an object there with
other bytes is tampering: it is named, never overwritten, and the command
exits 4. Each replication that copied something or failed appends a
signed 'replica' record to the primary's evidence log (docs/format.md §9).

backup run replicates by itself right after a backup commits, and serve
retries failed copies with backoff; this command is the manual catch-up.

Exit codes: 0 when every replica holds the backup, 4 when a replica holds
other bytes or the backup is not vouched for, 1 when a store cannot be
reached (the copy resumes on the next run).`,
		Example: `  lifeboat --config schedules/ backup replicate control-plane-20261125T020000Z-7f3a
  lifeboat --config schedules/ backup replicate control-plane-20261125T020000Z-7f3a --to dr-us-west-2`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			set, err := loadConfigSet(a, "backup replicate")
			if err != nil {
				return err
			}
			signer, err := a.env(set).Signer(cmd.Context(), signingKey, false)
			if err != nil {
				return fmt.Errorf("backup replicate %s: %w", argv[0], err)
			}
			trusted, err := readTrustedKeys(keyFiles)
			if err != nil {
				return err
			}
			res, rerr := job.Replicate(cmd.Context(), a.env(set), argv[0], to, job.ReplicateOptions{Signer: signer, Trusted: trusted})
			if res == nil && rerr != nil {
				return rerr
			}
			t := table{header: []string{"BACKUP", "REPLICA", "STATE", "COPIED", "SKIPPED", "BYTES", "EVIDENCE COPIED", "RECORD"}}
			for _, r := range res {
				t.rows = append(t.rows, []string{r.Backup, r.Store, r.State, strconv.Itoa(r.Copied), strconv.Itoa(r.Skipped), byteSize(r.Bytes), strconv.Itoa(r.Records), r.Record})
			}
			if err := a.render(cmd.OutOrStdout(), res, t); err != nil {
				return err
			}
			if rerr != nil {
				fmt.Fprintf(a.stderr, "backup %s: replication FAILED:\n", argv[0])
				for _, line := range strings.Split(rerr.Error(), "\n") {
					fmt.Fprintf(a.stderr, "  %s\n", line)
				}
				return reportedError{rerr}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&to, "to", nil, "a replica Store of the backup's plan to copy to; repeatable (default: every replica of the plan)")
	cmd.Flags().StringVar(&signingKey, "signing-key", "", signingKeyHelp+"; its public key vouches for the manifests and records copied")
	cmd.Flags().StringArrayVar(&keyFiles, "key", nil, "public key file of a further trusted evidence signer (an earlier signing key) whose records are copied; repeatable")
	return cmd
}

// replicaText is the REPLICAS cell of `backup list`.
func replicaText(states []job.ReplicaState) string {
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = s.Store + ":" + s.State
	}
	return strings.Join(parts, ",")
}

package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/job"
)

func newRestoreVaultCommand(a *app) *cobra.Command {
	var (
		o                           job.RestoreVaultOptions
		tf                          restoreTargetFlags
		unsealFile, sourceTokenFile string
	)
	cmd := &cobra.Command{
		Use:   "vault [ID]",
		Short: "Restore a backup's Vault transit keys and KV secrets into a Vault: a dry run, or --apply",
		Long: `vault restores what a backup's vault source took into the Vault at
--vault-addr (default $VAULT_ADDR), with the token of --vault-token-file
(default $VAULT_TOKEN):

  transit keys  restored with transit's restore endpoint into the mount
                they came from (--transit-mount to change it), and each
                proven by decrypting its canary to the digest the manifest
                recorded. A key that exists is skipped: --force-transit
                replaces it, losing its versions newer than the backup's.
  KV v2 secrets written back as a new version with check-and-set 0, so a
                secret that exists (or is created meanwhile) is skipped;
                --existing update writes it as a new version.

--raft force-restores the backup's raft snapshot instead: the target's
whole storage is replaced by the source's (it must use integrated
storage), and from then on it is sealed with the source Vault's seal: give
the source's unseal keys (--unseal-key-file) for when it seals, and a token
of the source Vault (--source-token-file), with which each backed-up
transit key's canary is decrypted as the proof the restore worked.

Without --apply nothing is written: the keys and secrets are looked up and
the table shows what would happen. --apply needs --confirm with the target
Vault's cluster ID (the dry run prints it) and appends a signed restore
record. No key material or secret value is ever printed or logged.`,
		Example: `  VAULT_ADDR=https://vault-dr:8200 VAULT_TOKEN=... lifeboat --config /etc/lifeboat restore vault \
      control-plane-20261125T020000Z-7f3a --key signer.pub
  VAULT_ADDR=https://vault-dr:8200 VAULT_TOKEN=... lifeboat --config /etc/lifeboat restore vault \
      control-plane-20261125T020000Z-7f3a --key signer.pub --apply --confirm 0f5c...`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			set, err := loadConfigSet(a, "restore vault")
			if err != nil {
				return err
			}
			if err := tf.parse(cmd, a, set, "restore vault", argv); err != nil {
				return err
			}
			o.RestoreSelection, o.Apply, o.Confirm, o.Signer = tf.sel, tf.apply, tf.confirm, tf.signer
			if o.Address == "" {
				o.Address = os.Getenv("VAULT_ADDR")
			}
			if o.TokenFile == "" {
				o.Token = os.Getenv("VAULT_TOKEN")
			}
			if unsealFile != "" {
				b, err := os.ReadFile(unsealFile)
				if err != nil {
					return fmt.Errorf("restore vault: --unseal-key-file: %w", err)
				}
				o.UnsealKeys = strings.Fields(string(b))
				clear(b)
			}
			if sourceTokenFile != "" {
				b, err := os.ReadFile(sourceTokenFile)
				if err != nil {
					return fmt.Errorf("restore vault: --source-token-file: %w", err)
				}
				o.SourceToken = strings.TrimSpace(string(b))
				clear(b)
			}
			res, rerr := job.RestoreVault(cmd.Context(), a.env(set), o)
			return finishRestore(cmd, a, res, res.RestoreCommon, rerr, func(w io.Writer) { printVaultRestore(w, res) })
		},
	}
	tf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Address, "vault-addr", "", "the target Vault's address (default: $VAULT_ADDR)")
	f.StringVar(&o.TokenFile, "vault-token-file", "", "a file holding the target Vault's token (default: $VAULT_TOKEN)")
	f.StringVar(&o.TransitMount, "transit-mount", "", "the target's transit mount (default: the one the keys came from)")
	f.BoolVar(&o.ForceTransit, "force-transit", false, "replace transit keys that exist in the target (their versions newer than the backup's are lost)")
	f.BoolVar(&o.UpdateKV, "update-kv", false, "write KV secrets that exist in the target as a new version (default: skip them)")
	f.BoolVar(&o.Raft, "raft", false, "force-restore the backup's raft snapshot instead, replacing all of the target's data (the target must use integrated storage)")
	f.StringVar(&unsealFile, "unseal-key-file", "", "with --raft: a file of the source Vault's unseal keys, one per line, for when the target seals after the restore")
	f.StringVar(&sourceTokenFile, "source-token-file", "", "with --raft: a file holding a token of the source Vault, to decrypt the transit keys' canaries after the restore")
	for _, n := range []string{"kubeconfig", "context", "namespace-map"} {
		f.MarkHidden(n)
	}
	return cmd
}

func printVaultRestore(w io.Writer, res job.RestoreVaultResult) {
	printRestoreHead(w, res.RestoreCommon, "Would restore (nothing written)", "Vault data of ", fmt.Sprintf("%s (cluster ID %s)", res.Address, res.ClusterID))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tOUTCOME\tDETAIL")
	for _, k := range res.Transit {
		detail := k.Reason
		if k.Version > 0 {
			detail = fmt.Sprintf("latest version %d, canary decrypts", k.Version)
		}
		fmt.Fprintf(tw, "transit key\t%s\t%s\t%s\n", k.Name, k.Outcome, detail)
	}
	for _, s := range res.KV {
		fmt.Fprintf(tw, "kv secret\t%s/%s\t%s\t%s\n", s.Mount, s.Path, s.Outcome, s.Reason)
	}
	tw.Flush()
	printRestoreTail(w, res.RestoreCommon, "Nothing was written.", "vault", res.ClusterID)
}

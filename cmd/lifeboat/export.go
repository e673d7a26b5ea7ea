package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lifeboat-dr/lifeboat/internal/job"
)

func newBackupExportCommand(a *app) *cobra.Command {
	var (
		o        job.ExportOptions
		keyFiles []string
	)
	cmd := &cobra.Command{
		Use:   "export ID ARTIFACT --out FILE",
		Short: "Decrypt one artifact of a backup to a file, after verifying it",
		Long: `export decrypts one artifact of backup ID (etcd-snapshot.db,
encryption-config.yaml, manifests.tar, ...) for the tools an SRE already
knows: etcdutl snapshot status and restore, tar. Before any plaintext is
written, the manifest is compared with the backup's signed evidence record
(with --key) and its MAC is checked under the data key; every segment's
AEAD tag is checked as it is decrypted, and the plaintext's size and
SHA-256 at the end. The file is written under a temporary name (mode 0600)
and appears at FILE only once all of that holds; an existing FILE is never
overwritten.

--out - writes to standard output, which must not be a terminal: then
bytes flow before the final digest is known, and a failed export (exit
code 4) means the output must be discarded.

The plaintext is the cluster's data (PHI): keep it on an encrypted disk and
remove it when the restore is done.`,
		Example: `  lifeboat --config /etc/lifeboat backup export control-plane-20261125T020000Z-7f3a etcd-snapshot.db \
      --out /root/restore/etcd-snapshot.db --key signer.pub
  etcdutl snapshot status /root/restore/etcd-snapshot.db
  lifeboat --config /etc/lifeboat backup export control-plane-20261125T020000Z-7f3a manifests.tar --out - | tar -t`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			set, err := loadConfigSet(a, "backup export")
			if err != nil {
				return err
			}
			if o.Out == "" {
				return usageError{errors.New("backup export: name the file with --out (or --out - for standard output)")}
			}
			if o.Out == "-" {
				if f, ok := cmd.OutOrStdout().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return usageError{errors.New("backup export: standard output is a terminal; the artifact is binary and holds the cluster's data: use --out FILE or a pipe")}
				}
				o.Stdout = cmd.OutOrStdout()
			}
			if o.Trusted, err = readTrustedKeys(keyFiles); err != nil {
				return err
			}
			res, err := job.Export(cmd.Context(), a.env(set), argv[0], argv[1], o)
			if err != nil {
				return err
			}
			if o.Out == "-" {
				a.logger.Info("artifact exported", "backup", res.Backup, "artifact", res.Artifact, "bytes", res.PlaintextSize, "sha256", res.PlaintextSHA256)
				return nil
			}
			if a.output != "table" {
				return a.render(cmd.OutOrStdout(), res, table{})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s of backup %s written to %s: %s, SHA-256 %s (verified); manifest MAC ok; signed evidence record %s\n",
				res.Artifact, res.Backup, res.Out, byteSize(res.PlaintextSize), res.PlaintextSHA256, recordText(res.Record))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Out, "out", "", "the file to write (it must not exist), or - for standard output (not a terminal)")
	f.StringVar(&o.Store, "store", "", "the Store holding the backup (default: its plan's store)")
	f.StringVar(&o.KeyProvider, "key-provider", "", "the KeyProvider that unwraps its data key (default: its plan's)")
	f.StringArrayVar(&keyFiles, "key", nil, "public key file of the evidence signer: compare the manifest with the backup's signed record first; repeatable")
	return cmd
}

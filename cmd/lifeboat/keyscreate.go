package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

type keysCreateResult struct {
	KeyProvider string `json:"keyProvider"`
	Type        string `json:"type"`
	Key         string `json:"key"`
	Primary     string `json:"primary"`
}

func newKeysCreateCommand(a *app) *cobra.Command {
	var localKeyID string
	cmd := &cobra.Command{
		Use:   "create KEY_PROVIDER",
		Short: "Create the key-encryption key a KeyProvider names, where lifeboat can",
		Long: `create creates the KEK of the named KeyProvider and prints its first version:

  local    a new keyring file at spec.keyring, as ` + "`keys init`" + ` (key ID from --key)
  awskms   with spec.alias: a symmetric KMS key tagged as version 1 of the
           alias, and the alias pointing at it (needs kms:CreateKey,
           kms:CreateAlias, kms:TagResource). With spec.keyId (managed
           strategy) lifeboat creates nothing: create the key in KMS.
  vault    a derived aes256-gcm96 transit key spec.transitKey under
           spec.mount (default transit), which must be mounted already
           (needs read, create and update on <mount>/keys/<key>).

It refuses, creating nothing, when the key already exists (exit code 1):
a second create must never swap the key backups are wrapped under.`,
		Example: `  lifeboat --config lifeboat.yaml keys create local
  lifeboat --config lifeboat.yaml keys create kms          # spec: {type: awskms, alias: alias/lifeboat}
  VAULT_TOKEN=... lifeboat --config lifeboat.yaml keys create vault-transit -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ctx := cmd.Context()
			set, err := loadConfigSet(a, "keys create")
			if err != nil {
				return err
			}
			kp, ok := set.KeyProvider(argv[0])
			if !ok {
				return usageError{fmt.Errorf("keys create: no KeyProvider named %q in %v", argv[0], a.configPaths)}
			}
			res := keysCreateResult{KeyProvider: kp.Metadata.Name, Type: string(kp.Spec.Type)}
			v, err := a.env(set).CreateKey(ctx, kp, localKeyID)
			if err != nil {
				return fmt.Errorf("keys create %s: %w", kp.Metadata.Name, err)
			}
			res.Key, res.Primary = v.Ref.Key, v.Ref.Version
			a.logger.Info("key-encryption key created", "keyProvider", kp.Metadata.Name, "key", v.Ref.Key, "version", v.Ref.Version)
			return a.render(cmd.OutOrStdout(), res, table{
				header: []string{"KEY PROVIDER", "TYPE", "KEY", "PRIMARY VERSION"},
				rows:   [][]string{{res.KeyProvider, res.Type, res.Key, res.Primary}},
			})
		},
	}
	cmd.Flags().StringVar(&localKeyID, "key", "lifeboat", "key ID of a local keyring's KEK: 1 to 128 bytes of [A-Za-z0-9._-] (local only)")
	return cmd
}

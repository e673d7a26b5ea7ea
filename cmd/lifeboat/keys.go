package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
)

func newKeysCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the key-encryption keys that protect backups",
	}
	cmd.AddCommand(newKeysInitCommand(a), newKeysCreateCommand(a), newKeysRotateCommand(a), newKeysStatusCommand(a))
	return cmd
}

type keysInitResult struct {
	Keyring string `json:"keyring"`
	Key     string `json:"key"`
	Primary string `json:"primary"`
}

func newKeysInitCommand(a *app) *cobra.Command {
	var path, keyID string
	cmd := &cobra.Command{
		Use:   "init --keyring PATH [--key ID]",
		Short: "Create a local keyring holding version 1 of a new key-encryption key",
		Long: `init creates a local keyring file (docs/format.md §4), mode 0600, holding
version 1 of a new random 256-bit key-encryption key. It never replaces an
existing file. Point a KeyProvider of type local at it:

  kind: KeyProvider
  spec: {type: local, keyring: PATH}

The keyring holds key material: keep it private to the lifeboat user, mount
it from a Secret in a cluster, and back it up separately from the backups
it protects.`,
		Example: `  lifeboat keys init --keyring /var/lib/lifeboat/keyring.json
  lifeboat keys init --keyring ./keyring.json --key clinic-kek -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageError{errors.New("keys init: --keyring is required")}
			}
			k, err := local.Create(cmd.Context(), local.Options{Path: path}, keyID)
			if err != nil {
				return fmt.Errorf("keys init: %w", err)
			}
			vs, err := k.Versions(cmd.Context())
			if err != nil {
				return fmt.Errorf("keys init: %w", err)
			}
			res := keysInitResult{Keyring: path, Key: keyID}
			for _, v := range vs {
				if v.Primary {
					res.Primary = v.Ref.Version
				}
			}
			a.logger.Info("keyring created", "keyring", path, "key", keyID, "version", res.Primary)
			return a.render(cmd.OutOrStdout(), res, table{header: []string{"KEYRING", "KEY", "PRIMARY VERSION"}, rows: [][]string{{res.Keyring, res.Key, res.Primary}}})
		},
	}
	cmd.Flags().StringVar(&path, "keyring", "", "path of the keyring file to create (required)")
	cmd.Flags().StringVar(&keyID, "key", "lifeboat", "key ID: 1 to 128 bytes of [A-Za-z0-9._-]")
	return cmd
}

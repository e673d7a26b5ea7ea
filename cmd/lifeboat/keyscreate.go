package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/awskms"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/keys/vault"
)

// errKEKExists is wrapped by `keys create` when the KEK is already there.
var errKEKExists = errors.New("the key-encryption key already exists; nothing was created")

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
			var v keys.Version
			switch kp.Spec.Type {
			case config.KeyProviderLocal:
				if _, err := os.Stat(kp.Spec.Keyring); err == nil {
					return fmt.Errorf("keys create %s: keyring %s: %w", kp.Metadata.Name, kp.Spec.Keyring, errKEKExists)
				}
				k, err := local.Create(ctx, local.Options{Path: kp.Spec.Keyring}, localKeyID)
				if err != nil {
					return fmt.Errorf("keys create %s: %w", kp.Metadata.Name, err)
				}
				if v, err = primaryVersion(k.Versions(ctx)); err != nil {
					return fmt.Errorf("keys create %s: %w", kp.Metadata.Name, err)
				}
			case config.KeyProviderAWSKMS:
				p, err := openKeyProvider(ctx, kp)
				if err != nil {
					return fmt.Errorf("keys create %s: %w", kp.Metadata.Name, err)
				}
				v, err = p.(*awskms.Provider).Create(ctx)
				if errors.Is(err, awskms.ErrKeyExists) {
					return fmt.Errorf("keys create %s: %w: %w", kp.Metadata.Name, err, errKEKExists)
				}
				if err != nil {
					return fmt.Errorf("keys create %s: %w", kp.Metadata.Name, err)
				}
			case config.KeyProviderVault:
				opts, err := vaultOptions(kp)
				if err != nil {
					return fmt.Errorf("keys create %s: %w", kp.Metadata.Name, err)
				}
				opts.Logger = a.logger
				p, err := vault.CreateKey(ctx, opts, vault.KeySpec{})
				if errors.Is(err, vault.ErrKeyExists) {
					return fmt.Errorf("keys create %s: %w: %w", kp.Metadata.Name, err, errKEKExists)
				}
				if err != nil {
					return fmt.Errorf("keys create %s: %w", kp.Metadata.Name, err)
				}
				if v, err = primaryVersion(p.Versions(ctx)); err != nil {
					return fmt.Errorf("keys create %s: %w", kp.Metadata.Name, err)
				}
			default:
				return fmt.Errorf("keys create %s: unknown key provider type %q", kp.Metadata.Name, kp.Spec.Type)
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

// vaultOptions are the vault.Options a KeyProvider of type vault
// describes: the address from spec.address or VAULT_ADDR, the token from
// spec.tokenFile or VAULT_TOKEN. The command line is where the environment
// is read; the provider itself never looks at it.
func vaultOptions(kp *config.KeyProvider) (vault.Options, error) {
	opts := vault.Options{Address: kp.Spec.Address, Mount: kp.Spec.Mount, Key: kp.Spec.TransitKey, TokenFile: kp.Spec.TokenFile}
	if opts.Address == "" {
		opts.Address = os.Getenv("VAULT_ADDR")
		if opts.Address == "" {
			return opts, errors.New("no Vault address: set spec.address or VAULT_ADDR")
		}
	}
	if opts.TokenFile == "" {
		opts.Token = os.Getenv("VAULT_TOKEN")
		if opts.Token == "" {
			return opts, errors.New("no Vault token: set spec.tokenFile or VAULT_TOKEN")
		}
	}
	return opts, nil
}

func primaryVersion(vs []keys.Version, err error) (keys.Version, error) {
	if err != nil {
		return keys.Version{}, err
	}
	for _, v := range vs {
		if v.Primary {
			return v, nil
		}
	}
	return keys.Version{}, errors.New("the provider reports no primary version")
}

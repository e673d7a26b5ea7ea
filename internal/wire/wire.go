package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/awskms"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	vaultkeys "github.com/lifeboat-dr/lifeboat/internal/keys/vault"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/kubeconfig"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	s3store "github.com/lifeboat-dr/lifeboat/internal/store/s3"
)

// Env is what wiring needs besides the configuration: a logger, the
// environment (VAULT_ADDR, VAULT_TOKEN, LIFEBOAT_KUBE_APISERVER) and the
// path of the running binary (kube-apiserver is looked for beside it).
type Env struct {
	// Set is the loaded configuration.
	Set *config.Set
	// Logger receives log lines; nil discards them.
	Logger *slog.Logger
	// Getenv reads the environment; nil reads nothing.
	Getenv func(string) string
	// Executable is the path of the lifeboat binary; empty: unknown.
	Executable string
}

func (e *Env) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

func (e *Env) getenv(k string) string {
	if e.Getenv == nil {
		return ""
	}
	return e.Getenv(k)
}

// OpenStore opens the store a Store object describes, for reading only or
// for writing.
func (e *Env) OpenStore(ctx context.Context, cs *config.Store, readOnly bool) (store.Store, error) {
	switch cs.Spec.Type {
	case config.StoreFS:
		st, err := fs.Open(ctx, fs.Options{Root: cs.Spec.Path, ReadOnly: readOnly, Logger: e.logger()})
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", cs.Metadata.Name, err)
		}
		return st, nil
	case config.StoreS3:
		mode := ""
		if cs.Spec.ObjectLock != nil {
			mode = string(cs.Spec.ObjectLock.Mode)
		}
		st, err := s3store.New(ctx, s3store.Options{
			Bucket: cs.Spec.Bucket, Prefix: cs.Spec.Prefix, Endpoint: cs.Spec.Endpoint, Region: cs.Spec.Region,
			ForcePathStyle: cs.Spec.ForcePathStyle, LockMode: mode, Logger: e.logger(),
			Unlocked: cs.Spec.AllowUnlocked && cs.Spec.ObjectLock == nil,
		})
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", cs.Metadata.Name, err)
		}
		return st, nil
	default:
		return nil, fmt.Errorf("store %s: unknown store type %q", cs.Metadata.Name, cs.Spec.Type)
	}
}

// StoreNamed opens the Store object called name.
func (e *Env) StoreNamed(ctx context.Context, name string, readOnly bool) (store.Store, *config.Store, error) {
	cs, ok := e.Set.Store(name)
	if !ok {
		return nil, nil, fmt.Errorf("no Store named %q", name)
	}
	st, err := e.OpenStore(ctx, cs, readOnly)
	return st, cs, err
}

// OpenKeys opens the KEK provider a KeyProvider object describes.
func (e *Env) OpenKeys(ctx context.Context, kp *config.KeyProvider) (keys.Provider, error) {
	switch kp.Spec.Type {
	case config.KeyProviderLocal:
		k, err := local.Open(ctx, local.Options{Path: kp.Spec.Keyring})
		if err != nil {
			return nil, fmt.Errorf("key provider %s: %w (create a keyring with `lifeboat keys init --keyring %s`)", kp.Metadata.Name, err, kp.Spec.Keyring)
		}
		return k, nil
	case config.KeyProviderAWSKMS:
		strategy := awskms.Strategy("")
		if kp.Spec.Rotation != nil {
			strategy = awskms.Strategy(kp.Spec.Rotation.Strategy)
		}
		// Credentials come from the SDK's default chain (environment,
		// shared files, instance or pod identity).
		p, err := awskms.New(ctx, awskms.Options{
			KeyID: kp.Spec.KeyID, Alias: kp.Spec.Alias, Strategy: strategy,
			Region: kp.Spec.Region, Endpoint: kp.Spec.Endpoint,
		})
		if err != nil {
			return nil, fmt.Errorf("key provider %s: %w", kp.Metadata.Name, err)
		}
		return p, nil
	case config.KeyProviderVault:
		opts, err := e.VaultOptions(kp)
		if err != nil {
			return nil, fmt.Errorf("key provider %s: %w", kp.Metadata.Name, err)
		}
		p, err := vaultkeys.New(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("key provider %s: %w", kp.Metadata.Name, err)
		}
		return p, nil
	default:
		return nil, fmt.Errorf("key provider %s: unknown type %q", kp.Metadata.Name, kp.Spec.Type)
	}
}

// VaultOptions are the options a KeyProvider of type vault describes: the
// address from spec.address or VAULT_ADDR, the token from spec.tokenFile or
// VAULT_TOKEN.
func (e *Env) VaultOptions(kp *config.KeyProvider) (vaultkeys.Options, error) {
	opts := vaultkeys.Options{Address: kp.Spec.Address, Mount: kp.Spec.Mount, Key: kp.Spec.TransitKey, TokenFile: kp.Spec.TokenFile, Logger: e.Logger}
	if opts.Address == "" {
		opts.Address = e.getenv("VAULT_ADDR")
		if opts.Address == "" {
			return opts, errors.New("no Vault address: set spec.address or VAULT_ADDR")
		}
	}
	if opts.TokenFile == "" {
		opts.Token = e.getenv("VAULT_TOKEN")
		if opts.Token == "" {
			return opts, errors.New("no Vault token: set spec.tokenFile or VAULT_TOKEN")
		}
	}
	return opts, nil
}

// CreateKey creates the KEK a KeyProvider names and returns its primary
// version: a new keyring file (local, key ID localKeyID), a KMS key and
// alias (awskms, through keys.Creator), or a derived transit key (vault).
// It fails with keys.ErrKeyExists, creating nothing, when the key is
// already there.
func (e *Env) CreateKey(ctx context.Context, kp *config.KeyProvider, localKeyID string) (keys.Version, error) {
	name := kp.Metadata.Name
	switch kp.Spec.Type {
	case config.KeyProviderLocal:
		if _, err := os.Stat(kp.Spec.Keyring); err == nil {
			return keys.Version{}, fmt.Errorf("key provider %s: keyring %s: %w", name, kp.Spec.Keyring, keys.ErrKeyExists)
		}
		k, err := local.Create(ctx, local.Options{Path: kp.Spec.Keyring}, localKeyID)
		if err != nil {
			return keys.Version{}, fmt.Errorf("key provider %s: %w", name, err)
		}
		return primaryVersion(k.Versions(ctx))
	case config.KeyProviderVault:
		opts, err := e.VaultOptions(kp)
		if err != nil {
			return keys.Version{}, fmt.Errorf("key provider %s: %w", name, err)
		}
		p, err := vaultkeys.CreateKey(ctx, opts, vaultkeys.KeySpec{})
		if err != nil {
			return keys.Version{}, fmt.Errorf("key provider %s: %w", name, err)
		}
		return primaryVersion(p.Versions(ctx))
	default:
		p, err := e.OpenKeys(ctx, kp)
		if err != nil {
			return keys.Version{}, err
		}
		c, ok := p.(keys.Creator)
		if !ok {
			return keys.Version{}, fmt.Errorf("key provider %s: lifeboat cannot create a %s key; create it with the provider's own tools", name, kp.Spec.Type)
		}
		v, err := c.Create(ctx)
		if err != nil {
			return keys.Version{}, fmt.Errorf("key provider %s: %w", name, err)
		}
		return v, nil
	}
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

// ConfiguredKey is the key a KeyProvider names (alias, key ID,
// mount/transit key or keyring path), for records written before the
// provider reports its own references.
func ConfiguredKey(kp *config.KeyProvider) string {
	switch kp.Spec.Type {
	case config.KeyProviderAWSKMS:
		if kp.Spec.Alias != "" {
			return kp.Spec.Alias
		}
		return kp.Spec.KeyID
	case config.KeyProviderVault:
		mount := strings.Trim(kp.Spec.Mount, "/")
		if mount == "" {
			mount = vaultkeys.DefaultMount
		}
		return mount + "/" + kp.Spec.TransitKey
	}
	return kp.Spec.Keyring
}

// Scratch returns the scratch provider of a Drill's scratch type.
// kubeAPIServer, when set, is the kube-apiserver binary of the embedded
// provider; otherwise $LIFEBOAT_KUBE_APISERVER, else beside lifeboat.
func (e *Env) Scratch(d *config.Drill, kubeAPIServer string) (scratch.Provider, error) {
	switch d.Spec.Scratch.Type {
	case config.ScratchEmbedded, "":
		getenv := e.getenv
		if kubeAPIServer != "" {
			getenv = func(k string) string {
				if k == embedded.EnvKubeAPIServer {
					return kubeAPIServer
				}
				return ""
			}
		}
		bin, err := embedded.LocateKubeAPIServer(getenv, e.Executable)
		if err != nil {
			return nil, fmt.Errorf("drill %s: %w", d.Metadata.Name, err)
		}
		return embedded.Provider{KubeAPIServerBinary: bin, Logger: e.logger()}, nil
	case config.ScratchKubeconfig:
		return kubeconfig.Provider{Kubeconfig: d.Spec.Scratch.Kubeconfig, Context: d.Spec.Scratch.Context, Logger: e.logger()}, nil
	default:
		return nil, fmt.Errorf("drill %s: scratch type %s is not supported by this version of lifeboat yet; use scratch.type: embedded or kubeconfig (kind needs a container runtime and is not built)", d.Metadata.Name, d.Spec.Scratch.Type)
	}
}

// VaultSignerPrefix starts a --signing-key that names a Vault transit key
// (type ed25519) instead of a file: vault:<mount>/<key>, e.g.
// vault:transit/lifeboat-evidence. The address and token come from
// VAULT_ADDR and VAULT_TOKEN (or VAULT_TOKEN_FILE).
const VaultSignerPrefix = "vault:"

// AWSKMSSignerPrefix starts a --signing-key that names an AWS KMS key of
// spec ECC_NIST_P256 and usage SIGN_VERIFY: awskms:<key ID, ARN or
// alias/name>. Region, endpoint and credentials come from the SDK's chain
// (AWS_REGION, AWS_ENDPOINT_URL_KMS, pod identity, ...).
const AWSKMSSignerPrefix = "awskms:"

// Signer returns the evidence signer spec names: a Vault transit key
// (VaultSignerPrefix) or an AWS KMS key (AWSKMSSignerPrefix), whose
// private key never sits on this host, or the
// Ed25519 key file at spec (created 0600 on first use when create is set;
// an empty spec means lifeboat/evidence-signing.pem in the user's config
// directory).
func (e *Env) Signer(ctx context.Context, spec string, create bool) (*evidence.Signer, error) {
	if rest, ok := strings.CutPrefix(spec, VaultSignerPrefix); ok {
		i := strings.LastIndex(rest, "/")
		if i <= 0 || i == len(rest)-1 {
			return nil, fmt.Errorf("evidence signing key %q: want vault:<mount>/<key>", spec)
		}
		opts := vaultkeys.Options{Address: e.getenv("VAULT_ADDR"), Mount: rest[:i], Key: rest[i+1:],
			Token: e.getenv("VAULT_TOKEN"), TokenFile: e.getenv("VAULT_TOKEN_FILE"), Logger: e.logger()}
		if opts.Token != "" && opts.TokenFile != "" {
			opts.TokenFile = ""
		}
		s, err := vaultkeys.NewSigner(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("evidence signing key %s: %w", spec, err)
		}
		return s, nil
	}
	if key, ok := strings.CutPrefix(spec, AWSKMSSignerPrefix); ok {
		s, err := awskms.NewSigner(ctx, awskms.SignerOptions{Key: key, Logger: e.logger()})
		if err != nil {
			return nil, fmt.Errorf("evidence signing key %s: %w", spec, err)
		}
		return s, nil
	}
	if !create {
		if spec == "" {
			return nil, errors.New("evidence signing key: none named")
		}
		return evidence.LoadSigner(spec)
	}
	return LoadSigner(spec)
}

// LoadSigner loads (creating it 0600 on first use) the Ed25519 evidence
// signing key at path; an empty path means lifeboat/evidence-signing.pem
// in the user's config directory.
func LoadSigner(path string) (*evidence.Signer, error) {
	if path == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return nil, fmt.Errorf("evidence signing key: no --signing-key and no user config directory: %w", err)
		}
		dir = filepath.Join(dir, "lifeboat")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("evidence signing key: %w", err)
		}
		path = filepath.Join(dir, "evidence-signing.pem")
	}
	return evidence.LoadOrCreateSigner(path)
}

// StoreCheck is the judgement of a store's immutability against what its
// plans need.
type StoreCheck struct {
	Store       string            `json:"store"`
	Type        string            `json:"type"`
	Status      store.LockStatus  `json:"status"`
	Requirement LockRequirement   `json:"requirement"`
	Verdict     store.LockVerdict `json:"verdict"`
	// Versions are the keys holding versions lifeboat did not write
	// (AuditStore); nil when not audited.
	Versions []store.VersionFinding `json:"versions,omitempty"`
}

// LockRequirement is what the plans writing to a store ask of it.
type LockRequirement struct {
	Mode          string   `json:"mode,omitempty"`
	Retention     string   `json:"retention,omitempty"`
	AllowUnlocked bool     `json:"allowUnlocked"`
	Plans         []string `json:"plans,omitempty"`
}

// CheckStore opens the store, reads its lock status (store.LockChecker)
// and judges it with store.JudgeLock against the Store's objectLock and
// the retention of every plan writing to it.
func (e *Env) CheckStore(ctx context.Context, cs *config.Store) (StoreCheck, error) {
	res := StoreCheck{Store: cs.Metadata.Name, Type: string(cs.Spec.Type)}
	req := store.LockRequirement{AllowUnlocked: cs.Spec.AllowUnlocked}
	if cs.Spec.ObjectLock != nil {
		req.Mode = string(cs.Spec.ObjectLock.Mode)
	}
	for _, p := range e.Set.BackupPlans {
		// A replica (docs/format.md §9) holds the plan's backups too.
		if p.Spec.Store == cs.Metadata.Name || slices.Contains(p.Spec.Replicas, cs.Metadata.Name) {
			res.Requirement.Plans = append(res.Requirement.Plans, p.Metadata.Name)
			req.Retention = max(req.Retention, config.BackupRetention(p, cs))
		}
	}
	if cs.Spec.ObjectLock != nil {
		req.Retention = max(req.Retention, cs.Spec.ObjectLock.Retention.Std())
	}
	res.Requirement.Mode, res.Requirement.AllowUnlocked = req.Mode, req.AllowUnlocked
	if req.Retention > 0 {
		res.Requirement.Retention = config.Duration(req.Retention).String()
	}
	st, err := e.OpenStore(ctx, cs, true)
	if err != nil {
		return res, fmt.Errorf("store check %s: %w", cs.Metadata.Name, err)
	}
	lc, ok := st.(store.LockChecker)
	if !ok {
		return res, fmt.Errorf("store check %s: a %s store cannot report its immutability", cs.Metadata.Name, cs.Spec.Type)
	}
	if res.Status, err = lc.LockStatus(ctx); err != nil {
		return res, fmt.Errorf("store check %s: %w", cs.Metadata.Name, err)
	}
	res.Verdict = store.JudgeLock(res.Status, req)
	return res, nil
}

// AuditStore lists, on a store that keeps object versions (S3), every key
// with a version or delete marker lifeboat did not write, and fails the
// check's verdict naming each: someone else wrote to the store. It lists
// the whole store, so `store check` runs it, not a backup's pre-flight
// (whose refusal would let anyone who can add a version stop backups).
func (e *Env) AuditStore(ctx context.Context, cs *config.Store, res *StoreCheck) error {
	st, err := e.OpenStore(ctx, cs, true)
	if err != nil {
		return fmt.Errorf("store check %s: %w", cs.Metadata.Name, err)
	}
	va, ok := st.(store.VersionAuditor)
	if !ok {
		return nil
	}
	findings, err := va.AuditVersions(ctx, "")
	if err != nil {
		return fmt.Errorf("store check %s: %w", cs.Metadata.Name, err)
	}
	res.Versions = findings
	for _, f := range findings {
		res.Verdict.OK = false
		res.Verdict.Problems = append(res.Verdict.Problems, "tampering: "+f.String())
	}
	if lc, ok := st.(interface {
		AbortsIncompleteUploads(ctx context.Context) (bool, error)
	}); ok {
		switch has, err := lc.AbortsIncompleteUploads(ctx); {
		case err != nil:
			res.Verdict.Problems = append(res.Verdict.Problems, "warning: the bucket's lifecycle rules could not be read ("+err.Error()+"); backups and serve abort uploads a killed backup left open, but a bucket rule (AbortIncompleteMultipartUpload) is the backstop")
		case !has:
			res.Verdict.Problems = append(res.Verdict.Problems, "warning: the bucket has no lifecycle rule aborting incomplete multipart uploads (AbortIncompleteMultipartUpload); backups and serve abort uploads a killed backup left open after 24h, but add the rule as a backstop")
		}
	}
	return nil
}

// StoresOfKeyProvider returns, sorted, the names of the stores written by
// every BackupPlan that uses the key provider.
func StoresOfKeyProvider(set *config.Set, keyProvider string) []string {
	var names []string
	for _, p := range set.BackupPlansUsing(keyProvider) {
		if !slices.Contains(names, p.Spec.Store) {
			names = append(names, p.Spec.Store)
		}
	}
	slices.Sort(names)
	return names
}

package awskms

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

// ProviderType is the provider name recorded in key references.
const ProviderType = "awskms"

// Strategy selects how a key rotates.
type Strategy string

// The rotation strategies (see the package documentation).
const (
	// StrategyAlias: every rotation creates a new KMS key and moves the
	// alias to it; each KMS key is one KEK version.
	StrategyAlias Strategy = "alias"
	// StrategyManaged: one KMS key whose material KMS rotates under the
	// same key ID; the key is the only KEK version lifeboat can name.
	StrategyManaged Strategy = "managed"
)

// Encryption context key and tag keys lifeboat writes.
const (
	// ContextKey is the encryption context entry that carries the wrap's
	// associated data (base64, standard padded encoding). An empty aad is
	// sent as no encryption context at all.
	ContextKey = "lifeboat.dev/context"
	// TagAlias marks a KMS key as a version of the alias in its value.
	TagAlias = "lifeboat.dev/alias"
	// TagCreated is the version's creation time, RFC 3339 with nanoseconds.
	TagCreated = "lifeboat.dev/created"
	// TagSeq orders the versions of one alias: 1, 2, 3, ...
	TagSeq = "lifeboat.dev/seq"
)

const (
	wrapFormat   = 0x01
	tagSize      = sha256.Size
	maxDataKey   = 1024 // KMS Encrypt takes at most 4096 bytes; data keys are 32
	commitPrefix = "lifeboat.dev/awskms-wrap/v1"
)

// Options configure a provider.
type Options struct {
	// KeyID is the KMS key (key ID, key ARN or alias name) for the
	// managed strategy. Exactly one of KeyID and Alias is set.
	KeyID string
	// Alias is the alias ("alias/name") for the alias strategy.
	Alias string
	// Strategy is "alias" or "managed"; empty means alias when Alias is
	// set and managed when KeyID is.
	Strategy Strategy
	// Region is the AWS region; empty means the SDK's default chain.
	Region string
	// Endpoint overrides the KMS endpoint URL (local-kms, VPC endpoints).
	Endpoint string
	// Credentials overrides the SDK's default credential chain when set.
	Credentials aws.CredentialsProvider
	// HTTPClient overrides the SDK's HTTP client when set.
	HTTPClient *http.Client
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives rotation and retirement events; nil discards them.
	// It never receives key material.
	Logger *slog.Logger
}

// kmsAPI is the part of the KMS client the provider calls; *kms.Client
// implements it. It exists so that tests can answer calls local-kms does
// not implement (RotateKeyOnDemand, ListKeyRotations) or fail calls it
// would let through.
type kmsAPI interface {
	CreateAlias(context.Context, *kms.CreateAliasInput, ...func(*kms.Options)) (*kms.CreateAliasOutput, error)
	CreateKey(context.Context, *kms.CreateKeyInput, ...func(*kms.Options)) (*kms.CreateKeyOutput, error)
	Decrypt(context.Context, *kms.DecryptInput, ...func(*kms.Options)) (*kms.DecryptOutput, error)
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	DisableKey(context.Context, *kms.DisableKeyInput, ...func(*kms.Options)) (*kms.DisableKeyOutput, error)
	Encrypt(context.Context, *kms.EncryptInput, ...func(*kms.Options)) (*kms.EncryptOutput, error)
	ListKeyRotations(context.Context, *kms.ListKeyRotationsInput, ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error)
	ListKeys(context.Context, *kms.ListKeysInput, ...func(*kms.Options)) (*kms.ListKeysOutput, error)
	ListResourceTags(context.Context, *kms.ListResourceTagsInput, ...func(*kms.Options)) (*kms.ListResourceTagsOutput, error)
	RotateKeyOnDemand(context.Context, *kms.RotateKeyOnDemandInput, ...func(*kms.Options)) (*kms.RotateKeyOnDemandOutput, error)
	ScheduleKeyDeletion(context.Context, *kms.ScheduleKeyDeletionInput, ...func(*kms.Options)) (*kms.ScheduleKeyDeletionOutput, error)
	TagResource(context.Context, *kms.TagResourceInput, ...func(*kms.Options)) (*kms.TagResourceOutput, error)
	UntagResource(context.Context, *kms.UntagResourceInput, ...func(*kms.Options)) (*kms.UntagResourceOutput, error)
	UpdateAlias(context.Context, *kms.UpdateAliasInput, ...func(*kms.Options)) (*kms.UpdateAliasOutput, error)
}

var _ kmsAPI = (*kms.Client)(nil)

// How long Rotate (managed strategy) waits for an on-demand rotation to
// take effect, and the first and longest pause between polls.
const (
	defaultRotateWait  = 2 * time.Minute
	defaultPollFirst   = time.Second
	defaultPollLongest = 15 * time.Second
)

// Provider is a KEK provider on AWS KMS. It is safe for concurrent use.
type Provider struct {
	client   kmsAPI
	strategy Strategy
	key      string // the alias or key as configured; Ref.Key
	now      func() time.Time
	log      *slog.Logger

	// rotateWait bounds the wait for a managed key's on-demand rotation
	// to show (CurrentKeyMaterialId changing); pollFirst and pollLongest
	// are the first and the longest pause between DescribeKey polls.
	rotateWait, pollFirst, pollLongest time.Duration
}

var _ keys.Provider = (*Provider)(nil)

// New returns a provider. It loads the AWS configuration (region,
// credentials) but makes no KMS call and creates nothing: a provider for an
// alias that does not exist yet fails every operation with
// keys.ErrKeyNotFound until Bootstrap creates it.
func New(ctx context.Context, opts Options) (*Provider, error) {
	p := &Provider{strategy: opts.Strategy, now: opts.Now, log: opts.Logger,
		rotateWait: defaultRotateWait, pollFirst: defaultPollFirst, pollLongest: defaultPollLongest}
	switch {
	case opts.KeyID != "" && opts.Alias != "":
		return nil, errors.New("awskms: set one of KeyID and Alias, not both")
	case opts.Alias != "":
		p.key = opts.Alias
		if p.strategy == "" {
			p.strategy = StrategyAlias
		}
	case opts.KeyID != "":
		p.key = opts.KeyID
		if p.strategy == "" {
			p.strategy = StrategyManaged
		}
	default:
		return nil, errors.New("awskms: set KeyID (managed strategy) or Alias (alias strategy)")
	}
	switch p.strategy {
	case StrategyAlias:
		if opts.Alias == "" {
			return nil, errors.New("awskms: the alias strategy needs Alias (alias/<name>), not KeyID")
		}
		if !strings.HasPrefix(opts.Alias, "alias/") || len(opts.Alias) == len("alias/") || strings.HasPrefix(opts.Alias, "alias/aws/") {
			return nil, fmt.Errorf("awskms: alias %q: want alias/<name>, not in the reserved alias/aws/ namespace", opts.Alias)
		}
	case StrategyManaged:
		if opts.KeyID == "" {
			return nil, errors.New("awskms: the managed strategy needs KeyID")
		}
	default:
		return nil, fmt.Errorf("awskms: unknown strategy %q (want %q or %q)", opts.Strategy, StrategyAlias, StrategyManaged)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c, err := newClient(ctx, opts.Region, opts.Endpoint, opts.Credentials, opts.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("awskms %s: %w", p.key, err)
	}
	p.client = c
	return p, nil
}

// newClient loads the AWS configuration (the SDK's default chain for what
// is not given: AWS_REGION, AWS_ENDPOINT_URL_KMS, credentials from the
// environment, shared files or pod identity) and returns a KMS client.
func newClient(ctx context.Context, region, endpoint string, creds aws.CredentialsProvider, hc *http.Client) (*kms.Client, error) {
	var lo []func(*config.LoadOptions) error
	if region != "" {
		lo = append(lo, config.WithRegion(region))
	}
	if creds != nil {
		lo = append(lo, config.WithCredentialsProvider(creds))
	}
	if hc != nil {
		lo = append(lo, config.WithHTTPClient(hc))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}

// Strategy returns the provider's rotation strategy.
func (p *Provider) Strategy() Strategy { return p.strategy }

// Key returns the alias or key as configured (the Key of every Ref).
func (p *Provider) Key() string { return p.key }

func (p *Provider) ref(version string) keys.Ref {
	return keys.Ref{Provider: ProviderType, Key: p.key, Version: version}
}

// Bootstrap makes the configured key usable and returns its primary
// version. For the alias strategy it creates the first KMS key and the
// alias when the alias does not exist; when the alias exists and targets a
// key lifeboat did not create, it tags that key as the alias's first
// version (adoption). For the managed strategy it creates nothing: it
// checks that the key exists, is enabled and is a symmetric encryption key.
// Bootstrap is idempotent.
//
// It is separate from New so that only the process set up to administer
// keys needs kms:CreateKey and kms:CreateAlias, and so that a misspelt
// alias fails with keys.ErrKeyNotFound instead of silently creating a new
// key that backups would then be wrapped under.
func (p *Provider) Bootstrap(ctx context.Context) (keys.Version, error) {
	if err := ctx.Err(); err != nil {
		return keys.Version{}, fmt.Errorf("awskms: bootstrap %s: %w", p.key, err)
	}
	if p.strategy == StrategyManaged {
		md, err := p.describe(ctx, p.key)
		if err != nil {
			return keys.Version{}, p.opErr("bootstrap", p.key, "", err)
		}
		if md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt {
			return keys.Version{}, fmt.Errorf("awskms: bootstrap %s: key %s is %s/%s, want a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key", p.key, aws.ToString(md.KeyId), md.KeySpec, md.KeyUsage)
		}
		v, err := p.managedVersion(ctx, md)
		if err != nil {
			return keys.Version{}, err
		}
		if v.State != keys.StateEnabled {
			return keys.Version{}, fmt.Errorf("awskms: bootstrap %s: key is %s: %w", v.Ref, md.KeyState, keys.ErrVersionRetired)
		}
		return v, nil
	}
	target, err := p.describe(ctx, p.key)
	if err != nil && !isCode(err, "NotFoundException") {
		return keys.Version{}, p.opErr("bootstrap", p.key, "", err)
	}
	if err == nil {
		if _, err := p.adopt(ctx, target); err != nil {
			return keys.Version{}, err
		}
		return primary(p.Versions(ctx))
	}
	v, err := p.createVersion(ctx, 1, true)
	if err != nil {
		return keys.Version{}, err
	}
	p.log.Info("awskms: bootstrapped alias", "alias", p.key, "version", v.Ref.Version)
	return v, nil
}

// ErrKeyExists: Create found the alias already there.
var ErrKeyExists = keys.ErrKeyExists

// Create creates the configured alias strategy key: a new symmetric KMS
// key, tagged as version 1 of the alias, and the alias pointing at it. It
// fails with ErrKeyExists when the alias exists (Bootstrap adopts an
// existing alias; Create never does), and refuses the managed strategy,
// whose key lifeboat does not create.
func (p *Provider) Create(ctx context.Context) (keys.Version, error) {
	if err := ctx.Err(); err != nil {
		return keys.Version{}, fmt.Errorf("awskms: create %s:%s: %w", ProviderType, p.key, err)
	}
	if p.strategy != StrategyAlias {
		return keys.Version{}, fmt.Errorf("awskms: create %s:%s: the managed strategy uses a KMS key created outside lifeboat; configure an alias (alias/<name>) for lifeboat to create one", ProviderType, p.key)
	}
	md, err := p.describe(ctx, p.key)
	switch {
	case err == nil:
		return keys.Version{}, fmt.Errorf("awskms: create %s:%s: it targets KMS key %s: %w", ProviderType, p.key, aws.ToString(md.KeyId), ErrKeyExists)
	case !isCode(err, "NotFoundException"):
		return keys.Version{}, p.opErr("create", p.key, "", err)
	}
	v, err := p.createVersion(ctx, 1, true)
	if err != nil {
		if strings.Contains(err.Error(), "AlreadyExistsException") { // a concurrent create won the alias
			return keys.Version{}, fmt.Errorf("%w: %w", err, ErrKeyExists)
		}
		return keys.Version{}, err
	}
	p.log.Info("awskms: created alias", "alias", p.key, "version", v.Ref.Version)
	return v, nil
}

func primary(vs []keys.Version, err error) (keys.Version, error) {
	if err != nil {
		return keys.Version{}, err
	}
	for _, v := range vs {
		if v.Primary {
			return v, nil
		}
	}
	return keys.Version{}, errors.New("awskms: no primary version")
}

// Wrap encrypts dataKey under the primary version with KMS Encrypt.
func (p *Provider) Wrap(ctx context.Context, dataKey, aad []byte) (keys.Wrapped, error) {
	if err := ctx.Err(); err != nil {
		return keys.Wrapped{}, fmt.Errorf("awskms: wrap with %s: %w", p.key, err)
	}
	if len(dataKey) == 0 || len(dataKey) > maxDataKey {
		return keys.Wrapped{}, fmt.Errorf("awskms: wrap with %s: data key is %d bytes, want 1 to %d", p.key, len(dataKey), maxDataKey)
	}
	out, err := p.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(p.key),
		Plaintext:         dataKey,
		EncryptionContext: encryptionContext(aad),
	})
	if err != nil {
		// Name the version the alias or key points at, when KMS still
		// says which (a disabled key does; a missing one does not).
		version := ""
		if md, derr := p.describe(context.WithoutCancel(ctx), p.key); derr == nil {
			version = aws.ToString(md.KeyId)
		}
		return keys.Wrapped{}, scrub(p.opErr("wrap with", p.key, version, err), dataKey)
	}
	version := keyIDOf(aws.ToString(out.KeyId))
	if version == "" || len(out.CiphertextBlob) == 0 {
		return keys.Wrapped{}, fmt.Errorf("awskms: wrap with %s: KMS returned no key ID or no ciphertext", p.key)
	}
	blob := out.CiphertextBlob
	ct := make([]byte, 0, 1+len(blob)+tagSize)
	ct = append(ct, wrapFormat)
	ct = append(ct, blob...)
	ct = append(ct, commitment(dataKey, blob)...)
	return keys.Wrapped{KEK: p.ref(version), Ciphertext: ct}, nil
}

// Unwrap decrypts a wrapped key with KMS Decrypt, naming the KMS key of
// the reference's version so that KMS refuses a ciphertext of another key.
func (p *Provider) Unwrap(ctx context.Context, w keys.Wrapped, aad []byte) ([]byte, error) {
	ref := w.KEK
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("awskms: unwrap with %s: %w", ref, err)
	}
	if ref.Provider != ProviderType || ref.Key != p.key {
		return nil, fmt.Errorf("awskms: unwrap with %s: this provider is %s: %w", ref, p.ref(ref.Version), keys.ErrKeyNotFound)
	}
	if ref.Version == "" {
		return nil, fmt.Errorf("awskms: unwrap with %s: no version: %w", ref, keys.ErrVersionNotFound)
	}
	// The reference comes from a key object, which is not authenticated:
	// only decrypt with a key that is provably this provider's, so a
	// planted key object cannot make lifeboat decrypt under a key someone
	// else controls (another account's key named by ARN, say).
	if err := p.checkVersion(ctx, ref); err != nil {
		return nil, err
	}
	if len(w.Ciphertext) < 2+tagSize || w.Ciphertext[0] != wrapFormat {
		return nil, fmt.Errorf("awskms: unwrap with %s: not a lifeboat awskms wrapped key (format %#02x, %d bytes): %w", ref, first(w.Ciphertext), len(w.Ciphertext), keys.ErrUnwrap)
	}
	blob := w.Ciphertext[1 : len(w.Ciphertext)-tagSize]
	tag := w.Ciphertext[len(w.Ciphertext)-tagSize:]
	out, err := p.client.Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:    blob,
		KeyId:             aws.String(ref.Version),
		EncryptionContext: encryptionContext(aad),
	})
	if err != nil {
		return nil, p.unwrapErr(ctx, ref, err)
	}
	dk := out.Plaintext
	if !hmac.Equal(commitment(dk, blob), tag) {
		clear(dk)
		return nil, fmt.Errorf("awskms: unwrap with %s: key commitment does not match the ciphertext: %w", ref, keys.ErrUnwrap)
	}
	if got := keyIDOf(aws.ToString(out.KeyId)); got != "" && got != keyIDOf(ref.Version) {
		clear(dk)
		return nil, fmt.Errorf("awskms: unwrap with %s: KMS decrypted with key %s: %w", ref, got, keys.ErrUnwrap)
	}
	return dk, nil
}

// bareKeyID matches a KMS key ID as docs/format.md §3.1 stores it: a UUID,
// or a multi-Region key's "mrk-" and 32 hex digits. ARNs and aliases are
// refused.
var bareKeyID = regexp.MustCompile(`^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|mrk-[0-9a-fA-F]{32})$`)

// checkVersion accepts only versions that belong to this provider: a bare
// key ID (so Decrypt stays in the caller's account and region) that is the
// configured key (managed) or a key tagged with this alias (alias).
func (p *Provider) checkVersion(ctx context.Context, ref keys.Ref) error {
	if !bareKeyID.MatchString(ref.Version) {
		return fmt.Errorf("awskms: unwrap with %s: version is not a bare KMS key ID: %w", ref, keys.ErrVersionNotFound)
	}
	switch p.strategy {
	case StrategyManaged:
		if ref.Version != keyIDOf(p.key) {
			return fmt.Errorf("awskms: unwrap with %s: not the configured key %s: %w", ref, p.key, keys.ErrVersionNotFound)
		}
	default:
		tags, err := p.tags(ctx, ref.Version)
		if err != nil {
			return p.unwrapErr(ctx, ref, err)
		}
		if tags[TagAlias] != p.key {
			return fmt.Errorf("awskms: unwrap with %s: key is not tagged %s=%s, so it is not one of this alias's versions: %w", ref, TagAlias, p.key, keys.ErrVersionNotFound)
		}
	}
	return nil
}

func first(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// commitment is HMAC-SHA256(dataKey, prefix NUL blob). KMS authenticates
// its whole ciphertext blob, but KMS-compatible servers may not (local-kms
// ignores the key ARN in the blob when Decrypt names the key); the
// commitment makes any change to the stored bytes fail whatever the server.
// It is keyed by the data key, so it reveals nothing about it.
func commitment(dataKey, blob []byte) []byte {
	m := hmac.New(sha256.New, dataKey)
	m.Write([]byte(commitPrefix))
	m.Write([]byte{0})
	m.Write(blob)
	return m.Sum(nil)
}

func encryptionContext(aad []byte) map[string]string {
	if len(aad) == 0 {
		return nil
	}
	return map[string]string{ContextKey: base64.StdEncoding.EncodeToString(aad)}
}

// keyIDOf returns the key ID of a key ARN (arn:...:key/<id>), or s itself.
func keyIDOf(s string) string {
	if i := strings.LastIndex(s, ":key/"); i >= 0 && strings.HasPrefix(s, "arn:") {
		return s[i+len(":key/"):]
	}
	return s
}

// Rotate creates a new KEK version and makes it primary. For the alias
// strategy it creates a KMS key and moves the alias; for the managed
// strategy it asks KMS to rotate the key material (RotateKeyOnDemand).
func (p *Provider) Rotate(ctx context.Context) (keys.Version, error) {
	if err := ctx.Err(); err != nil {
		return keys.Version{}, fmt.Errorf("awskms: rotate %s: %w", p.key, err)
	}
	if p.strategy == StrategyManaged {
		return p.rotateManaged(ctx)
	}
	_, seqs, err := p.versions(ctx)
	if err != nil {
		return keys.Version{}, err
	}
	seq := 0
	for _, n := range seqs {
		if n > seq && n < untagged {
			seq = n
		}
	}
	if seq < len(seqs) {
		seq = len(seqs)
	}
	v, err := p.createVersion(ctx, seq+1, false)
	if err != nil {
		return keys.Version{}, err
	}
	p.log.Info("awskms: rotated alias", "alias", p.key, "version", v.Ref.Version)
	return v, nil
}

// rotateManaged asks KMS to rotate the key's material and waits until it
// has: RotateKeyOnDemand only starts a rotation, which completes
// asynchronously, so the key's CurrentKeyMaterialId is polled (up to
// rotateWait, backing off) until it changes. Returning earlier would let
// the caller rewrap "under the new material" while KMS still encrypts with
// the old, and record a rotation whose generation did not change.
//
// A key for which KMS reports no CurrentKeyMaterialId is not rotated at
// all: lifeboat could neither tell when the new material is in use nor name
// key objects under it (docs/format.md §3.2), and an on-demand rotation
// spends one of the key's limited allowance.
func (p *Provider) rotateManaged(ctx context.Context) (keys.Version, error) {
	name := ProviderType + ":" + p.key
	md, err := p.describe(ctx, p.key)
	if err != nil {
		return keys.Version{}, p.opErr("rotate", p.key, "", err)
	}
	before := aws.ToString(md.CurrentKeyMaterialId)
	if before == "" {
		return keys.Version{}, fmt.Errorf("awskms: rotate %s (managed strategy): the KMS endpoint reports no CurrentKeyMaterialId for key %s, so lifeboat could not tell when new key material is in use or name key objects under it; RotateKeyOnDemand was not called; rotate the key material in AWS KMS or use the alias strategy: %w", name, aws.ToString(md.KeyId), errors.ErrUnsupported)
	}
	_, err = p.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(p.key)})
	if err != nil {
		if isNotImplemented(err) {
			return keys.Version{}, fmt.Errorf("awskms: rotate %s (managed strategy): the KMS endpoint does not implement RotateKeyOnDemand (HTTP 501); rotate the key material in AWS KMS or use the alias strategy: %w", name, errors.ErrUnsupported)
		}
		return keys.Version{}, p.opErr("rotate (RotateKeyOnDemand)", p.key, "", err)
	}
	p.log.Info("awskms: requested on-demand rotation of key material; waiting for it to complete", "key", p.key, "material", before)

	wctx, cancel := context.WithTimeout(ctx, p.rotateWait)
	defer cancel()
	pause := p.pollFirst
	var lastErr error
	for {
		t := time.NewTimer(pause)
		select {
		case <-wctx.Done():
			t.Stop()
		case <-t.C:
		}
		if err := ctx.Err(); err != nil {
			return keys.Version{}, fmt.Errorf("awskms: rotate %s (managed strategy): RotateKeyOnDemand was accepted, but the wait for the new key material (was %s) stopped: %w", name, before, err)
		}
		if wctx.Err() != nil {
			break
		}
		md, err := p.describe(wctx, p.key)
		switch {
		case err != nil:
			lastErr = err
		case aws.ToString(md.CurrentKeyMaterialId) != "" && aws.ToString(md.CurrentKeyMaterialId) != before:
			v, err := p.managedVersion(ctx, md)
			if err != nil {
				return keys.Version{}, err
			}
			p.log.Info("awskms: rotated key material", "key", p.key, "from", before, "to", v.Generation)
			return v, nil
		}
		pause = min(2*pause, p.pollLongest)
	}
	e := fmt.Errorf("awskms: rotate %s (managed strategy): KMS accepted RotateKeyOnDemand for key %s, but its current key material is still %s after %s, so nothing is rewrapped under it; the rotation completes asynchronously: once the key's CurrentKeyMaterialId changes, rerun with --no-rotate to rewrap without rotating again", name, aws.ToString(md.KeyId), before, p.rotateWait)
	if lastErr != nil {
		e = fmt.Errorf("%w (last DescribeKey error: %s)", e, kmsReason(lastErr))
	}
	return keys.Version{}, e
}

// createVersion creates a KMS key tagged as version seq of the alias and
// points the alias at it (creating the alias when create is set).
func (p *Provider) createVersion(ctx context.Context, seq int, create bool) (keys.Version, error) {
	created := p.now().UTC()
	out, err := p.client.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec:     types.KeySpecSymmetricDefault,
		KeyUsage:    types.KeyUsageTypeEncryptDecrypt,
		Description: aws.String(fmt.Sprintf("lifeboat KEK: version %d of %s", seq, p.key)),
		Tags: []types.Tag{
			{TagKey: aws.String(TagAlias), TagValue: aws.String(p.key)},
			{TagKey: aws.String(TagCreated), TagValue: aws.String(created.Format(time.RFC3339Nano))},
			{TagKey: aws.String(TagSeq), TagValue: aws.String(strconv.Itoa(seq))},
		},
	})
	if err != nil {
		return keys.Version{}, p.opErr("rotate: create key for", p.key, "", err)
	}
	id := aws.ToString(out.KeyMetadata.KeyId)
	// The alias's target before the move: if the move reports an error
	// and the alias then targets a third key, another rotation ran
	// meanwhile, and the new key may have been primary in between.
	prev := ""
	if !create {
		if md, err := p.describe(ctx, p.key); err == nil {
			prev = keyIDOf(aws.ToString(md.KeyId))
		}
	}
	if create {
		_, err = p.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(p.key), TargetKeyId: aws.String(id)})
	} else {
		_, err = p.client.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String(p.key), TargetKeyId: aws.String(id)})
	}
	v := keys.Version{Ref: p.ref(id), Created: created, State: keys.StateEnabled, Primary: true}
	if err != nil {
		return p.aliasFailed(ctx, v, prev, err)
	}
	return v, nil
}

// aliasFailed handles an error from CreateAlias or UpdateAlias pointing
// the alias at the new version v. The error may be ambiguous: a timeout or
// a lost response after KMS made the change, or AlreadyExistsException
// from the SDK's retry of a CreateAlias that had succeeded. So the alias
// is read back first:
//
//   - it targets v: the change happened; v is the primary and is returned
//     without error (KMS's error is logged);
//   - it still targets the previous primary, or does not exist: v never
//     was primary and wrapped nothing, so it is untagged (no longer one of
//     the alias's versions) and scheduled for deletion, best effort;
//   - it targets a third key: another rotation ran concurrently and v may
//     have been primary in between, so v is kept and the error says so;
//   - it cannot be read: v may be the primary, so it is left alone and the
//     error says so, naming it.
func (p *Provider) aliasFailed(ctx context.Context, v keys.Version, prev string, aliasErr error) (keys.Version, error) {
	id := v.Ref.Version
	e := p.opErr("rotate: point alias at new key for", p.key, id, aliasErr)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	md, derr := p.describe(cctx, p.key)
	switch {
	case derr == nil && keyIDOf(aws.ToString(md.KeyId)) == id:
		p.log.Warn("awskms: KMS reported an error moving the alias, but the alias targets the new key: the change was made", "alias", p.key, "version", id, "error", kmsReason(aliasErr))
		return v, nil
	case derr != nil && !isCode(derr, "NotFoundException"):
		return keys.Version{}, fmt.Errorf("%w; the alias could not be read back (%s), so it may already target the new key %s: that key was left in place, tagged as a version of %s; check the alias (aws kms describe-key --key-id %s) before retrying", e, kmsReason(derr), id, p.key, p.key)
	}
	target := "no key (the alias does not exist)"
	if derr == nil {
		target = "key " + aws.ToString(md.KeyId)
		if prev != "" && keyIDOf(aws.ToString(md.KeyId)) != prev {
			// Neither the old primary nor v: another rotation moved the
			// alias, possibly after this move succeeded, and a backup may
			// have wrapped under v in between. v stays a version.
			return keys.Version{}, fmt.Errorf("%w; the alias now targets %s, neither the previous primary %s nor the new key %s: another rotation ran at the same time; the new key was left in place, tagged as a version of %s, since a backup may have used it",
				e, target, prev, id, p.key)
		}
	}
	_, uerr := p.client.UntagResource(cctx, &kms.UntagResourceInput{KeyId: aws.String(id), TagKeys: []string{TagAlias}})
	_, serr := p.client.ScheduleKeyDeletion(cctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)})
	if uerr != nil || serr != nil {
		return keys.Version{}, fmt.Errorf("%w (the alias targets %s; cleanup of the unused key %s also failed: untag: %v, schedule deletion: %v)", e, target, id, uerr, serr)
	}
	return keys.Version{}, fmt.Errorf("%w (the alias targets %s; the unused key %s was untagged and scheduled for deletion)", e, target, id)
}

// adopt tags the alias's target as one of its versions when it is not.
func (p *Provider) adopt(ctx context.Context, md *types.KeyMetadata) (bool, error) {
	id := aws.ToString(md.KeyId)
	tags, err := p.tags(ctx, id)
	if err != nil {
		return false, p.opErr("bootstrap: read tags of", p.key, id, err)
	}
	if tags[TagAlias] == p.key {
		return false, nil
	}
	created := aws.ToTime(md.CreationDate)
	if created.IsZero() {
		created = p.now()
	}
	_, err = p.client.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: []types.Tag{
		{TagKey: aws.String(TagAlias), TagValue: aws.String(p.key)},
		{TagKey: aws.String(TagCreated), TagValue: aws.String(created.UTC().Format(time.RFC3339Nano))},
		{TagKey: aws.String(TagSeq), TagValue: aws.String("1")},
	}})
	if err != nil {
		return false, p.opErr("bootstrap: tag adopted key of", p.key, id, err)
	}
	p.log.Info("awskms: adopted the alias's existing key as its first version", "alias", p.key, "version", id)
	return true, nil
}

// Versions lists the KEK versions, oldest first. For the alias strategy
// these are the KMS keys tagged lifeboat.dev/alias=<alias> (found with
// ListKeys and ListResourceTags) plus the alias's target; for the managed
// strategy, the key itself.
func (p *Provider) Versions(ctx context.Context) ([]keys.Version, error) {
	vs, _, err := p.versions(ctx)
	return vs, err
}

// untagged sorts an untagged alias target after every tagged version.
const untagged = int(^uint(0) >> 1)

type aliasVersion struct {
	v   keys.Version
	seq int
}

func (p *Provider) versions(ctx context.Context) ([]keys.Version, map[string]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("awskms: list versions of %s: %w", p.key, err)
	}
	target, err := p.describe(ctx, p.key)
	if err != nil {
		return nil, nil, p.opErr("list versions of", p.key, "", err)
	}
	if p.strategy == StrategyManaged {
		v, err := p.managedVersion(ctx, target)
		if err != nil {
			return nil, nil, err
		}
		return []keys.Version{v}, nil, nil
	}
	primaryID := aws.ToString(target.KeyId)
	var found []aliasVersion
	seen := map[string]bool{}
	var marker *string
	for {
		out, err := p.client.ListKeys(ctx, &kms.ListKeysInput{Marker: marker})
		if err != nil {
			return nil, nil, p.opErr("list versions of", p.key, "", err)
		}
		for _, k := range out.Keys {
			id := aws.ToString(k.KeyId)
			if seen[id] {
				continue
			}
			tags, err := p.tags(ctx, id)
			if err != nil {
				if isCode(err, "NotFoundException") || isCode(err, "AccessDeniedException") {
					continue // deleted meanwhile, or a key we may not read
				}
				return nil, nil, p.opErr("list versions of", p.key, id, err)
			}
			if tags[TagAlias] != p.key {
				continue
			}
			seen[id] = true
			av, err := p.aliasVersion(ctx, id, tags, primaryID)
			if err != nil {
				return nil, nil, err
			}
			found = append(found, av)
		}
		if !out.Truncated || aws.ToString(out.NextMarker) == "" {
			break
		}
		marker = out.NextMarker
	}
	if !seen[primaryID] {
		// The alias targets a key lifeboat did not tag (created or moved
		// out of band): it is still the primary.
		found = append(found, aliasVersion{v: keys.Version{
			Ref: p.ref(primaryID), Created: aws.ToTime(target.CreationDate).UTC(),
			State: state(target.KeyState), Primary: true,
		}, seq: untagged})
	}
	sort.SliceStable(found, func(i, j int) bool {
		a, b := found[i], found[j]
		if a.seq != b.seq {
			return a.seq < b.seq
		}
		if !a.v.Created.Equal(b.v.Created) {
			return a.v.Created.Before(b.v.Created)
		}
		return a.v.Ref.Version < b.v.Ref.Version
	})
	vs := make([]keys.Version, len(found))
	seqs := make(map[string]int, len(found))
	for i, f := range found {
		vs[i] = f.v
		seqs[f.v.Ref.Version] = f.seq
	}
	return vs, seqs, nil
}

func (p *Provider) aliasVersion(ctx context.Context, id string, tags map[string]string, primaryID string) (aliasVersion, error) {
	md, err := p.describe(ctx, id)
	if err != nil {
		return aliasVersion{}, p.opErr("list versions of", p.key, id, err)
	}
	created, err := time.Parse(time.RFC3339Nano, tags[TagCreated])
	if err != nil {
		created = aws.ToTime(md.CreationDate)
	}
	seq, err := strconv.Atoi(tags[TagSeq])
	if err != nil {
		seq = 0
	}
	return aliasVersion{v: keys.Version{
		Ref: p.ref(id), Created: created.UTC(), State: state(md.KeyState), Primary: id == primaryID,
	}, seq: seq}, nil
}

// managedVersion is the one version of a managed key. Its generation is
// the key's current key material (CurrentKeyMaterialId), which KMS
// changes on every rotation under the same key ID; a KMS endpoint that
// does not report it leaves the generation empty.
//
// Its Created is when the current material became current, not when the
// key was made: rotation.every (rotation.Options.MinAge) is measured from
// it, so with the key's CreationDate every `keys rotate` run after the key
// is older than every would rotate again (and use up the key's fixed
// allowance of on-demand rotations). See materialSince.
func (p *Provider) managedVersion(ctx context.Context, md *types.KeyMetadata) (keys.Version, error) {
	created, err := p.materialSince(ctx, md)
	if err != nil {
		return keys.Version{}, err
	}
	return keys.Version{
		Ref:        p.ref(aws.ToString(md.KeyId)),
		Created:    created.UTC(),
		State:      state(md.KeyState),
		Primary:    true,
		Generation: aws.ToString(md.CurrentKeyMaterialId),
	}, nil
}

// materialSince returns when a managed key's current material became
// current: the newest RotationDate in ListKeyRotations (automatic and
// on-demand rotations alike), or the key's CreationDate when it was never
// rotated.
//
// An endpoint that does not implement ListKeyRotations (HTTP 501;
// local-kms does not) cannot have rotated the key through lifeboat either
// (it would not implement RotateKeyOnDemand), so the CreationDate is
// used then. Any other error fails: guessing the CreationDate would make
// rotation.every rotate on every run. Without kms:ListKeyRotations the
// error is keys.ErrAccessDenied.
func (p *Provider) materialSince(ctx context.Context, md *types.KeyMetadata) (time.Time, error) {
	id := aws.ToString(md.KeyId)
	newest := aws.ToTime(md.CreationDate)
	var marker *string
	for {
		out, err := p.client.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: aws.String(id), Marker: marker})
		if err != nil {
			if isNotImplemented(err) {
				p.log.Debug("awskms: the KMS endpoint does not implement ListKeyRotations; the managed key's age is taken from its creation date", "key", p.key)
				return aws.ToTime(md.CreationDate), nil
			}
			e := p.opErr("read when the key material was last rotated (ListKeyRotations) for", p.key, "", err)
			if errors.Is(e, keys.ErrAccessDenied) {
				e = fmt.Errorf("%w (the managed strategy needs kms:ListKeyRotations to honour rotation.every)", e)
			}
			return time.Time{}, e
		}
		newest = newestRotation(newest, out.Rotations)
		if !out.Truncated || aws.ToString(out.NextMarker) == "" {
			return newest, nil
		}
		marker = out.NextMarker
	}
}

// newestRotation returns the latest RotationDate in rs, or since when none
// is later. Entries without a RotationDate (the first material, imported
// material not yet rotated in) are skipped.
func newestRotation(since time.Time, rs []types.RotationsListEntry) time.Time {
	for _, r := range rs {
		if d := aws.ToTime(r.RotationDate); d.After(since) {
			since = d
		}
	}
	return since
}

// isNotImplemented reports whether a KMS endpoint answered HTTP 501.
func isNotImplemented(err error) bool {
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotImplemented
}

func state(s types.KeyState) keys.VersionState {
	if s == types.KeyStateEnabled {
		return keys.StateEnabled
	}
	return keys.StateRetired
}

// Retire disables the KMS key of a version (alias strategy). The managed
// strategy cannot retire: KMS does not let a client disable one version of
// a key's material.
func (p *Provider) Retire(ctx context.Context, version string) error {
	ref := p.ref(version)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("awskms: retire %s: %w", ref, err)
	}
	if p.strategy == StrategyManaged {
		e := fmt.Errorf("awskms: retire %s: the managed strategy cannot retire a version: KMS keeps every rotated key material of a key usable for Decrypt and offers no way to disable one material version; disable the whole key out of band once nothing is wrapped under it: %w", ref, errors.ErrUnsupported)
		if vs, err := p.Versions(ctx); err == nil && len(vs) == 1 && vs[0].Ref.Version == version {
			e = fmt.Errorf("%w: %w", e, keys.ErrRetirePrimary)
		}
		return e
	}
	vs, err := p.Versions(ctx)
	if err != nil {
		return err
	}
	var v *keys.Version
	for i := range vs {
		if vs[i].Ref.Version == version {
			v = &vs[i]
		}
	}
	if v == nil {
		return fmt.Errorf("awskms: retire %s: no KMS key tagged %s=%s has this ID: %w", ref, TagAlias, p.key, keys.ErrVersionNotFound)
	}
	if v.Primary {
		return fmt.Errorf("awskms: retire %s: the alias targets it: %w", ref, keys.ErrRetirePrimary)
	}
	if _, err := p.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(version)}); err != nil {
		return p.opErr("retire", p.key, version, err)
	}
	p.log.Info("awskms: retired version (disabled the KMS key)", "alias", p.key, "version", version)
	return nil
}

func (p *Provider) describe(ctx context.Context, id string) (*types.KeyMetadata, error) {
	out, err := p.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if err != nil {
		return nil, err
	}
	if out.KeyMetadata == nil {
		return nil, fmt.Errorf("DescribeKey %s returned no metadata", id)
	}
	return out.KeyMetadata, nil
}

func (p *Provider) tags(ctx context.Context, id string) (map[string]string, error) {
	m := map[string]string{}
	var marker *string
	for {
		out, err := p.client.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(id), Marker: marker})
		if err != nil {
			return nil, err
		}
		for _, t := range out.Tags {
			m[aws.ToString(t.TagKey)] = aws.ToString(t.TagValue)
		}
		if !out.Truncated || aws.ToString(out.NextMarker) == "" {
			return m, nil
		}
		marker = out.NextMarker
	}
}

func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}

// kmsReason is the KMS error code and message, without the SDK's request
// metadata.
func kmsReason(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if m := ae.ErrorMessage(); m != "" {
			return ae.ErrorCode() + ": " + m
		}
		return ae.ErrorCode()
	}
	return err.Error()
}

// opErr wraps a KMS error of an operation on the configured key (version
// empty) or on one version, mapping KMS error codes to the keys sentinels.
func (p *Provider) opErr(op, key, version string, err error) error {
	name := ProviderType + ":" + key
	if version != "" {
		name = p.ref(version).String()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("awskms: %s %s: %w", op, name, err)
	}
	var sentinel error
	switch {
	case isCode(err, "NotFoundException"):
		sentinel = keys.ErrKeyNotFound
		if version != "" {
			sentinel = keys.ErrVersionNotFound
		}
	case isCode(err, "AccessDeniedException", "NotAuthorizedException", "UnrecognizedClientException", "InvalidSignatureException"):
		sentinel = keys.ErrAccessDenied
	case isCode(err, "DisabledException"):
		sentinel = keys.ErrVersionRetired
	case isCode(err, "KMSInvalidStateException"):
		if strings.Contains(strings.ToLower(kmsReason(err)), "pending deletion") {
			sentinel = keys.ErrVersionRetired
		}
	}
	if sentinel == nil {
		return fmt.Errorf("awskms: %s %s: %s", op, name, kmsReason(err))
	}
	return fmt.Errorf("awskms: %s %s: %s: %w", op, name, kmsReason(err), sentinel)
}

// unwrapErr maps a Decrypt error.
func (p *Provider) unwrapErr(ctx context.Context, ref keys.Ref, err error) error {
	reason := kmsReason(err)
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("awskms: unwrap with %s: %w", ref, err)
	case isCode(err, "InvalidCiphertextException", "IncorrectKeyException", "ValidationException"):
		return fmt.Errorf("awskms: unwrap with %s: %s: %w", ref, reason, keys.ErrUnwrap)
	case isCode(err, "DisabledException"):
		return fmt.Errorf("awskms: unwrap with %s: the KMS key is disabled: %w", ref, keys.ErrVersionRetired)
	case isCode(err, "KMSInvalidStateException"):
		// Pending deletion is retired; other states (pending import,
		// unavailable) are not, and keep KMS's reason.
		if md, derr := p.describe(context.WithoutCancel(ctx), ref.Version); derr == nil &&
			(md.KeyState == types.KeyStatePendingDeletion || md.KeyState == types.KeyStateDisabled || md.KeyState == types.KeyStatePendingReplicaDeletion) {
			return fmt.Errorf("awskms: unwrap with %s: the KMS key is %s: %w", ref, md.KeyState, keys.ErrVersionRetired)
		}
		return fmt.Errorf("awskms: unwrap with %s: %s", ref, reason)
	case isCode(err, "NotFoundException"):
		return fmt.Errorf("awskms: unwrap with %s: no such KMS key: %w", ref, keys.ErrVersionNotFound)
	case isCode(err, "AccessDeniedException", "NotAuthorizedException", "UnrecognizedClientException", "InvalidSignatureException"):
		return fmt.Errorf("awskms: unwrap with %s: %s: %w", ref, reason, keys.ErrAccessDenied)
	}
	return fmt.Errorf("awskms: unwrap with %s: %s", ref, reason)
}

// scrub drops the KMS reason from an error that contains the data key in
// any common encoding (KMS-compatible servers have echoed the plaintext in
// validation errors).
func scrub(err error, dataKey []byte) error {
	s := err.Error()
	for _, form := range []string{string(dataKey), hex.EncodeToString(dataKey), base64.StdEncoding.EncodeToString(dataKey), base64.RawStdEncoding.EncodeToString(dataKey), base64.RawURLEncoding.EncodeToString(dataKey), base64.URLEncoding.EncodeToString(dataKey)} {
		if strings.Contains(s, form) || bytes.Contains([]byte(s), dataKey) {
			return errors.New("awskms: wrap failed; the KMS error was withheld because it echoed the data key")
		}
	}
	return err
}

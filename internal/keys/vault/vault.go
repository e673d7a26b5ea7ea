package vault

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

// ProviderType is the provider name recorded in key references.
const ProviderType = "vault"

// DefaultMount is the transit engine's mount path when Options.Mount is
// empty.
const DefaultMount = "transit"

// DefaultKeyType is the transit key type CreateKey uses when KeySpec.Type
// is empty.
const DefaultKeyType = "aes256-gcm96"

// ErrNotDerived: the transit key was created without derived=true, so Vault
// would ignore the wrap context. lifeboat refuses such keys.
var ErrNotDerived = errors.New("transit key is not derived (it must be created with derived=true so the wrap context is bound)")

// ErrKeyExists: CreateKey found a key of that name already.
var ErrKeyExists = keys.ErrKeyExists

// Options configure a Vault transit provider.
type Options struct {
	// Address is Vault's URL, e.g. https://vault.example:8200. Required;
	// VAULT_ADDR is not read.
	Address string
	// Mount is the transit engine's mount path; empty means "transit".
	Mount string
	// Key is the transit key's name.
	Key string
	// Token is the Vault token. Exactly one of Token and TokenFile must be
	// set; the constructor never reads VAULT_TOKEN (the CLI does that and
	// passes the token here). The token is never logged or put in errors.
	Token string
	// TokenFile is a file holding the token (e.g. a Vault Agent sink). It is
	// re-read before every operation, so a renewed token is picked up.
	TokenFile string
	// HTTPClient is the HTTP client to use; nil means the Vault client's
	// default (pooled, TLS 1.2+, no redirects followed).
	HTTPClient *http.Client
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// KeySpec says how CreateKey creates a transit key. The zero value is the
// recommended key: aes256-gcm96, derived, not exportable, no plaintext
// backup.
type KeySpec struct {
	// Type is the transit key type; empty means aes256-gcm96. It must be a
	// symmetric type that supports derivation (aes128-gcm96, aes256-gcm96,
	// chacha20-poly1305).
	Type string
	// Exportable and AllowPlaintextBackup are needed only when the key is
	// itself backed up with transit's backup endpoint (internal/source/vault).
	// Vault never lets them be turned off again once set.
	Exportable           bool
	AllowPlaintextBackup bool
}

// Provider is a KEK provider on one key of Vault's transit engine.
type Provider struct {
	client    *api.Client
	mount     string
	key       string
	tokenFile string
	now       func() time.Time
	log       *slog.Logger

	tokenMu sync.Mutex
	token   string
}

var _ keys.Provider = (*Provider)(nil)

var (
	keyNameRE    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
	mountSegRE   = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	ciphertextRE = regexp.MustCompile(`^vault:v([1-9][0-9]{0,9}):[A-Za-z0-9+/]+={0,2}$`)
)

// New returns a provider for an existing transit key. It reads the key and
// fails when it is missing (keys.ErrKeyNotFound), when access is refused
// (keys.ErrAccessDenied), or when it is not a derived encryption key
// (ErrNotDerived).
func New(ctx context.Context, opts Options) (*Provider, error) {
	p, err := newProvider(opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", p.name(), err)
	}
	if _, err := p.readKey(ctx, "open"); err != nil {
		return nil, err
	}
	return p, nil
}

// CreateKey creates the transit key opts.Key as spec says, always with
// derived=true, and returns a provider for it. It fails with ErrKeyExists
// when the key exists (Vault's create would silently keep the old key and
// its settings). The transit engine must already be mounted at opts.Mount.
func CreateKey(ctx context.Context, opts Options, spec KeySpec) (*Provider, error) {
	p, err := newProvider(opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create %s: %w", p.name(), err)
	}
	if _, err := p.readKey(ctx, "create"); err == nil {
		return nil, fmt.Errorf("create %s: %w", p.name(), ErrKeyExists)
	} else if !errors.Is(err, keys.ErrKeyNotFound) {
		return nil, err
	}
	typ := spec.Type
	if typ == "" {
		typ = DefaultKeyType
	}
	body := map[string]any{
		"type":                   typ,
		"derived":                true,
		"exportable":             spec.Exportable,
		"allow_plaintext_backup": spec.AllowPlaintextBackup,
	}
	if err := p.write(ctx, p.mount+"/keys/"+p.key, body, nil); err != nil {
		return nil, p.opErr("create", p.name(), err)
	}
	if _, err := p.readKey(ctx, "create"); err != nil {
		return nil, err
	}
	p.log.Info("created vault transit key", "key", p.mount+"/"+p.key, "type", typ, "derived", true,
		"exportable", spec.Exportable, "allow_plaintext_backup", spec.AllowPlaintextBackup)
	return p, nil
}

func newProvider(opts Options) (*Provider, error) {
	mount := strings.Trim(opts.Mount, "/")
	if mount == "" {
		mount = DefaultMount
	}
	for _, seg := range strings.Split(mount, "/") {
		if !mountSegRE.MatchString(seg) {
			return nil, fmt.Errorf("vault provider: invalid transit mount %q", opts.Mount)
		}
	}
	if !keyNameRE.MatchString(opts.Key) {
		return nil, fmt.Errorf("vault provider: invalid transit key name %q (want 1-128 bytes of [A-Za-z0-9._-])", opts.Key)
	}
	name := ProviderType + ":" + mount + "/" + opts.Key
	if opts.Address == "" {
		return nil, fmt.Errorf("%s: no Vault address", name)
	}
	if (opts.Token == "") == (opts.TokenFile == "") {
		return nil, fmt.Errorf("%s: set exactly one of Token and TokenFile (VAULT_TOKEN is not read here)", name)
	}
	client, err := NewAPIClient(opts.Address, opts.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("%s: vault client: %v", name, err)
	}

	p := &Provider{client: client, mount: mount, key: opts.Key, tokenFile: opts.TokenFile, now: opts.Now, log: opts.Logger}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if opts.Token != "" {
		p.token = opts.Token
		client.SetToken(opts.Token)
	} else if err := p.loadToken(); err != nil {
		return nil, err
	}
	return p, nil
}

// loadToken (re-)reads TokenFile and sets the client's token when it changed.
func (p *Provider) loadToken() error {
	if p.tokenFile == "" {
		return nil
	}
	b, err := os.ReadFile(p.tokenFile)
	if err != nil {
		// The path is safe to name; the contents never appear in errors.
		return fmt.Errorf("%s: read token file: %w", p.name(), err)
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return fmt.Errorf("%s: token file %s is empty", p.name(), p.tokenFile)
	}
	p.tokenMu.Lock()
	defer p.tokenMu.Unlock()
	if tok != p.token {
		p.token = tok
		p.client.SetToken(tok)
	}
	return nil
}

// KeyName returns the key as recorded in references: mount/key.
func (p *Provider) KeyName() string { return p.mount + "/" + p.key }

func (p *Provider) name() string { return ProviderType + ":" + p.KeyName() }

func (p *Provider) ref(version int) keys.Ref {
	return keys.Ref{Provider: ProviderType, Key: p.KeyName(), Version: strconv.Itoa(version)}
}

// keyInfo is what transit's key read says about the key.
type keyInfo struct {
	typ          string
	derived      bool
	convergent   bool
	encrypt      bool
	decrypt      bool
	latest       int
	minDecrypt   int
	minEncrypt   int
	minAvailable int
	created      map[int]time.Time
}

// state returns whether version n exists (is not trimmed and not above
// latest) and whether it is retired.
func (k *keyInfo) state(n int) (exists, retired bool) {
	if n < 1 || n > k.latest || n < k.minAvailable {
		return false, false
	}
	return true, n < k.minDecrypt
}

func (p *Provider) readKey(ctx context.Context, op string) (*keyInfo, error) {
	if err := p.loadToken(); err != nil {
		return nil, err
	}
	s, err := p.client.Logical().ReadWithContext(ctx, p.mount+"/keys/"+p.key)
	if err != nil {
		return nil, p.opErr(op, p.name(), err)
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("%s %s: %w", op, p.name(), keys.ErrKeyNotFound)
	}
	d := s.Data
	k := &keyInfo{created: map[int]time.Time{}}
	k.typ, _ = d["type"].(string)
	k.derived, _ = d["derived"].(bool)
	k.convergent, _ = d["convergent_encryption"].(bool)
	k.encrypt, _ = d["supports_encryption"].(bool)
	k.decrypt, _ = d["supports_decryption"].(bool)
	var perr error
	num := func(field string) int {
		n, err := jsonInt(d[field])
		if err != nil && perr == nil {
			perr = fmt.Errorf("field %s: %v", field, err)
		}
		return int(n)
	}
	k.latest = num("latest_version")
	k.minDecrypt = num("min_decryption_version")
	k.minEncrypt = num("min_encryption_version")
	if _, ok := d["min_available_version"]; ok {
		k.minAvailable = num("min_available_version")
	}
	if m, ok := d["keys"].(map[string]any); ok {
		for vs, ts := range m {
			v, err := strconv.Atoi(vs)
			if err != nil {
				continue
			}
			if sec, err := jsonInt(ts); err == nil {
				k.created[v] = time.Unix(sec, 0).UTC()
			}
		}
	}
	if perr != nil {
		return nil, fmt.Errorf("%s %s: unexpected key metadata from Vault: %v", op, p.name(), perr)
	}
	if k.latest < 1 {
		return nil, fmt.Errorf("%s %s: unexpected key metadata from Vault: latest_version %d", op, p.name(), k.latest)
	}
	if !k.encrypt || !k.decrypt {
		return nil, fmt.Errorf("%s %s: transit key of type %q cannot encrypt and decrypt; create an aes256-gcm96 key with derived=true", op, p.name(), k.typ)
	}
	if !k.derived {
		return nil, fmt.Errorf("%s %s: %w; create a new key with `vault write %s/keys/<name> type=aes256-gcm96 derived=true` (derivation cannot be turned on for an existing key)", op, p.name(), ErrNotDerived, p.mount)
	}
	if k.convergent {
		return nil, fmt.Errorf("%s %s: transit key uses convergent encryption, which makes wraps deterministic; create a key with derived=true and convergent_encryption=false", op, p.name())
	}
	return k, nil
}

func jsonInt(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		return n.Int64()
	case float64:
		return int64(n), nil
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	case nil:
		return 0, errors.New("missing")
	}
	return 0, fmt.Errorf("not a number: %T", v)
}

// write POSTs body to path and returns the response data in out (when not
// nil).
func (p *Provider) write(ctx context.Context, path string, body map[string]any, out *map[string]any) error {
	if err := p.loadToken(); err != nil {
		return err
	}
	s, err := p.client.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return err
	}
	if out != nil {
		if s == nil || s.Data == nil {
			return &api.ResponseError{StatusCode: http.StatusNotFound, Errors: []string{"empty response"}}
		}
		*out = s.Data
	}
	return nil
}

// opErr turns an error from the Vault client into one naming op and what
// (a key or a key version) and wrapping the matching keys sentinel. It uses
// only Vault's error messages and status code, never the request body or
// the token.
func (p *Provider) opErr(op, what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		ce := context.Canceled
		if errors.Is(err, context.DeadlineExceeded) {
			ce = context.DeadlineExceeded
		}
		return fmt.Errorf("%s %s: %w", op, what, ce)
	}
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("%s %s: %v", op, what, err)
	}
	msg := strings.Join(re.Errors, "; ")
	if re.RawError {
		msg = "unparsable error response"
	}
	msg = strings.TrimSpace(strings.NewReplacer("\n", " ", "\t", " ", "1 error occurred:", "", "* ", "").Replace(msg))
	lower := strings.ToLower(msg)
	var sentinel error
	switch {
	case re.StatusCode == http.StatusForbidden:
		sentinel = keys.ErrAccessDenied
	case re.StatusCode == http.StatusNotFound, strings.Contains(lower, "encryption key not found"), strings.Contains(lower, "key not found"):
		sentinel = keys.ErrKeyNotFound
	case strings.Contains(lower, "disallowed by policy (too old)"):
		sentinel = keys.ErrVersionRetired
	case strings.Contains(lower, "version is too new"):
		sentinel = keys.ErrVersionNotFound
	case strings.Contains(lower, "message authentication failed"), strings.Contains(lower, "invalid ciphertext"),
		strings.Contains(lower, "missing 'context'"):
		sentinel = keys.ErrUnwrap
	}
	if sentinel == nil {
		return fmt.Errorf("%s %s: vault answered %d: %s", op, what, re.StatusCode, msg)
	}
	return fmt.Errorf("%s %s: vault answered %d: %s: %w", op, what, re.StatusCode, msg, sentinel)
}

// parseVersion parses a reference's version: canonical decimal, ≥ 1.
func parseVersion(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

// ciphertextVersion returns the version in a "vault:vN:<base64>" ciphertext.
func ciphertextVersion(c []byte) (int, bool) {
	m := ciphertextRE.FindSubmatch(c)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return 0, false
	}
	return n, true
}

// checkWrapped validates w's reference against this provider and its
// ciphertext against the reference. It returns the version, or an error
// wrapping the right sentinel.
func (p *Provider) checkWrapped(ctx context.Context, op string, w keys.Wrapped) (int, error) {
	if w.KEK.Provider != ProviderType || w.KEK.Key != p.KeyName() {
		return 0, fmt.Errorf("%s %s with %s: %w", op, w.KEK, p.name(), keys.ErrKeyNotFound)
	}
	n, ok := parseVersion(w.KEK.Version)
	if !ok {
		return 0, fmt.Errorf("%s with %s: %w", op, w.KEK, keys.ErrVersionNotFound)
	}
	cv, ok := ciphertextVersion(w.Ciphertext)
	if ok && cv == n {
		return n, nil
	}
	// The ciphertext is malformed or names another version. Say whether the
	// referenced version exists and is enabled, so an unknown or retired
	// version is reported as such; otherwise the wrapped key is bad.
	k, err := p.readKey(ctx, op)
	if err != nil {
		return 0, err
	}
	exists, retired := k.state(n)
	switch {
	case !exists:
		return 0, fmt.Errorf("%s with %s: %w", op, w.KEK, keys.ErrVersionNotFound)
	case retired:
		return 0, fmt.Errorf("%s with %s: %w", op, w.KEK, keys.ErrVersionRetired)
	case !ok:
		return 0, fmt.Errorf("%s with %s: malformed transit ciphertext: %w", op, w.KEK, keys.ErrUnwrap)
	default:
		return 0, fmt.Errorf("%s with %s: ciphertext was made by version %d: %w", op, w.KEK, cv, keys.ErrUnwrap)
	}
}

func contextParam(aad []byte) (string, error) {
	if len(aad) == 0 {
		return "", errors.New("derived transit keys need a non-empty wrap context")
	}
	return base64.StdEncoding.EncodeToString(aad), nil
}

// Wrap encrypts dataKey with transit under the key's latest version, with
// context base64(aad).
func (p *Provider) Wrap(ctx context.Context, dataKey, aad []byte) (keys.Wrapped, error) {
	if err := ctx.Err(); err != nil {
		return keys.Wrapped{}, fmt.Errorf("wrap with %s: %w", p.name(), err)
	}
	c, err := contextParam(aad)
	if err != nil {
		return keys.Wrapped{}, fmt.Errorf("wrap with %s: %v", p.name(), err)
	}
	// Reading the key first checks that it (still) exists and is derived:
	// transit's encrypt would otherwise create a missing key (when the token
	// may create) and silently ignore the context of a non-derived key.
	k, err := p.readKey(ctx, "wrap with")
	if err != nil {
		return keys.Wrapped{}, err
	}
	var out map[string]any
	err = p.write(ctx, p.mount+"/encrypt/"+p.key, map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString(dataKey),
		"context":   c,
	}, &out)
	if err != nil {
		// Encrypt uses the latest version: name it.
		return keys.Wrapped{}, p.opErr("wrap with", p.ref(k.latest).String(), err)
	}
	return p.wrappedFrom(ctx, "wrap with", out)
}

func (p *Provider) wrappedFrom(ctx context.Context, op string, out map[string]any) (keys.Wrapped, error) {
	ct, _ := out["ciphertext"].(string)
	v, ok := ciphertextVersion([]byte(ct))
	if !ok {
		return keys.Wrapped{}, fmt.Errorf("%s %s: Vault returned a malformed ciphertext", op, p.name())
	}
	if kv, err := jsonInt(out["key_version"]); err == nil && int(kv) != v {
		return keys.Wrapped{}, fmt.Errorf("%s %s: Vault returned key_version %d for a v%d ciphertext", op, p.name(), kv, v)
	}
	return keys.Wrapped{KEK: p.ref(v), Ciphertext: []byte(ct)}, nil
}

// Unwrap decrypts w with transit, with context base64(aad). The version in
// w's ciphertext must be w.KEK.Version.
func (p *Provider) Unwrap(ctx context.Context, w keys.Wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("unwrap with %s: %w", w.KEK, err)
	}
	if _, err := p.checkWrapped(ctx, "unwrap", w); err != nil {
		return nil, err
	}
	c, err := contextParam(aad)
	if err != nil {
		return nil, fmt.Errorf("unwrap with %s: %v: %w", w.KEK, err, keys.ErrUnwrap)
	}
	var out map[string]any
	err = p.write(ctx, p.mount+"/decrypt/"+p.key, map[string]any{
		"ciphertext": string(w.Ciphertext),
		"context":    c,
	}, &out)
	if err != nil {
		return nil, p.opErr("unwrap with", w.KEK.String(), err)
	}
	pt, _ := out["plaintext"].(string)
	dk, err := base64.StdEncoding.DecodeString(pt)
	if err != nil {
		return nil, fmt.Errorf("unwrap with %s: Vault returned a malformed plaintext", w.KEK)
	}
	return dk, nil
}

// Rewrap re-encrypts w under the key's latest version with transit's
// rewrap endpoint: the data key is decrypted and re-encrypted inside Vault
// and never reaches lifeboat. aad must be the context w was wrapped with;
// the result is bound to the same context.
func (p *Provider) Rewrap(ctx context.Context, w keys.Wrapped, aad []byte) (keys.Wrapped, error) {
	if err := ctx.Err(); err != nil {
		return keys.Wrapped{}, fmt.Errorf("rewrap %s: %w", w.KEK, err)
	}
	if _, err := p.checkWrapped(ctx, "rewrap", w); err != nil {
		return keys.Wrapped{}, err
	}
	c, err := contextParam(aad)
	if err != nil {
		return keys.Wrapped{}, fmt.Errorf("rewrap %s: %v: %w", w.KEK, err, keys.ErrUnwrap)
	}
	if _, err := p.readKey(ctx, "rewrap"); err != nil {
		return keys.Wrapped{}, err
	}
	var out map[string]any
	err = p.write(ctx, p.mount+"/rewrap/"+p.key, map[string]any{
		"ciphertext": string(w.Ciphertext),
		"context":    c,
	}, &out)
	if err != nil {
		return keys.Wrapped{}, p.opErr("rewrap", w.KEK.String(), err)
	}
	return p.wrappedFrom(ctx, "rewrap", out)
}

// Rotate adds a key version with transit's rotate and returns it; it is the
// new primary.
func (p *Provider) Rotate(ctx context.Context) (keys.Version, error) {
	if err := ctx.Err(); err != nil {
		return keys.Version{}, fmt.Errorf("rotate %s: %w", p.name(), err)
	}
	before, err := p.readKey(ctx, "rotate")
	if err != nil {
		return keys.Version{}, err
	}
	if err := p.write(ctx, p.mount+"/keys/"+p.key+"/rotate", map[string]any{}, nil); err != nil {
		return keys.Version{}, p.opErr("rotate", p.ref(before.latest).String(), err)
	}
	after, err := p.readKey(ctx, "rotate")
	if err != nil {
		return keys.Version{}, err
	}
	if after.latest <= before.latest {
		return keys.Version{}, fmt.Errorf("rotate %s: latest version is still %d after rotate", p.name(), after.latest)
	}
	v := keys.Version{Ref: p.ref(after.latest), Created: after.created[after.latest], State: keys.StateEnabled, Primary: true}
	if v.Created.IsZero() {
		v.Created = p.now().UTC()
	}
	p.log.Info("rotated vault transit key", "key", p.KeyName(), "version", after.latest)
	return v, nil
}

// Versions lists the key's versions, oldest first: versions below
// min_decryption_version are retired; versions below min_available_version
// (trimmed, their material deleted) are not listed. Vault does not report
// creation times of retired versions, so their Created is zero. The primary
// is latest_version, which transit's encrypt uses (min_encryption_version,
// when set, only limits explicit key_version requests).
func (p *Provider) Versions(ctx context.Context) ([]keys.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", p.name(), err)
	}
	k, err := p.readKey(ctx, "list versions of")
	if err != nil {
		return nil, err
	}
	first := max(1, k.minAvailable)
	out := make([]keys.Version, 0, k.latest-first+1)
	for n := first; n <= k.latest; n++ {
		st := keys.StateEnabled
		if n < k.minDecrypt {
			st = keys.StateRetired
		}
		out = append(out, keys.Version{Ref: p.ref(n), Created: k.created[n], State: st, Primary: n == k.latest})
	}
	return out, nil
}

// Retire raises the key's min_decryption_version to version+1. Vault has
// no per-version state: retiring version v retires every older version as
// well. The latest version cannot be retired (keys.ErrRetirePrimary);
// retiring an already retired version does nothing.
func (p *Provider) Retire(ctx context.Context, version string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("retire %s@%s: %w", p.name(), version, err)
	}
	ref := keys.Ref{Provider: ProviderType, Key: p.KeyName(), Version: version}
	n, ok := parseVersion(version)
	if !ok {
		return fmt.Errorf("retire %s: %w", ref, keys.ErrVersionNotFound)
	}
	k, err := p.readKey(ctx, "retire")
	if err != nil {
		return err
	}
	exists, retired := k.state(n)
	switch {
	case !exists:
		return fmt.Errorf("retire %s: %w", ref, keys.ErrVersionNotFound)
	case n == k.latest:
		return fmt.Errorf("retire %s: %w", ref, keys.ErrRetirePrimary)
	case retired:
		return nil
	}
	if err := p.write(ctx, p.mount+"/keys/"+p.key+"/config", map[string]any{"min_decryption_version": n + 1}, nil); err != nil {
		return p.opErr("retire", ref.String(), err)
	}
	p.log.Info("retired vault transit key versions", "key", p.KeyName(),
		"versions", fmt.Sprintf("%d-%d", max(1, k.minDecrypt), n), "min_decryption_version", n+1)
	return nil
}

// cleanHTTPClient is the HTTP client used when Options give none. Vault's
// own default client reads VAULT_SKIP_VERIFY, VAULT_CACERT, VAULT_PROXY_ADDR
// and friends from the environment; a stray VAULT_SKIP_VERIFY would send
// the token and every data key to whoever answers. This one verifies
// certificates against the system roots, uses no proxy, and follows no
// redirects.
func cleanHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
			Proxy:               nil,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        16,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"

	"github.com/hashicorp/vault/api"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// TransitFormat is the format field of vault-transit.json.
const TransitFormat = "lifeboat.dev/vault-transit/v1"

// CanarySize is the length of a canary's plaintext.
const CanarySize = 32

// canaryContextLabel starts every canary context (docs/format.md §6.3).
const canaryContextLabel = "lifeboat.dev/vault-canary/v1"

// CanaryContext returns the context a derived key's canary is encrypted
// with: "lifeboat.dev/vault-canary/v1" NUL backupID NUL key.
func CanaryContext(backupID, key string) []byte {
	return []byte(canaryContextLabel + "\x00" + backupID + "\x00" + key)
}

// TransitArtifact is the content of vault-transit.json.
type TransitArtifact struct {
	Format  string                      `json:"format"`
	Address string                      `json:"address"`
	Mount   string                      `json:"mount"`
	Keys    map[string]TransitKeyBackup `json:"keys"`
}

// TransitKeyBackup is one key's entry in vault-transit.json.
type TransitKeyBackup struct {
	LatestVersion int `json:"latestVersion"`
	// Backup is Vault's backup string as a JSON string, quotes included
	// (json.RawMessage, so that it can be zeroed).
	Backup json.RawMessage `json:"backup"`
}

// Destroy zeroes every key backup held by a.
func (a *TransitArtifact) Destroy() {
	for _, k := range a.Keys {
		clear(k.Backup)
	}
}

// ReadTransitArtifact decodes vault-transit.json. The caller must Destroy
// the result.
func ReadTransitArtifact(r io.Reader) (TransitArtifact, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxResponse*4+1))
	defer clear(b)
	if err != nil {
		return TransitArtifact{}, fmt.Errorf("read %s: %w", catalog.ArtifactVaultTransit, err)
	}
	var a TransitArtifact
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		a.Destroy()
		return TransitArtifact{}, fmt.Errorf("decode %s: %v", catalog.ArtifactVaultTransit, DecodeError(err))
	}
	if a.Format != TransitFormat {
		a.Destroy()
		return TransitArtifact{}, fmt.Errorf("decode %s: format %q, want %q", catalog.ArtifactVaultTransit, a.Format, TransitFormat)
	}
	for name, k := range a.Keys {
		// Checked in place: decoding it would leave an unzeroable copy.
		if n := len(k.Backup); n < 3 || k.Backup[0] != '"' || k.Backup[n-1] != '"' || !json.Valid(k.Backup) {
			a.Destroy()
			return TransitArtifact{}, fmt.Errorf("decode %s: key %s: backup is not a non-empty string", catalog.ArtifactVaultTransit, name)
		}
	}
	return a, nil
}

// transitKey is what the backup needs of a key's configuration.
type transitKey struct {
	Type                 string `json:"type"`
	Derived              bool   `json:"derived"`
	Exportable           bool   `json:"exportable"`
	AllowPlaintextBackup bool   `json:"allow_plaintext_backup"`
	SupportsEncryption   bool   `json:"supports_encryption"`
	SupportsDecryption   bool   `json:"supports_decryption"`
	LatestVersion        int    `json:"latest_version"`
}

var ciphertextRE = regexp.MustCompile(`^vault:v([1-9][0-9]{0,9}):[A-Za-z0-9+/]+={0,2}$`)

// CiphertextVersion returns the key version in a transit ciphertext.
func CiphertextVersion(ct string) (int, bool) {
	m := ciphertextRE.FindStringSubmatch(ct)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// Transit backs up the transit keys names of mount ("" means "transit")
// into w as vault-transit.json and returns their manifest entries, with a
// fresh canary each, in the order of names. Every key's configuration is
// read before anything is written; a key that is not exportable, does not
// allow plaintext backup or cannot encrypt is refused (ErrNotBackupable).
func (c *Client) Transit(ctx context.Context, mount string, names []string, backupID string, w io.Writer) ([]catalog.VaultTransitKey, error) {
	if mount == "" {
		mount = DefaultTransitMount
	}
	m, err := cleanMount(mount)
	if err != nil {
		return nil, fmt.Errorf("vault %s: transit: %w", c.addr, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("vault %s: transit %s: no keys named", c.addr, m)
	}
	cfgs := make([]transitKey, len(names))
	for i, name := range names {
		what := "key " + m + "/" + name
		if !keyNameRE.MatchString(name) {
			return nil, fmt.Errorf("vault %s: transit %s: invalid key name %q", c.addr, what, name)
		}
		if slices.Index(names, name) != i {
			return nil, fmt.Errorf("vault %s: transit %s: named twice", c.addr, what)
		}
		var k transitKey
		found, err := c.readJSON(ctx, m+"/keys/"+name, &k)
		if err != nil {
			return nil, c.opErr("read transit", what, err)
		}
		if !found {
			return nil, fmt.Errorf("vault %s: read transit %s: no such key", c.addr, what)
		}
		if err := checkBackupable(m, name, k); err != nil {
			return nil, fmt.Errorf("vault %s: transit %s: %w", c.addr, what, err)
		}
		cfgs[i] = k
	}

	out := make([]catalog.VaultTransitKey, len(names))
	for i, name := range names {
		k, err := c.canary(ctx, m, name, cfgs[i], backupID)
		if err != nil {
			return nil, err
		}
		out[i] = k
	}

	// The artifact: keys in name order.
	order := slices.Clone(names)
	slices.Sort(order)
	latest := make(map[string]int, len(out))
	for _, k := range out {
		latest[k.Name] = k.LatestVersion
	}
	head, _ := json.Marshal(struct {
		Format  string `json:"format"`
		Address string `json:"address"`
		Mount   string `json:"mount"`
	}{TransitFormat, c.addr, m})
	// head is {...}; drop the closing brace to append the keys.
	if _, err := fmt.Fprintf(w, "%s,\"keys\":{", head[:len(head)-1]); err != nil {
		return nil, fmt.Errorf("vault %s: transit %s: write artifact: %w", c.addr, m, err)
	}
	for i, name := range order {
		if err := c.writeKeyBackup(ctx, w, m, name, latest[name], i == 0); err != nil {
			return nil, err
		}
	}
	if _, err := io.WriteString(w, "}}\n"); err != nil {
		return nil, fmt.Errorf("vault %s: transit %s: write artifact: %w", c.addr, m, err)
	}
	return out, nil
}

func checkBackupable(mount, name string, k transitKey) error {
	var missing []string
	if !k.Exportable {
		missing = append(missing, "exportable")
	}
	if !k.AllowPlaintextBackup {
		missing = append(missing, "allow_plaintext_backup")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not set; Vault backs up only keys with exportable=true and allow_plaintext_backup=true: run `vault write %s/keys/%s/config exportable=true allow_plaintext_backup=true` (neither can be turned off again) or leave the key out of transitKeys",
			ErrNotBackupable, joinAnd(missing), mount, name)
	}
	if !k.SupportsEncryption || !k.SupportsDecryption {
		return fmt.Errorf("%w: a key of type %q cannot encrypt, so lifeboat cannot make the canary that proves its restore", ErrNotBackupable, k.Type)
	}
	if k.LatestVersion < 1 {
		return fmt.Errorf("unexpected key metadata from Vault: latest_version %d", k.LatestVersion)
	}
	return nil
}

func joinAnd(s []string) string {
	if len(s) == 2 {
		return s[0] + " and " + s[1]
	}
	return s[0]
}

// canary encrypts a fresh random canary under the key and returns the
// key's manifest entry.
func (c *Client) canary(ctx context.Context, mount, name string, k transitKey, backupID string) (catalog.VaultTransitKey, error) {
	what := "key " + mount + "/" + name
	pt := make([]byte, CanarySize)
	defer clear(pt)
	if _, err := rand.Read(pt); err != nil {
		return catalog.VaultTransitKey{}, fmt.Errorf("vault %s: canary for transit %s: %w", c.addr, what, err)
	}
	sum := sha256.Sum256(pt)
	var ctxB64 string
	if k.Derived {
		ctxB64 = base64.StdEncoding.EncodeToString(CanaryContext(backupID, name))
	}
	ct, err := Encrypt(ctx, c.c, mount, name, pt, ctxB64)
	if err != nil {
		return catalog.VaultTransitKey{}, c.opErr("encrypt canary with transit", what, err)
	}
	v, ok := CiphertextVersion(ct)
	if !ok {
		return catalog.VaultTransitKey{}, fmt.Errorf("vault %s: encrypt canary with transit %s: Vault returned a malformed ciphertext", c.addr, what)
	}
	c.log.Info("transit key canary made", "key", mount+"/"+name, "version", v, "derived", k.Derived)
	return catalog.VaultTransitKey{
		Name: name, Type: k.Type, LatestVersion: max(k.LatestVersion, v), Derived: k.Derived,
		CanaryCiphertext: ct, CanaryContext: ctxB64, CanarySHA256: hex.EncodeToString(sum[:]),
	}, nil
}

// writeKeyBackup writes `"name":{"latestVersion":N,"backup":"..."}` to w
// (after a comma unless first), with the backup Vault returns now.
func (c *Client) writeKeyBackup(ctx context.Context, w io.Writer, mount, name string, latest int, first bool) error {
	what := "key " + mount + "/" + name
	resp, err := c.c.Logical().ReadRawWithContext(ctx, mount+"/backup/"+name)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return c.opErr("back up transit", what, err)
	}
	body, err := readBody(resp, maxResponse)
	defer clear(body)
	if err != nil {
		return c.opErr("back up transit", what, err)
	}
	var r struct {
		Data struct {
			Backup json.RawMessage `json:"backup"`
		} `json:"data"`
	}
	err = json.Unmarshal(body, &r)
	defer clear(r.Data.Backup)
	if err != nil || len(r.Data.Backup) < 3 || r.Data.Backup[0] != '"' {
		return fmt.Errorf("vault %s: back up transit %s: Vault's answer holds no backup string", c.addr, what)
	}
	nameJSON, _ := json.Marshal(name)
	var entry bytes.Buffer
	entry.Grow(len(r.Data.Backup) + len(nameJSON) + 64)
	if !first {
		entry.WriteByte(',')
	}
	fmt.Fprintf(&entry, `%s:{"latestVersion":%d,"backup":`, nameJSON, latest)
	entry.Write(r.Data.Backup)
	entry.WriteString("}")
	b := entry.Bytes()
	defer clear(b)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("vault %s: back up transit %s: write artifact: %w", c.addr, what, err)
	}
	c.log.Info("transit key backed up", "key", mount+"/"+name, "latestVersion", latest)
	return nil
}

// Encrypt encrypts plaintext with transit key mount/name, with context
// ctxB64 (base64) when not empty, and returns the ciphertext. The request
// body is built in a byte slice that is zeroed afterwards.
func Encrypt(ctx context.Context, c *api.Client, mount, name string, plaintext []byte, ctxB64 string) (string, error) {
	body := make([]byte, 0, 64+base64.StdEncoding.EncodedLen(len(plaintext))+len(ctxB64))
	body = append(body, `{"plaintext":"`...)
	body = base64.StdEncoding.AppendEncode(body, plaintext)
	body = append(body, '"')
	if ctxB64 != "" {
		body = append(body, `,"context":"`...)
		body = append(body, ctxB64...)
		body = append(body, '"')
	}
	body = append(body, '}')
	defer clear(body)
	rb, err := PutRaw(ctx, c, mount+"/encrypt/"+name, body)
	if err != nil {
		return "", err
	}
	var r struct {
		Data struct {
			Ciphertext string `json:"ciphertext"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rb, &r); err != nil {
		return "", fmt.Errorf("decode the answer: %v", DecodeError(err))
	}
	if r.Data.Ciphertext == "" {
		return "", errors.New("the answer holds no ciphertext")
	}
	return r.Data.Ciphertext, nil
}

package local

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/strictjson"
)

// ProviderType is the provider name recorded in key references.
const ProviderType = "local"

// Format is the value of the keyring file's format field.
const Format = "lifeboat.dev/keyring/v1"

const (
	materialSize = 32
	nonceSize    = 12
	wrapVersion  = 0x01
	wrapADPrefix = "lifeboat.dev/local-wrap/v1"
	maxFileSize  = 16 << 20
)

// Options configure a keyring.
type Options struct {
	// Path is the keyring file.
	Path string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Keyring is a KEK provider backed by a keyring file. Every operation
// re-reads the file, so a rotation made by another process is seen; changes
// are serialised with an advisory lock on Path+".lock" and written
// atomically.
type Keyring struct {
	path string
	now  func() time.Time
	mu   sync.Mutex
}

var _ keys.Provider = (*Keyring)(nil)

type fileVersion struct {
	Version  int               `json:"version"`
	Created  time.Time         `json:"created"`
	State    keys.VersionState `json:"state"`
	Material []byte            `json:"material"`
}

type file struct {
	Format   string        `json:"format"`
	Key      string        `json:"key"`
	Primary  int           `json:"primary"`
	Versions []fileVersion `json:"versions"`
}

// Create writes a new keyring file holding version 1 of key keyID. It fails
// if the file exists.
func Create(ctx context.Context, opts Options, keyID string) (*Keyring, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local keyring %s: create: %w", opts.Path, err)
	}
	k := newKeyring(opts)
	if err := validKeyID(keyID); err != nil {
		return nil, fmt.Errorf("local keyring %s: create: %w", opts.Path, err)
	}
	m, err := newMaterial()
	if err != nil {
		return nil, fmt.Errorf("local keyring %s: create: %w", opts.Path, err)
	}
	f := &file{Format: Format, Key: keyID, Primary: 1, Versions: []fileVersion{{
		Version: 1, Created: k.now().UTC(), State: keys.StateEnabled, Material: m,
	}}}
	if err := k.write(f, true); err != nil {
		return nil, fmt.Errorf("local keyring %s: create: %w", opts.Path, err)
	}
	return k, nil
}

// Open returns the keyring at opts.Path after checking that the file loads
// and is private to its owner.
func Open(ctx context.Context, opts Options) (*Keyring, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local keyring %s: open: %w", opts.Path, err)
	}
	k := newKeyring(opts)
	if _, err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

func newKeyring(opts Options) *Keyring {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Keyring{path: opts.Path, now: now}
}

// KeyID returns the keyring's key ID.
func (k *Keyring) KeyID(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("local keyring %s: read key ID: %w", k.path, err)
	}
	f, err := k.load()
	if err != nil {
		return "", err
	}
	return f.Key, nil
}

// Wrap encrypts dataKey under the primary version.
func (k *Keyring) Wrap(ctx context.Context, dataKey, aad []byte) (keys.Wrapped, error) {
	if err := ctx.Err(); err != nil {
		return keys.Wrapped{}, fmt.Errorf("wrap with local keyring %s: %w", k.path, err)
	}
	f, err := k.load()
	if err != nil {
		return keys.Wrapped{}, err
	}
	v := f.version(f.Primary)
	ref := f.ref(f.Primary)
	aead, err := newGCM(v.Material)
	if err != nil {
		return keys.Wrapped{}, fmt.Errorf("wrap with %s: %w", ref, err)
	}
	// NewGCMWithRandomNonce's Seal emits nonce ‖ ciphertext ‖ tag, which
	// after the version byte is the layout of docs/format.md §4.
	out := make([]byte, 1, 1+len(dataKey)+aead.Overhead())
	out[0] = wrapVersion
	out = aead.Seal(out, nil, dataKey, wrapAD(f.Key, f.Primary, aad))
	return keys.Wrapped{KEK: ref, Ciphertext: out}, nil
}

// Unwrap decrypts a wrapped key made by Wrap with the same aad.
func (k *Keyring) Unwrap(ctx context.Context, w keys.Wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("unwrap with %s: %w", w.KEK, err)
	}
	f, err := k.load()
	if err != nil {
		return nil, err
	}
	if w.KEK.Provider != ProviderType || w.KEK.Key != f.Key {
		return nil, fmt.Errorf("unwrap %s with local keyring %s (key %q): %w", w.KEK, k.path, f.Key, keys.ErrKeyNotFound)
	}
	n, ok := parseVersion(w.KEK.Version)
	if !ok || f.version(n) == nil {
		return nil, fmt.Errorf("unwrap with %s: %w", w.KEK, keys.ErrVersionNotFound)
	}
	v := f.version(n)
	if v.State != keys.StateEnabled {
		return nil, fmt.Errorf("unwrap with %s: %w", w.KEK, keys.ErrVersionRetired)
	}
	c := w.Ciphertext
	if len(c) < 1+nonceSize || c[0] != wrapVersion {
		return nil, fmt.Errorf("unwrap with %s: malformed wrapped key: %w", w.KEK, keys.ErrUnwrap)
	}
	aead, err := newGCM(v.Material)
	if err != nil {
		return nil, fmt.Errorf("unwrap with %s: %w", w.KEK, err)
	}
	dk, err := aead.Open(nil, nil, c[1:], wrapAD(f.Key, n, aad))
	if err != nil {
		return nil, fmt.Errorf("unwrap with %s: %w", w.KEK, keys.ErrUnwrap)
	}
	return dk, nil
}

// Rotate appends a new version and makes it primary.
func (k *Keyring) Rotate(ctx context.Context) (keys.Version, error) {
	if err := ctx.Err(); err != nil {
		return keys.Version{}, fmt.Errorf("rotate local keyring %s: %w", k.path, err)
	}
	var out keys.Version
	err := k.update(func(f *file) error {
		m, err := newMaterial()
		if err != nil {
			return err
		}
		n := f.Versions[len(f.Versions)-1].Version + 1
		fv := fileVersion{Version: n, Created: k.now().UTC(), State: keys.StateEnabled, Material: m}
		f.Versions = append(f.Versions, fv)
		f.Primary = n
		out = keys.Version{Ref: f.ref(n), Created: fv.Created, State: fv.State, Primary: true}
		return nil
	})
	if err != nil {
		return keys.Version{}, fmt.Errorf("rotate local keyring %s: %w", k.path, err)
	}
	return out, nil
}

// Versions lists the versions, oldest first.
func (k *Keyring) Versions(ctx context.Context) ([]keys.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list versions of local keyring %s: %w", k.path, err)
	}
	f, err := k.load()
	if err != nil {
		return nil, err
	}
	out := make([]keys.Version, 0, len(f.Versions))
	for _, v := range f.Versions {
		out = append(out, keys.Version{Ref: f.ref(v.Version), Created: v.Created, State: v.State, Primary: v.Version == f.Primary})
	}
	return out, nil
}

// Retire marks a version retired; it then no longer unwraps.
func (k *Keyring) Retire(ctx context.Context, version string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("retire version %s of local keyring %s: %w", version, k.path, err)
	}
	return k.update(func(f *file) error {
		n, ok := parseVersion(version)
		if !ok || f.version(n) == nil {
			return fmt.Errorf("retire %s:%s@%s: %w", ProviderType, f.Key, version, keys.ErrVersionNotFound)
		}
		if n == f.Primary {
			return fmt.Errorf("retire %s: %w", f.ref(n), keys.ErrRetirePrimary)
		}
		f.version(n).State = keys.StateRetired
		return nil
	})
}

func (f *file) version(n int) *fileVersion {
	if n < 1 || n > len(f.Versions) {
		return nil
	}
	return &f.Versions[n-1]
}

func (f *file) ref(n int) keys.Ref {
	return keys.Ref{Provider: ProviderType, Key: f.Key, Version: strconv.Itoa(n)}
}

func wrapAD(keyID string, version int, aad []byte) []byte {
	var b bytes.Buffer
	b.WriteString(wrapADPrefix)
	b.WriteByte(0)
	b.WriteString(keyID)
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(version))
	b.WriteByte(0)
	b.Write(aad)
	return b.Bytes()
}

// newGCM returns AES-256-GCM with random 96-bit nonces, the construction
// Go's FIPS 140-3 module approves (it works under GODEBUG=fips140=only).
func newGCM(material []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// parseVersion accepts only the canonical decimal form, so that one KEK
// version has one name ("1", never "01" or "+1").
func parseVersion(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && strconv.Itoa(n) == s
}

func newMaterial() ([]byte, error) {
	m := make([]byte, materialSize)
	if _, err := io.ReadFull(rand.Reader, m); err != nil {
		return nil, fmt.Errorf("generate key material: %w", err)
	}
	return m, nil
}

func validKeyID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("key ID must be 1 to 128 bytes, got %d", len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("key ID %q: byte %d is not one of [A-Za-z0-9._-]", id, i)
		}
	}
	return nil
}

// load reads, permission-checks and validates the keyring file.
func (k *Keyring) load() (*file, error) {
	fd, err := os.Open(k.path)
	if err != nil {
		return nil, fmt.Errorf("local keyring %s: open: %w", k.path, err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("local keyring %s: stat: %w", k.path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("local keyring %s: not a regular file (%s)", k.path, st.Mode().Type())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("local keyring %s: mode %04o lets group or others access it; run chmod 600 %s", k.path, perm, k.path)
	}
	data, err := io.ReadAll(io.LimitReader(fd, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("local keyring %s: read: %w", k.path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("local keyring %s: larger than %d bytes", k.path, maxFileSize)
	}
	f, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("local keyring %s: %w", k.path, err)
	}
	return f, nil
}

func parse(data []byte) (*file, error) {
	var f file
	if err := strictjson.Unmarshal(data, &f); err != nil {
		// json errors quote offending input only for syntax; key material
		// is base64 and never appears in a type error message.
		return nil, fmt.Errorf("decode: %w", err)
	}
	if f.Format != Format {
		return nil, fmt.Errorf("field format: got %q, want %q", f.Format, Format)
	}
	if err := validKeyID(f.Key); err != nil {
		return nil, fmt.Errorf("field key: %w", err)
	}
	if len(f.Versions) == 0 {
		return nil, errors.New("field versions: empty")
	}
	for i, v := range f.Versions {
		if v.Version != i+1 {
			return nil, fmt.Errorf("field versions[%d].version: got %d, want %d (consecutive from 1)", i, v.Version, i+1)
		}
		if v.State != keys.StateEnabled && v.State != keys.StateRetired {
			return nil, fmt.Errorf("field versions[%d].state: got %q, want enabled or retired", i, v.State)
		}
		if v.Created.IsZero() {
			return nil, fmt.Errorf("field versions[%d].created: missing", i)
		}
		if len(v.Material) != materialSize {
			return nil, fmt.Errorf("field versions[%d].material: %d bytes, want %d", i, len(v.Material), materialSize)
		}
	}
	p := f.version(f.Primary)
	if p == nil {
		return nil, fmt.Errorf("field primary: version %d does not exist", f.Primary)
	}
	if p.State != keys.StateEnabled {
		return nil, fmt.Errorf("field primary: version %d is %s, want enabled", f.Primary, p.State)
	}
	return &f, nil
}

// update applies fn to the keyring under an exclusive lock and writes the
// result atomically.
func (k *Keyring) update(fn func(*file) error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	lock, err := os.OpenFile(k.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("local keyring %s: open lock: %w", k.path, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("local keyring %s: lock: %w", k.path, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway
	k.removeLeftovers()
	f, err := k.load()
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return err
	}
	if err := k.write(f, false); err != nil {
		return fmt.Errorf("local keyring %s: %w", k.path, err)
	}
	return nil
}

// removeLeftovers deletes temporary keyring files left by a crashed
// write: they hold KEK material. Called with the lock held, when no write
// can be in progress.
func (k *Keyring) removeLeftovers() {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(k.path), tempPattern(k.path)))
	for _, m := range matches {
		os.Remove(m)
	}
}

func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

// write stores f at k.path atomically: temp file, fsync, rename (or link
// when exclusive, which fails if the file exists), fsync of the directory.
func (k *Keyring) write(f *file, exclusive bool) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(k.path)
	tmp, err := os.CreateTemp(dir, tempPattern(k.path))
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod temp file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write temp file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("fsync temp file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close temp file: %w", err)
	}
	if exclusive {
		if err := os.Link(tmpName, k.path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("keyring file already exists: %w", fs.ErrExist)
			}
			return fmt.Errorf("link into place: %w", err)
		}
	} else if err := os.Rename(tmpName, k.path); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}

package envelope

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/strictjson"
)

// KeyObjectFormat is the value of a key object's format field.
const KeyObjectFormat = "lifeboat.dev/key-object/v1"

// maxKeyObjectSize bounds a key object; real ones are a few hundred bytes.
const maxKeyObjectSize = 64 << 10

// KeyObject is a backup's data key wrapped by one KEK version
// (docs/format.md §3).
type KeyObject struct {
	Format    string    `json:"format"`
	Backup    string    `json:"backup"`
	DataKeyID string    `json:"dataKeyId"`
	KEK       keys.Ref  `json:"kek"`
	Wrapped   []byte    `json:"wrapped"`
	Created   time.Time `json:"created"`
}

// Wrapper wraps data keys; keys.Provider satisfies it.
type Wrapper interface {
	Wrap(ctx context.Context, dataKey, aad []byte) (keys.Wrapped, error)
}

// Unwrapper unwraps data keys; keys.Provider satisfies it.
type Unwrapper interface {
	Unwrap(ctx context.Context, w keys.Wrapped, aad []byte) ([]byte, error)
}

// WrapContext is the associated context every provider authenticates when
// wrapping backup's data key, binding the wrapped key to that backup.
func WrapContext(backup string) []byte {
	return []byte("lifeboat.dev/dek/v1\x00" + backup)
}

// SealKey wraps key for backup with w's primary KEK version.
func SealKey(ctx context.Context, w Wrapper, backup string, key DataKey, now time.Time) (KeyObject, error) {
	if err := validName("backup", backup); err != nil {
		return KeyObject{}, fmt.Errorf("wrap data key: %w", err)
	}
	wr, err := w.Wrap(ctx, key.Bytes(), WrapContext(backup))
	if err != nil {
		return KeyObject{}, fmt.Errorf("wrap data key of backup %q: %w", backup, err)
	}
	return KeyObject{
		Format: KeyObjectFormat, Backup: backup, DataKeyID: key.ID(),
		KEK: wr.KEK, Wrapped: wr.Ciphertext, Created: now.UTC(),
	}, nil
}

// OpenKey unwraps a key object read for backup and checks that the key is
// the one the object names. The wrap context comes from backup, the caller's
// own knowledge, never from the object, so a key object copied unchanged
// from another backup does not unwrap.
func OpenKey(ctx context.Context, u Unwrapper, backup string, ko KeyObject) (DataKey, error) {
	if ko.Backup != backup {
		return DataKey{}, fmt.Errorf("unwrap data key of backup %q: key object names backup %q: %w", backup, ko.Backup, ErrKeyObject)
	}
	b, err := u.Unwrap(ctx, keys.Wrapped{KEK: ko.KEK, Ciphertext: ko.Wrapped}, WrapContext(backup))
	if err != nil {
		return DataKey{}, fmt.Errorf("unwrap data key of backup %q with %s: %w", ko.Backup, ko.KEK, err)
	}
	k, err := DataKeyFromBytes(b)
	clear(b)
	if err != nil {
		return DataKey{}, fmt.Errorf("unwrap data key of backup %q with %s: %w", ko.Backup, ko.KEK, err)
	}
	if k.ID() != ko.DataKeyID {
		k.Destroy()
		return DataKey{}, fmt.Errorf("unwrap data key of backup %q with %s: %w", ko.Backup, ko.KEK, ErrWrongKey)
	}
	return k, nil
}

// Name returns the object name of the key object within the backup's keys/
// directory: a function of the KEK reference alone (docs/format.md §3).
func (ko KeyObject) Name() string { return KeyObjectName(ko.KEK) }

// KeyObjectName returns the name of the key object wrapped by ref.
func KeyObjectName(ref keys.Ref) string {
	return KeyObjectNameAt(ref, "")
}

// KeyObjectNameAt returns the name of the key object wrapped by ref under
// the material generation generation (keys.Version.Generation;
// docs/format.md §3.2). An empty generation gives
// KeyObjectName's name, so key objects written before generations existed
// keep their names. A provider that rotates material under an unchanged
// version needs the generation: without it a rewrap would take the name
// of the object it rewraps.
func KeyObjectNameAt(ref keys.Ref, generation string) string {
	base := sanitize(ref.Provider) + "-" + sanitize(ref.Version) + "-" + shortHash(ref.Provider, ref.Key, ref.Version)
	if generation == "" {
		return base + ".json"
	}
	return base + "-g" + shortHash(ref.Provider, ref.Key, ref.Version, generation) + ".json"
}

// shortHash is the first 12 hex digits of SHA-256 of parts joined by NUL.
func shortHash(parts ...string) string {
	h := sha256.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func sanitize(s string) string {
	b := []byte(s)
	if len(b) > 64 {
		b = b[:64]
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// Marshal encodes the key object as JSON.
func (ko KeyObject) Marshal() ([]byte, error) {
	if err := ko.validate(); err != nil {
		return nil, fmt.Errorf("encode key object: %w", err)
	}
	b, err := json.MarshalIndent(ko, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode key object: %w", err)
	}
	return append(b, '\n'), nil
}

// ReadKeyObject decodes and validates a key object.
func ReadKeyObject(r io.Reader) (KeyObject, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyObjectSize+1))
	if err != nil {
		return KeyObject{}, fmt.Errorf("read key object: %w", err)
	}
	if len(data) > maxKeyObjectSize {
		return KeyObject{}, fmt.Errorf("read key object: larger than %d bytes: %w", maxKeyObjectSize, ErrKeyObject)
	}
	var ko KeyObject
	if err := strictjson.Unmarshal(data, &ko); err != nil {
		return KeyObject{}, fmt.Errorf("decode key object: %w: %w", err, ErrKeyObject)
	}
	if err := ko.validate(); err != nil {
		return KeyObject{}, fmt.Errorf("decode key object: %w", err)
	}
	return ko, nil
}

func (ko KeyObject) validate() error {
	if ko.Format != KeyObjectFormat {
		return fmt.Errorf("field format: got %q, want %q: %w", ko.Format, KeyObjectFormat, ErrKeyObject)
	}
	if err := validName("backup", ko.Backup); err != nil {
		return fmt.Errorf("%w: %w", err, ErrKeyObject)
	}
	if !isKeyID(ko.DataKeyID) {
		return fmt.Errorf("field dataKeyId: want 32 lowercase hex digits: %w", ErrKeyObject)
	}
	if ko.KEK.Provider == "" || ko.KEK.Key == "" || ko.KEK.Version == "" {
		return fmt.Errorf("field kek: provider, key and version are required: %w", ErrKeyObject)
	}
	if len(ko.Wrapped) == 0 {
		return fmt.Errorf("field wrapped: empty: %w", ErrKeyObject)
	}
	if ko.Created.IsZero() {
		return fmt.Errorf("field created: missing: %w", ErrKeyObject)
	}
	return nil
}

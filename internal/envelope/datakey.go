package envelope

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// DataKeySize is the length of a data key in bytes (AES-256).
const DataKeySize = 32

const dataKeyIDLabel = "lifeboat.dev/data-key-id/v1"

// DataKey is a backup's data key. Its String and Format methods print only
// its ID, so a DataKey passed to a logger or fmt never leaks the key.
type DataKey struct {
	b []byte
}

// NewDataKey returns a fresh random data key.
func NewDataKey() (DataKey, error) {
	b := make([]byte, DataKeySize)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return DataKey{}, fmt.Errorf("generate data key: %w", err)
	}
	return DataKey{b: b}, nil
}

// DataKeyFromBytes wraps unwrapped key material. It copies b.
func DataKeyFromBytes(b []byte) (DataKey, error) {
	if len(b) != DataKeySize {
		return DataKey{}, fmt.Errorf("data key is %d bytes, want %d", len(b), DataKeySize)
	}
	return DataKey{b: append([]byte(nil), b...)}, nil
}

// Bytes returns the key material, for wrapping by a KEK provider. Never log
// it.
func (k DataKey) Bytes() []byte { return k.b }

// Valid reports whether k holds a key.
func (k DataKey) Valid() bool { return len(k.b) == DataKeySize }

// ID is HMAC-SHA256(key, "lifeboat.dev/data-key-id/v1") cut to 16 bytes, in
// hex: it identifies the key without revealing it (docs/format.md §2.1).
func (k DataKey) ID() string {
	m := hmac.New(sha256.New, k.b)
	m.Write([]byte(dataKeyIDLabel))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// String prints the key's ID, never its material.
func (k DataKey) String() string { return "DataKey(" + k.ID() + ")" }

// Format makes every fmt verb print String.
func (k DataKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// Destroy overwrites the key material in memory. Go may have copied it
// elsewhere; this narrows, but does not close, the window.
func (k *DataKey) Destroy() {
	clear(k.b)
	k.b = nil
}

package envelope

import (
	"crypto/hkdf"
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
// Copies of a DataKey share one key: Destroy on any copy destroys it for
// all of them.
type DataKey struct {
	m *material
}

type material struct {
	b         [DataKeySize]byte
	destroyed bool
}

// NewDataKey returns a fresh random data key.
func NewDataKey() (DataKey, error) {
	m := new(material)
	if _, err := io.ReadFull(rand.Reader, m.b[:]); err != nil {
		return DataKey{}, fmt.Errorf("generate data key: %w", err)
	}
	return DataKey{m: m}, nil
}

// DataKeyFromBytes wraps unwrapped key material. It copies b.
func DataKeyFromBytes(b []byte) (DataKey, error) {
	if len(b) != DataKeySize {
		return DataKey{}, fmt.Errorf("data key is %d bytes, want %d", len(b), DataKeySize)
	}
	m := new(material)
	copy(m.b[:], b)
	return DataKey{m: m}, nil
}

// Bytes returns the key material, for wrapping by a KEK provider; nil once
// destroyed. Never log it, never keep it.
func (k DataKey) Bytes() []byte {
	if !k.Valid() {
		return nil
	}
	return k.m.b[:]
}

// Valid reports whether k holds a key that has not been destroyed.
func (k DataKey) Valid() bool { return k.m != nil && !k.m.destroyed }

// ID is HMAC-SHA256(key, "lifeboat.dev/data-key-id/v1") cut to 16 bytes, in
// hex: it identifies the key without revealing it (docs/format.md §2.1).
// It is empty for a destroyed or missing key.
func (k DataKey) ID() string {
	if !k.Valid() {
		return ""
	}
	m := hmac.New(sha256.New, k.m.b[:])
	m.Write([]byte(dataKeyIDLabel))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// String prints the key's ID, never its material.
func (k DataKey) String() string { return "DataKey(" + k.ID() + ")" }

// Format makes every fmt verb print String.
func (k DataKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// Destroy overwrites the key material in memory, for every copy of k.
// Go may have copied the bytes elsewhere (a provider's buffers, the AES key
// schedule); this narrows, but does not close, the window.
func (k DataKey) Destroy() {
	if k.m != nil {
		clear(k.m.b[:])
		k.m.destroyed = true
	}
}

// MAC returns HMAC-SHA256 over msg under the key derived from k for one
// purpose, HKDF-SHA256(secret = k, salt = empty, info, length 32) (RFC
// 5869): a backup's manifest is authenticated with info
// "lifeboat.dev/manifest-mac/v2" (docs/format.md §6). The derived key never
// leaves this function.
func (k DataKey) MAC(info string, msg []byte) ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("MAC %s: no data key", info)
	}
	mk, err := hkdf.Key(sha256.New, k.m.b[:], nil, info, DataKeySize)
	if err != nil {
		return nil, fmt.Errorf("MAC %s: derive key: %w", info, err)
	}
	defer clear(mk)
	m := hmac.New(sha256.New, mk)
	m.Write(msg)
	return m.Sum(nil), nil
}

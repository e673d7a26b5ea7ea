package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Inventory describes an etcd keyspace at one revision (docs/format.md
// §6), so that a drill can prove a restore complete without decrypting
// anything: values are hashed as stored.
type Inventory struct {
	// Keys is the total number of keys.
	Keys int64 `json:"keys"`
	// Prefixes counts keys per resource prefix (see PrefixOf), e.g.
	// "/registry/secrets/": 12.
	Prefixes map[string]int64 `json:"prefixes"`
	// Digest is the hex SHA-256 over every key in key order: with
	// Version InventoryVersion, each as len(key) ‖ key ‖ SHA-256(value);
	// with Version 0 (older manifests), each as len(key) ‖ key ‖
	// len(value) ‖ value. Lengths are 8 bytes big-endian.
	Digest string `json:"digest"`
	// Version is InventoryVersion, or 0 in manifests written before it
	// (docs/format.md §6).
	Version int `json:"version,omitempty"`
}

// InventoryVersion is the inventory digest's current definition: each
// value enters it as its SHA-256, so that it can be computed from a
// snapshot streaming past in page order, one digest held per key.
const InventoryVersion = 2

// PrefixOf returns the inventory prefix a key counts under: the key up to
// and including its third "/" (/registry/secrets/ for
// /registry/secrets/ns/name), or the whole key when it has fewer than three.
// Bytes that are not valid UTF-8 become U+FFFD, so the prefix survives a
// JSON round trip unchanged.
func PrefixOf(key []byte) string {
	n := 0
	for i, c := range key {
		if c == '/' {
			n++
			if n == 3 {
				return strings.ToValidUTF8(string(key[:i+1]), "\uFFFD")
			}
		}
	}
	return strings.ToValidUTF8(string(key), "\uFFFD")
}

// InventoryBuilder computes an Inventory from key-value pairs given in
// ascending key order, in constant memory (plus one count per prefix).
// The zero value is not usable; call NewInventoryBuilder.
type InventoryBuilder struct {
	version  int
	h        hash.Hash
	vh       hash.Hash
	keys     int64
	prefixes map[string]int64
	last     []byte
	lenBuf   [8]byte
	sumBuf   [sha256.Size]byte
}

// NewInventoryBuilder returns an empty builder for a digest of the given
// version: InventoryVersion, or 0 to compare with an older manifest.
func NewInventoryBuilder(version int) (*InventoryBuilder, error) {
	if version != 0 && version != InventoryVersion {
		return nil, fmt.Errorf("inventory: version %d is not known (want %d, or none)", version, InventoryVersion)
	}
	return &InventoryBuilder{version: version, h: sha256.New(), vh: sha256.New(), prefixes: make(map[string]int64)}, nil
}

// Add counts and hashes one key-value pair. Keys must come in strictly
// ascending byte order; Add refuses one that does not, since the digest
// would then not be comparable.
func (b *InventoryBuilder) Add(key, value []byte) error {
	if b.version == 0 {
		if err := b.addKey(key); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(b.lenBuf[:], uint64(len(value)))
		b.h.Write(b.lenBuf[:])
		b.h.Write(value)
		return nil
	}
	b.vh.Reset()
	b.vh.Write(value)
	return b.AddSum(key, b.vh.Sum(b.sumBuf[:0]))
}

// AddSum counts and hashes one key given its value's SHA-256, for a
// version 2 digest.
func (b *InventoryBuilder) AddSum(key, valueSHA256 []byte) error {
	if b.version != InventoryVersion {
		return fmt.Errorf("inventory: a version %d digest needs the values, not their digests", b.version)
	}
	if len(valueSHA256) != sha256.Size {
		return fmt.Errorf("inventory: key %q: value digest is %d bytes, want %d", key, len(valueSHA256), sha256.Size)
	}
	if err := b.addKey(key); err != nil {
		return err
	}
	b.h.Write(valueSHA256)
	return nil
}

func (b *InventoryBuilder) addKey(key []byte) error {
	if b.keys > 0 && bytes.Compare(key, b.last) <= 0 {
		return fmt.Errorf("inventory: key %q does not follow %q in ascending order", key, b.last)
	}
	b.last = append(b.last[:0], key...)
	b.keys++
	b.prefixes[PrefixOf(key)]++
	binary.BigEndian.PutUint64(b.lenBuf[:], uint64(len(key)))
	b.h.Write(b.lenBuf[:])
	b.h.Write(key)
	return nil
}

// Inventory returns the inventory of the pairs added so far.
func (b *InventoryBuilder) Inventory() Inventory {
	p := make(map[string]int64, len(b.prefixes))
	for k, v := range b.prefixes {
		p[k] = v
	}
	return Inventory{Keys: b.keys, Prefixes: p, Digest: hex.EncodeToString(b.h.Sum(nil)), Version: b.version}
}

func (inv *Inventory) validate() error {
	if inv.Version != 0 && inv.Version != InventoryVersion {
		return fmt.Errorf("version: %d is not known (want %d, or none)", inv.Version, InventoryVersion)
	}
	if inv.Keys < 0 {
		return fmt.Errorf("keys: %d is negative", inv.Keys)
	}
	if !IsSHA256Hex(inv.Digest) {
		return fmt.Errorf("digest: want 64 lowercase hex digits")
	}
	var sum int64
	for p, n := range inv.Prefixes {
		if n <= 0 {
			return fmt.Errorf("prefixes[%q]: count %d is not positive", p, n)
		}
		sum += n
	}
	if sum != inv.Keys {
		return fmt.Errorf("prefixes: counts add up to %d, keys says %d", sum, inv.Keys)
	}
	return nil
}

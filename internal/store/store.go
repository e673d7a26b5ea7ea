package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"
)

// Sentinel errors. Implementations wrap them with %w so callers decide with
// errors.Is; the wrapping message names the store and the object key.
var (
	// ErrExists is returned by Put when an object with the key already
	// exists. Nothing is written and the existing object is untouched.
	ErrExists = errors.New("object already exists")
	// ErrNotFound is returned by Get, Stat and Delete for a missing key.
	ErrNotFound = errors.New("object not found")
	// ErrRetained is returned by Delete before the object's retention ends,
	// and when its retention is unknown (unknown counts as forever).
	ErrRetained = errors.New("object is under retention")
	// ErrReadOnly is returned by Put and Delete on a store opened read-only.
	ErrReadOnly = errors.New("store is read-only")
	// ErrInvalidKey is returned for a key that ValidateKey rejects.
	ErrInvalidKey = errors.New("invalid object key")
	// ErrIntegrity is returned when stored bytes do not match the digest
	// recorded at write time, or when Put's expected digest does not match
	// the bytes received.
	ErrIntegrity = errors.New("object integrity check failed")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	// Key is the object's key, as given to Put.
	Key string `json:"key"`
	// Size is the object's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the lowercase hex SHA-256 of the object's bytes as recorded
	// at write time; empty when the store cannot say.
	SHA256 string `json:"sha256,omitempty"`
	// Created is when the object was committed.
	Created time.Time `json:"created"`
	// RetainUntil is the end of the object's retention. The zero time means
	// the retention is unknown, which every store treats as "forever".
	RetainUntil time.Time `json:"retainUntil,omitzero"`
}

// PutOptions are the options of one Put.
type PutOptions struct {
	// RetainUntil is the end of the object's retention. It is required:
	// Put refuses a zero time. Until then the object can be neither
	// overwritten nor deleted.
	RetainUntil time.Time
	// SHA256, when set, is the lowercase hex SHA-256 the bytes must have;
	// on a mismatch nothing is committed and Put returns ErrIntegrity.
	SHA256 string
	// Size, when positive, is the expected length in bytes (a hint that
	// lets a store choose single-part or multipart upload); a mismatch is
	// an error and nothing is committed.
	Size int64
}

// GetOptions are the options of one Get.
type GetOptions struct {
	// Offset is where to start reading, so an interrupted read can resume.
	// A read from offset 0 is checked against the recorded digest at EOF.
	Offset int64
}

// Store is a write-once object store. Every method that does I/O takes a
// context first. No method ever replaces an object's bytes, and Delete is
// refused until the object's retention ends.
//
// Put commits atomically: either the whole stream is stored under key and
// visible to Get, Stat and List, or nothing is (a failed reader, a
// cancelled context or a crash leave no object behind).
type Store interface {
	// Put stores the bytes read from r under key. It fails with ErrExists
	// if key is taken.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error)
	// Get opens the object for reading. A read from offset 0 returns
	// ErrIntegrity at EOF if the bytes differ from the recorded SHA-256.
	Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, error)
	// Stat describes the object.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List yields the objects whose keys start with prefix, in
	// lexicographic key order. Iteration stops at the first error, which
	// is yielded with a zero ObjectInfo.
	List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error]
	// Delete removes the object once its retention has ended. Before
	// then it returns ErrRetained and changes nothing.
	Delete(ctx context.Context, key string) error
}

// MaxKeyLength is the longest key a store accepts (S3's limit).
const MaxKeyLength = 1024

// ValidateKey reports whether key is a valid object key: 1 to MaxKeyLength
// bytes of the characters [A-Za-z0-9._-] and "/", no leading or trailing
// "/", no empty, "." or ".." segment. Every store calls it, so a key that
// works on one store works on all of them.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > MaxKeyLength {
		return fmt.Errorf("%w: key is %d bytes, longer than %d", ErrInvalidKey, len(key), MaxKeyLength)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-', c == '/':
		default:
			return fmt.Errorf("%w: %q: byte %d (%q) is not one of [A-Za-z0-9._-/]", ErrInvalidKey, key, i, c)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "", ".", "..":
			return fmt.Errorf("%w: %q: empty, \".\" or \"..\" path segment", ErrInvalidKey, key)
		}
	}
	return nil
}

// ValidatePrefix reports whether prefix may be passed to List: empty, or a
// string that would be a valid key, optionally ending in "/".
func ValidatePrefix(prefix string) error {
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		if prefix == "" {
			return nil
		}
		return fmt.Errorf("%w: prefix %q", ErrInvalidKey, prefix)
	}
	if err := ValidateKey(p); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

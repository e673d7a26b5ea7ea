package keys

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Providers wrap them with %w in an error that names the
// provider, the key and, where there is one, the version.
var (
	// ErrVersionRetired: the KEK version exists but may no longer unwrap.
	ErrVersionRetired = errors.New("key version is retired")
	// ErrVersionNotFound: the provider has no such KEK version.
	ErrVersionNotFound = errors.New("key version not found")
	// ErrKeyNotFound: the provider has no such key.
	ErrKeyNotFound = errors.New("key not found")
	// ErrAccessDenied: the provider refused the operation.
	ErrAccessDenied = errors.New("access to key denied")
	// ErrUnwrap: the wrapped key failed authentication (tampered, wrong key,
	// or wrong context).
	ErrUnwrap = errors.New("wrapped key failed authentication")
	// ErrRetirePrimary: the primary (current) version cannot be retired.
	ErrRetirePrimary = errors.New("cannot retire the primary key version")
	// ErrKeyExists: a Creator found the key already there and created
	// nothing; a second create must never swap the key backups are
	// wrapped under.
	ErrKeyExists = errors.New("the key-encryption key already exists; nothing was created")
)

// Ref names one KEK version: which provider type, which key, which version.
// It is safe to log: it holds no key material.
type Ref struct {
	Provider string `json:"provider"`
	Key      string `json:"key"`
	Version  string `json:"version"`
}

// String formats the reference as provider:key@version.
func (r Ref) String() string { return fmt.Sprintf("%s:%s@%s", r.Provider, r.Key, r.Version) }

// Wrapped is a data key wrapped by one KEK version. Ciphertext is opaque to
// everyone but the provider.
type Wrapped struct {
	KEK        Ref
	Ciphertext []byte
}

// VersionState is the lifecycle state of a KEK version.
type VersionState string

// The states a KEK version can be in.
const (
	StateEnabled VersionState = "enabled"
	StateRetired VersionState = "retired"
)

// Version describes one KEK version.
type Version struct {
	Ref     Ref          `json:"ref"`
	Created time.Time    `json:"created"`
	State   VersionState `json:"state"`
	Primary bool         `json:"primary"`
	// Generation identifies the version's current key material, for
	// providers that rotate material under an unchanged version (awskms
	// with the managed strategy): it changes with every such rotation.
	// Empty for providers whose every rotation is a new version.
	Generation string `json:"generation,omitempty"`
}

// Provider is a key-encryption-key provider: it wraps and unwraps data
// keys, and manages KEK versions. Implementations live one per package
// (keys/local, keys/awskms, keys/vault) and pass keys/keystest.
//
// The context argument of Wrap and Unwrap (aad) is authenticated: a
// wrapped key only unwraps with the same aad. Providers never log or return
// plaintext key material except Unwrap's result.
type Provider interface {
	// Wrap encrypts dataKey under the primary KEK version.
	Wrap(ctx context.Context, dataKey, aad []byte) (Wrapped, error)
	// Unwrap decrypts a wrapped key. A retired version fails with
	// ErrVersionRetired, an unknown one with ErrVersionNotFound.
	Unwrap(ctx context.Context, w Wrapped, aad []byte) ([]byte, error)
	// Rotate creates a new KEK version and makes it primary.
	Rotate(ctx context.Context) (Version, error)
	// Versions lists the KEK versions, oldest first.
	Versions(ctx context.Context) ([]Version, error)
	// Retire stops a version from unwrapping. The primary cannot be
	// retired (ErrRetirePrimary).
	Retire(ctx context.Context, version string) error
}

// Creator is implemented by providers that can create the KEK they name
// (awskms with an alias). Create fails with ErrKeyExists, creating
// nothing, when the key is already there.
type Creator interface {
	Create(ctx context.Context) (Version, error)
}

// Package keys defines the key-encryption-key (KEK) provider interface that
// wraps and unwraps lifeboat's per-backup data keys, and the errors and
// value types shared by every provider.
//
// Each provider is its own package (keys/local now; keys/awskms and
// keys/vault later) and passes the conformance suite in keys/keystest.
// Rotation and retirement policy (when a version may be retired) lives in
// the rotation package, not here: a provider only does what it is told.
package keys

// Package envelope turns one artifact's bytes into lifeboat's encrypted
// artifact format and back, as streams with bounded memory: zstd
// compression, then Tink's streaming AEAD AES-256-GCM-HKDF under the
// backup's data key, behind a versioned cleartext header. It also defines
// the key objects that hold a backup's data key wrapped by a KEK version.
//
// The byte formats are specified in docs/format.md §2 and §3; this package
// follows that document.
//
// Decryption releases plaintext only after its segment's tag has verified,
// but a stream cut at a segment boundary is detected at its end, so callers
// trust output only once Read has returned io.EOF without error. Nothing in
// this package logs, and no error contains key material or plaintext.
package envelope

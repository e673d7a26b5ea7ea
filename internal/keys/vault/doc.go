// Package vault is a KEK provider on one key of HashiCorp Vault's transit
// secrets engine (github.com/hashicorp/vault/api). The key material never
// leaves Vault: lifeboat sends a data key to transit's encrypt endpoint and
// keeps the returned "vault:vN:..." ciphertext as the wrapped key.
//
// # References
//
// A wrapped key's reference is {Provider: "vault", Key: "<mount>/<key>",
// Version: "N"}, N being the transit key version in the ciphertext's
// "vault:vN:" prefix. Unwrap and Rewrap refuse a ciphertext whose prefix
// names another version than the reference (keys.ErrUnwrap), and refuse a
// reference to another key (keys.ErrKeyNotFound).
//
// # Derived keys and context binding
//
// docs/format.md §3 requires every wrap to authenticate the context
// "lifeboat.dev/dek/v1 NUL <backup-id>". Transit does that only for keys
// created with derived=true: the context (sent as base64 of the aad) feeds
// the per-request key derivation, so a ciphertext decrypts only with the
// context it was made with. For a key created without derivation transit
// silently ignores the context, so this package refuses such keys: New,
// and every Wrap (which reads the key first), fail with ErrNotDerived and
// say how to create a suitable key. Derivation cannot be enabled on an
// existing key. Convergent keys are refused too (their wraps are
// deterministic). A derived key needs a non-empty context, so Wrap refuses
// an empty aad.
//
// CreateKey (for tests and `lifeboat keys init`) creates an aes256-gcm96
// key with derived=true and, unless KeySpec says otherwise, exportable and
// allow_plaintext_backup false. Backing the key itself up with transit's
// backup endpoint needs both set at creation; Vault never unsets them.
//
// Wrap reads the key before encrypting, also because transit's encrypt
// creates a missing key when the token may create: a token for lifeboat
// should have "read" on <mount>/keys/<key>, "update" (not "create") on
// <mount>/encrypt/<key>, <mount>/decrypt/<key> and <mount>/rewrap/<key>,
// and, for rotation, "update" on <mount>/keys/<key>/rotate and
// <mount>/keys/<key>/config.
//
// # Versions, rotation and retirement
//
// Rotate calls transit's rotate; the new latest_version is the primary,
// which encrypt uses (min_encryption_version, if set, only limits explicit
// key_version requests, which lifeboat does not make). Versions lists the
// key's versions oldest first from the key's metadata.
//
// Vault has no per-version state: a version is retired when it is below
// the key's min_decryption_version. Retire(v) therefore sets
// min_decryption_version to v+1, which retires v AND EVERY OLDER VERSION.
// Callers (internal/rotation) must only retire v once no backup still
// depends on v or any older version. The latest version cannot be retired
// (keys.ErrRetirePrimary); retiring an already retired version does
// nothing. Vault moves versions below min_decryption_version to an archive
// and stops reporting their creation times, so Versions reports retired
// versions with a zero Created. An operator can lower
// min_decryption_version again to re-enable them, until someone trims the
// key (min_available_version), which deletes their material; trimmed
// versions are not listed and are reported as keys.ErrVersionNotFound.
//
// Errors: a version below min_decryption_version fails with
// keys.ErrVersionRetired, one above latest_version with
// keys.ErrVersionNotFound, a bad ciphertext or context with keys.ErrUnwrap,
// HTTP 403 with keys.ErrAccessDenied, and a missing key with
// keys.ErrKeyNotFound. Every error names the provider, key and version
// (vault:<mount>/<key>@<version>) and Vault's own message; none contains
// the data key or the token.
//
// # Rewrap
//
// Rewrap uses transit's rewrap endpoint: Vault decrypts the ciphertext and
// re-encrypts it under the latest version with the same context, so no
// plaintext data key reaches lifeboat. internal/rotation uses it to move
// key objects to a new version before retiring old ones.
//
// # Token
//
// Options take the token directly or as a file (re-read before every
// operation, so a Vault Agent sink's renewed token is picked up). The
// constructors read no VAULT_* environment variables (the CLI reads
// VAULT_TOKEN and passes it in) and never log the token.
package vault

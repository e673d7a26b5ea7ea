// Package vault takes a vault source of a backup plan: HashiCorp Vault's
// transit keys (with a canary each), its integrated-storage (raft)
// snapshot, and KV version 2 secrets. The artifact formats are in
// docs/format.md §6.3.
//
// # Transit keys
//
// Transit writes every named key's backup (GET <mount>/backup/<name>) into
// one JSON artifact, vault-transit.json. Vault hands a key's backup out only
// when the key was made exportable and allows plaintext backup, so each
// key's configuration is read first and a key lacking either is refused,
// naming it, with the commands that fix it:
//
//	vault write <mount>/keys/<name>/config exportable=true allow_plaintext_backup=true
//
// (both can only ever be turned on; a new key can be created with them:
// vault write <mount>/keys/<name> type=aes256-gcm96 exportable=true
// allow_plaintext_backup=true). Keys that cannot encrypt (signing-only and
// HMAC keys) are refused too: each key is proved by a canary, 32 random
// bytes encrypted under the key at backup time. The manifest records the
// canary's ciphertext and the SHA-256 of its plaintext; a derived key's
// canary is encrypted with the context CanaryContext(backupID, key), which
// is recorded as well. A drill restores the keys into a scratch Vault and
// decrypts the canaries (internal/scratch/vault).
//
// # Raft snapshot
//
// RaftSnapshot checks with sys/storage/raft/configuration that the server
// uses integrated storage (ErrNotRaft otherwise) and returns the stream of
// sys/storage/raft/snapshot, unbuffered. The stream ends in io.EOF only
// when the gzip stream ended with a good CRC and its tar held meta.json and
// state.bin whose SHA-256, computed in passing, are the ones its
// SHA256SUMS member lists, and ended with a non-empty SHA256SUMS.sealed
// (which needs Vault's seal to check). A mismatch wraps ErrSnapshotCorrupt
// and names the member.
//
// # KV version 2
//
// KV lists each "mount/path" recursively (LIST <mount>/metadata/...),
// reads every secret's current version (<mount>/data/...) and streams them
// as JSON, vault-kv.json. The mount is found with
// sys/internal/ui/mounts/<path>; a path on a KV version 1 mount, on another
// engine, or on no mount is refused naming the path.
//
// # Secrets
//
// The token comes from Options (the command line reads VAULT_TOKEN or the
// plan's tokenFile); no VAULT_* variable is read here, and the HTTP client
// verifies TLS, uses no proxy and follows no redirects
// (keys/vault.NewAPIClient). Nothing secret is logged or put in an error:
// not the token, not a key backup, a canary or a secret's value. Canary
// plaintexts, key backups and secret values pass through byte slices that
// are zeroed after use; this is best effort, as the HTTP stack keeps its
// own buffers.
//
// Errors name the Vault address, the step, and the mount, key or path; a
// 403 wraps ErrPermissionDenied and says "permission denied". Logs name
// the plan's KV paths with counts, never a secret's path under them; an
// error about one secret names its path, never anything of its value
// (DecodeError describes malformed JSON without quoting it).
//
// PUTs whose answer is read raw go through PutRaw, never
// Logical().WriteRawWithContext, which ends its context before the body
// can be read (fatal over HTTP/2).
package vault

// Package awskms is a KEK provider on AWS KMS (aws-sdk-go-v2). It wraps a
// backup's data key with KMS Encrypt and unwraps it with KMS Decrypt; the
// key material never leaves KMS.
//
// # Wrapping and the context binding
//
// Wrap calls Encrypt with the encryption context
//
//	{"lifeboat.dev/context": base64(aad)}
//
// (standard padded base64; an empty aad sends no encryption context).
// lifeboat's aad for a data key is `lifeboat.dev/dek/v1 NUL <backup-id>`
// (docs/format.md §3), so KMS refuses to decrypt a key object copied to
// another backup, and the backup ID shows in CloudTrail's record of every
// Decrypt. The returned reference is
//
//	{Provider: "awskms", Key: <alias or key as configured>, Version: <KMS key ID>}
//
// where the version is the bare key ID (the UUID, or mrk-… for a
// multi-Region key) of the KMS key that Encrypt used, taken from Encrypt's
// answer, so a rotation racing the wrap cannot mislabel it. The bare ID
// keeps key object names short and lets a multi-Region replica decrypt in
// its own region. Unwrap calls Decrypt with KeyId set to that version, so
// KMS refuses a ciphertext of any other key (IncorrectKeyException).
//
// The stored ciphertext is lifeboat's framing around KMS's blob:
//
//	0x01 || KMS CiphertextBlob || HMAC-SHA256(dataKey, "lifeboat.dev/awskms-wrap/v1" NUL blob)
//
// AWS KMS authenticates its whole blob, but KMS-compatible servers need
// not: local-kms ignores the key ARN at the head of its blob when Decrypt
// names the key, so a changed byte there still decrypts. The trailing
// commitment, checked after Decrypt, makes any change to the stored bytes
// fail with keys.ErrUnwrap whatever the server. It is keyed by the data key
// and reveals nothing about it. To decrypt by hand (aws kms decrypt), strip
// the first byte and the last 32.
//
// Errors name the provider, the key and the version (provider:key@version)
// and wrap the keys sentinels: InvalidCiphertextException,
// IncorrectKeyException and a wrong context → ErrUnwrap; DisabledException,
// or KMSInvalidStateException for a key that DescribeKey then shows
// Disabled or PendingDeletion → ErrVersionRetired; NotFoundException →
// ErrVersionNotFound for a version, ErrKeyNotFound for the configured alias
// or key; AccessDeniedException → ErrAccessDenied. No error carries
// plaintext: Wrap refuses data keys over 1 KiB before calling KMS (servers
// have echoed oversize plaintext in validation errors) and withholds any KMS
// message that contains the data key.
//
// # Strategy "alias"
//
// Options.Alias names an alias (alias/<name>). Each KEK version is its own
// KMS key; the alias points at the primary.
//
//   - Rotate: CreateKey (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) with the tags
//     lifeboat.dev/alias=<alias>, lifeboat.dev/created=<RFC 3339 time> and
//     lifeboat.dev/seq=<n>, then UpdateAlias to it (CreateAlias for the
//     first version). If moving the alias fails, the alias is read back
//     first, since the failure may be ambiguous (a lost response, a retry
//     answered AlreadyExistsException): if it targets the new key, the
//     change happened and the rotation succeeds; if it targets another key
//     or none, the new key (which wrapped nothing) is untagged and
//     scheduled for deletion, best effort; if it cannot be read, the new
//     key is left alone and the error names it.
//   - Versions: ListKeys, and ListResourceTags of each key, finding the keys
//     tagged with the alias, ordered by seq, then created, then key ID; plus
//     the alias's target if it is untagged (it is the primary). State comes
//     from DescribeKey: Enabled is enabled; Disabled, PendingDeletion and
//     every other state are retired. Listing reads the tags of every key in
//     the account and region, so it costs one call per key there.
//   - Retire: DisableKey of a version's KMS key. The alias's target cannot
//     be retired (keys.ErrRetirePrimary); a key not tagged with the alias is
//     keys.ErrVersionNotFound. Re-enabling the key (EnableKey) undoes it.
//     lifeboat never schedules a version's key for deletion.
//
// New makes no KMS call and creates nothing. (*Provider).Bootstrap creates
// the first key and the alias when the alias does not exist, and adopts an
// existing alias's target by tagging it as version 1; it is idempotent. It
// is separate so that only the process set up to administer keys needs
// kms:CreateKey and kms:CreateAlias, and so that a misspelt alias fails with
// keys.ErrKeyNotFound rather than silently creating a key that backups then
// get wrapped under.
//
// IAM: kms:Encrypt (through the alias), kms:Decrypt, kms:DescribeKey,
// kms:ListKeys, kms:ListResourceTags; for Rotate and Bootstrap also
// kms:CreateKey, kms:TagResource, kms:CreateAlias, kms:UpdateAlias (and for
// the cleanup of a failed rotation kms:UntagResource, kms:ScheduleKeyDeletion);
// for Retire kms:DisableKey.
//
// # Strategy "managed"
//
// Options.KeyID names one KMS key (key ID, ARN or alias). KMS rotates its
// material under the same key ID, automatically (EnableKeyRotation) or on
// demand; every past material stays usable for Decrypt, chosen by KMS from
// the blob. KMS does not expose material versions to clients, so:
//
//   - Versions returns a single version, the key itself (Version = its key
//     ID), always primary.
//   - Its Created is when its current material became current: the newest
//     RotationDate in ListKeyRotations, or the key's CreationDate when it
//     was never rotated (or the endpoint does not implement
//     ListKeyRotations, HTTP 501). rotation.every is measured from it.
//     Any other ListKeyRotations error fails Versions (without
//     kms:ListKeyRotations: keys.ErrAccessDenied).
//   - Its Generation is the key's CurrentKeyMaterialId (docs/format.md
//     §3.2).
//   - Rotate refuses a key for which KMS reports no CurrentKeyMaterialId
//     (errors.ErrUnsupported, before calling RotateKeyOnDemand). Otherwise
//     it calls RotateKeyOnDemand, which KMS completes asynchronously, and
//     polls DescribeKey (up to 2 minutes, backing off from 1 s to 15 s)
//     until CurrentKeyMaterialId changes; if it does not, or ctx ends,
//     Rotate fails naming the key. It returns that same version with the
//     new generation: the reference does not change when the material
//     does. Such a provider therefore does not pass keys/keystest (which
//     requires a new reference per rotation) and is not run through it.
//     Rewrapping under a managed key re-encrypts under the current
//     material and yields a key object with the same reference as before,
//     stored under a name that includes the generation (docs/format.md
//     §3.2).
//   - Retire fails, wrapping errors.ErrUnsupported (and
//     keys.ErrRetirePrimary when asked for the key's own version): KMS offers
//     no way to disable one material version. Disabling the whole key out of
//     band makes every wrap under it fail with keys.ErrVersionRetired.
//
// IAM (managed): kms:Encrypt, kms:Decrypt, kms:DescribeKey; for Versions
// (keys rotate, keys status) also kms:ListKeyRotations; for Rotate also
// kms:RotateKeyOnDemand.
//
// # What local-kms could not exercise
//
// The tests run against local-kms (internal/testenv.StartKMS). The alias
// strategy runs the full keystest conformance suite there, and tags,
// aliases, DisableKey and ScheduleKeyDeletion all work. Not exercised:
//
//   - RotateKeyOnDemand, ListKeyRotations and CurrentKeyMaterialId:
//     local-kms answers 501 to the first two and reports no material ID.
//     The tests check that Rotate then refuses clearly, and act out KMS's
//     answers with a fake in front of local-kms (the kmsAPI seam): the age
//     taken from the newest rotation, the wait for the asynchronous
//     rotation and its failure when the material does not change, and a
//     501 from RotateKeyOnDemand. A real on-demand or scheduled rotation,
//     and decrypting old ciphertexts after it, was not run.
//   - IAM: local-kms checks no permissions and no signatures. The
//     AccessDeniedException mapping is tested against a stub server that
//     answers every call with it, not against KMS.
//   - IncorrectKeyException: local-kms decrypts with the named key and fails
//     with InvalidCiphertextException instead; both map to ErrUnwrap.
//   - Real KMS's ciphertext format, multi-Region keys, quotas and throttling
//     (the SDK's standard retryer handles ThrottlingException).
//
// # Rewrapping
//
// Rewrapping backups under a new version, deciding when an old version may
// be retired, and retiring it are the rotation package's job
// (internal/rotation): this provider only wraps, unwraps, creates versions
// and disables them when told.
package awskms

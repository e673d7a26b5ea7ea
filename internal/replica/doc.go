// Package replica copies committed backups and the evidence log of a
// primary store to a replica store (docs/format.md §9): a bucket in
// another region or account that holds the primary's objects under the
// same keys with the same bytes, so that every reader works on it
// unchanged.
//
// Invariants:
//   - nothing is re-encrypted, re-signed or re-encoded: each object is
//     copied byte for byte, never through a decoded form;
//   - every copied object is checked, before it is trusted, against what
//     authenticates it: an artifact against its manifest's
//     ciphertextSHA256, the manifest against the manifestSHA256 of the
//     backup's signed evidence record, an evidence record against its
//     signature by a trusted key and the chain's prev link, a report
//     against the digest its record cites; and every Put carries the
//     expected SHA-256, so the replica store refuses other bytes;
//   - the replica's manifest is written last: it is the replica's commit
//     point, after the artifacts, the key objects and the evidence record
//     that vouches for it;
//   - nothing on the replica is overwritten or deleted: an object that is
//     already there is read back whole; with the expected bytes it is
//     skipped (a resumed copy), with other bytes it is tampering, named in
//     the error (ErrTampered) and left alone;
//   - retention comes from the caller (config.BackupRetention and
//     config.EvidenceRetention for the replica store), never from the
//     primary's unauthenticated retain-until;
//   - no log line or error holds key material or artifact plaintext
//     (replica never has either).
package replica

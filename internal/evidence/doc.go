// Package evidence writes and verifies lifeboat's proof of work: signed,
// hash-chained evidence records, one per backup, rotation and drill, and
// signed drill reports rendered as Markdown and HTML (docs/format.md §5).
//
// Records and reports are canonical JSON (RFC 8785 restricted to integers,
// MarshalCanonical) signed by a Signer: with an Ed25519 private key file,
// created on first use by LoadOrCreateSigner and never leaving it, or
// through a service that holds the key (NewRemoteSigner: Vault transit
// Ed25519, AWS KMS ECDSA P-256). A PublicKey names which algorithm
// verifies a signature.
//
// A Log appends records to a store: each record is written first as the
// chain object evidence/seq/<seq>.json, whose write-once Put lets exactly
// one writer take each seq, and then as the named copy
// evidence/<seq>-<kind>-<id>.json. Log.Verify walks the chain and checks
// every byte: canonical form, fields, signatures, trusted keys, consecutive
// seqs, the SHA-256 prev links, the named copies, and that nothing else
// lies under evidence/. Failures are *VerifyError values that name the
// object, the field and the problem and match ErrTampered.
//
// A drill builds a Report, decides its verdict with Judge (a pure function
// of targets, measurements and checks), cites HIPAA rows (DrillHIPAA), signs
// it with Signer.SignReport and stores report.md, report.html and, last,
// report.json with WriteReport. VerifyReportFile checks a report.json
// offline, which is what `lifeboat report verify` does.
//
// Nothing here holds PHI or key material: records and reports carry names,
// IDs, counts, digests, times and outcomes only, and the private key is
// never logged, printed or returned.
package evidence

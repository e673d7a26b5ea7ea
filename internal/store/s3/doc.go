// Package s3 is the write-once store on S3 or an S3-compatible server,
// relying on Object Lock for immutability.
//
// Every object is written with an Object Lock mode (COMPLIANCE by default,
// or GOVERNANCE) and a retain-until date from the caller, and with
// If-None-Match: * so an existing key is never replaced; after each write
// the store checks that the key has exactly one version, so a server that
// ignores the condition is caught and reported. Objects up to the part
// size go up in one PutObject with their SHA-256 checksum; larger ones by
// multipart upload with a SHA-256 checksum per part, parts uploaded
// concurrently from a fixed pool of buffers (memory = part size × (parallel
// parts + 1)); any failure aborts the upload so nothing is committed. On a
// failed part no new part is sent, the parts in flight are let finish (for
// up to 30 seconds), and the upload is then aborted, again until ListParts
// no longer finds it: a part the server was still receiving, as when the
// caller's context ends mid-upload, can land after an abort.
// Reads can start at an offset (a ranged GET) so an interrupted restore
// resumes. Delete is refused before an object's retention ends without a
// request ever being sent.
//
// The object's full SHA-256 is recorded in its user metadata when it is
// known before the upload starts (single-part objects), and full reads are
// checked against it. For multipart objects S3 keeps only a checksum of
// part checksums: every part's SHA-256 is sent and verified by the server,
// the whole-object digest is computed (and checked) only when the caller
// passes one in PutOptions.SHA256, and Stat reports none. lifeboat's
// catalog records every artifact's SHA-256 itself, so nothing relies on the
// store for it.
package s3

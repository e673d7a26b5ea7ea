// Package audit keeps the Kubernetes API server's audit events in the
// locked store (docs/format.md §8): a webhook receiver acknowledges a batch
// only once its events are appended to a write-ahead log and fsynced; the
// log is sealed into segments, each encrypted like every artifact, written
// under the store's Object Lock and committed by a signed record that is
// hash-chained to the one before; `audit verify` walks the chains and
// `audit search` decrypts only the segments of a time range.
//
// Invariants:
//   - an event is acknowledged only after fsync, and removed from the WAL
//     only after the record of the segment holding it is committed in the
//     store (read back from the store's head on start, never from local
//     state alone);
//   - a WAL whose acknowledged part is damaged stops the receiver, naming
//     the file and offset; only a torn tail (never acknowledged) is cut;
//   - nothing read from the store is trusted before its signature, chain
//     link and digests are checked, and no decrypted event is released
//     before its segment's AEAD tags and plaintext digest are;
//   - events are never logged, and no error message quotes one.
package audit

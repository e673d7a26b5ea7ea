// Package store defines the write-once object store that every lifeboat
// artifact, key object, manifest, evidence record and report is written to.
//
// The Store interface is small on purpose: Put, Get, Stat, List and Delete,
// each taking a context first. A store never overwrites an object and
// refuses to delete one before its retention ends, so nothing lifeboat
// writes may need changing later (docs/format.md §1). Keys follow one rule
// on every store (ValidateKey), and callers decide on failures with
// errors.Is against the sentinel errors declared here.
//
// Implementations live in their own packages: store/fs (a write-once local
// directory) and store/s3 (S3 with Object Lock). store/storetest is the
// conformance suite every implementation and every fake must pass, and
// store/faulty wraps any Store to inject faults in tests.
package store

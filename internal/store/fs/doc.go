// Package fs is the write-once local directory store of docs/format.md §1.1.
//
// Layout under the root directory:
//
//	<root>/objects/<key>            the object's bytes, mode 0440
//	<root>/retention/<key>.json     its retention record, mode 0440
//	<root>/tmp/                     temporary files of Puts in progress
//
// A Put streams the bytes into a temporary file while computing their
// SHA-256 and size, fsyncs it, writes and fsyncs the retention record the
// same way, and publishes both with link(2), which never replaces an
// existing name: the object first, the retention record second. An object
// is visible once its file exists under objects/. A crash between the two
// links leaves an object without a retention record; such an object is
// retained forever (Stat reports a zero RetainUntil and Delete refuses it),
// and its size and digest are taken from the file.
//
// Reads: a Get from offset 0 hashes the bytes as they are read and, at the
// end of the stream, returns an error wrapping store.ErrIntegrity instead of
// io.EOF if they differ from the recorded SHA-256. The bytes have already
// been handed to the caller by then, so a caller must treat what it read as
// untrusted until Read returns io.EOF. A Get from a later offset cannot be
// checked against the digest of the whole object; it only checks that the
// file has the recorded size.
//
// Two cases the format leaves open are settled here. If publishing fails
// after the object's link (the record's link or a directory fsync fails),
// Put removes the object it just linked, so a failed Put never leaves an
// object behind. And a retention record found without its object (a crash
// in Delete between removing the object and removing the record) is stale:
// the Put that wins the object's link replaces it with its own record.
//
// Limits of this store beyond store.ValidateKey: a key segment may be at
// most MaxSegmentLength bytes (the file system's NAME_MAX less the ".json"
// of the retention record), failing with store.ErrInvalidKey; and because
// keys are paths, a key cannot be stored when it names a directory of
// another key or passes through another key's file ("a" and "a/b"), or
// when its retention record path collides with a directory of another
// key's records ("a" and "a.json/b"). Those fail with ErrKeyConflict,
// before the stream is read, or at publication when the two Puts race;
// either way nothing is left behind.
//
// Keys are file names, so the root must be on a case-sensitive file
// system ("A" and "a" are different keys).
//
// The store is safe for concurrent use by several goroutines and several
// processes sharing the root directory: link(2) decides which of several
// concurrent Puts of one key wins. It relies on POSIX link, fsync of
// directories and O_NOFOLLOW, so it is meant for Linux and other Unix
// systems.
package fs

// Package fs is the write-once local directory store of docs/format.md §1.1.
//
// Layout under the root directory:
//
//	<root>/objects/<key>            the object's bytes, mode 0440
//	<root>/retention/<key>.json     its retention record, mode 0440
//	<root>/tmp/                     temporary files of Puts in progress
//	<root>/.lock                    the store lock, an empty file
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
// Failures and crashes (docs/format.md §1.1): if publishing fails after the
// object's link (the record's link or a directory fsync fails), Put removes
// the object it just linked, so a failed Put never leaves an object behind.
// A retention record found without its object (a crash in Delete between
// removing the object and removing the record) is stale: the next Put of
// the key removes it, durably, before linking its own object, so a crash
// never leaves an object beside another object's record. Every directory
// on the path of a Put's files is fsynced by that Put, also when another
// Put created it, so an acknowledged Put survives a power loss.
//
// Puts and Deletes: the publish phase of a Put (the stale record's
// removal, the links, the directory fsyncs and any rollback; not the
// streaming of the bytes) and the whole of a Delete (reading the record,
// checking it, the removals) run under the store lock: an exclusive
// flock(2) on <root>/.lock, plus a mutex within the Store. So a Delete
// never acts on what it read before a Put published, and two Deletes never
// both act. Delete also checks that the record describes the object now
// there (the sizes agree) and refuses with store.ErrRetained otherwise.
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
// concurrent Puts of one key wins, and the store lock orders Puts and
// Deletes. It relies on POSIX link, fsync of directories, flock and
// O_NOFOLLOW, so it is meant for Linux and other Unix systems; where
// package syscall has no flock (AIX, Solaris, non-Unix systems) the lock
// only orders the goroutines of one Store, and only one process may write
// to a root at a time.
package fs

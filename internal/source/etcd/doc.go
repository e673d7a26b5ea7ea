// Package etcd takes an etcd snapshot as a stream, for a backup to encrypt
// and store without holding it in memory, and records the facts a restore
// needs and a drill checks: cluster and member IDs, revision, database
// size, the time the stream began, the SHA-256 etcd appends to the stream
// (checked here: a stream that is cut short or corrupted ends in an error,
// never in io.EOF), and an inventory of the keyspace (docs/format.md §6).
//
// Consistency: Snapshot asks the member for its status, whose revision R
// is the point the inventory describes, then opens the snapshot stream.
// The snapshot may also hold writes made after R; since etcd keeps every
// revision until it is compacted, the keyspace at R is in it, and a
// restored snapshot read at R must equal the inventory.
//
// The inventory is read from the snapshot's own bytes as they stream past
// (scan.go, docs/format.md §6.0.1): the snapshot is a bbolt file, and the
// scan keeps, for each leaf element of the key bucket, its revision, key
// and the SHA-256 of its value, then at the end counts only the pages
// reachable from the file's root, and for each key the last revision at or
// below R. The member does no more work than for etcdctl snapshot save,
// where a second, ranged read of the whole keyspace at R used to double
// it. Memory grows with the number of revisions the file holds (about 42
// bytes each, plus the key), not with the values, up to a budget (32 MiB).
// Where the scan cannot answer (a compaction past R between the status
// call and the snapshot, a page larger than it holds back, a big-endian
// file, the budget spent), the stream reads the
// keyspace at R from the member instead (ReadInventory, paged by key) and
// logs why.
package etcd

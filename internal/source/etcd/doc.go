// Package etcd takes an etcd snapshot as a stream, for a backup to encrypt
// and store without holding it in memory, and records the facts a restore
// needs and a drill checks: cluster and member IDs, revision, database
// size, the time the stream began, the SHA-256 etcd appends to the stream
// (checked here: a stream that is cut short or corrupted ends in an error,
// never in io.EOF), and an inventory of the keyspace (docs/format.md §6).
//
// Consistency: Snapshot asks the member for its status, whose revision R
// is the point the inventory describes, then opens the snapshot stream and
// reads the inventory at R (a ranged read WithRev(R), paged by key) while
// the snapshot streams. The snapshot may also hold writes made after R;
// since etcd keeps every revision until it is compacted, a restored
// snapshot read at R must equal the inventory. Compaction to a revision
// after R between the status call and the inventory read fails the
// inventory (Kubernetes compacts to revisions minutes old, so this does not
// happen in practice).
package etcd

// Package backup runs a BackupPlan: each source is streamed through the
// envelope (compress, encrypt) into the store, then the backup's wrapped
// data key, then the catalog manifest, which commits the backup
// (docs/format.md §6).
//
// Memory is bounded: an etcd snapshot flows from etcd through the
// envelope into the store through a pipe and is never held whole. A failure
// anywhere aborts the artifact being written, so the store commits nothing
// for it, and no manifest is written: an interrupted or failed backup (a
// crash, kill -9, an etcd that went away, a corrupted snapshot stream) is
// never listed or offered for restore, and its objects expire with their
// retention.
//
// Logs are structured (keys backup, plan, artifact, ...) and never hold key
// material or data.
package backup

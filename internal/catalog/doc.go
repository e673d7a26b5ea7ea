// Package catalog says which backups exist and what each one holds: the
// manifest of docs/format.md §6, written last as a backup's commit point.
//
// A backup lives under backups/<id>/ in a store: its encrypted artifacts,
// the key objects holding its wrapped data key, and manifest.json. Write
// puts the manifest (the caller writes it only after every other object of
// the backup); Read decodes one strictly; List and Select offer only
// backups that have a manifest, so an interrupted backup is never restored.
// Verify checks a backup's stored bytes against its manifest, without keys
// or, with readData, by decrypting every artifact; OpenKey and
// DecryptArtifact are the pieces a restore uses.
//
// The package also defines the etcd keyspace inventory (Inventory and
// InventoryBuilder) that a drill compares against a restored keyspace.
// Nothing here logs; errors name the backup, the object key and, for a
// digest, which one.
package catalog

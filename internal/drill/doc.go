// Package drill runs a disaster-recovery drill: it selects a backup of a
// plan, fetches its artifacts and checks their digests, decrypts them
// (releasing plaintext only once it has authenticated), restores the etcd
// snapshot into a scratch cluster with the source cluster's
// encryption-at-rest configuration, verifies what came back, and measures
// RTO and RPO against the Drill's targets.
//
// The incident is simulated at the drill's start. RTO is the wall time from
// the start until every verification check has passed, with a breakdown
// per phase (select, fetch, decrypt, restore etcd, start etcd, start control
// plane, verify); RPO is the incident time minus the time the restored data
// reflects (the etcd snapshot's takenAt). The verdict is evidence.Judge's,
// a pure function of targets, measurements and checks: a missed target or
// any check that did not pass fails the drill.
//
// Every drill also reports a "backup complete" check, failing for a
// partial backup (naming the skipped sources), and fails a "clock skew"
// check, measuring no RPO, when the snapshot's takenAt is after the
// incident.
//
// Verification reads the restored keyspace at the backup's revision
// through the scratch etcd and compares it with the manifest's inventory
// (key count, per-prefix counts and digest), always, whatever checks the
// Drill lists; each compared resource's key count is also compared with
// the inventory's count for its prefix. Then it asks the scratch
// Kubernetes API: every backed-up object of the checked resources is served
// at the resourceVersion it had in the backup (so it is the backed-up
// object, unchanged), Secrets decrypt, and the Drill's named objects exist
// as backed up.
//
// Run returns a Result; Publish signs its report, writes it to the store
// (reports/<run-id>/) and appends a drill record to the evidence log.
// Restored data is PHI: decrypted artifacts stay in a private temporary
// directory that is removed with the scratch cluster.
package drill

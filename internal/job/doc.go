// Package job runs one backup, one rotation or one drill from
// configuration: the single code path that both the command line
// (`lifeboat backup run`, `keys rotate`, `drill run`) and the `serve`
// scheduler call. It opens what the configuration names through wire,
// runs the domain package (backup, rotation, drill) and records the
// outcome in the store's signed evidence log with the retention that
// config.EvidenceRetention gives.
//
// Invariants:
//   - every run that reached an accepted store leaves an evidence record,
//     success or failure, also when it was interrupted (bounded by
//     RecordTimeout on a context detached from the cancelled one);
//   - nothing is written to a store that the lock judgement refuses, not
//     even evidence;
//   - a run is never started without a signer: a run that could not be
//     evidenced must not change anything;
//   - job prints nothing; callers render the results.
package job

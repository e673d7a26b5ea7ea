package config

import "time"

// The retention rule, in one place (docs/format.md §1):
//
//   - every object of a backup is locked for BackupRetention: the plan's
//     retention (default 2190d), never shorter than the store's
//     objectLock.retention;
//   - evidence records and drill reports written to a store are locked
//     for EvidenceRetention: the store's objectLock.retention, never
//     shorter than DefaultRetention (2190d, HIPAA §164.316(b)(2)(i)),
//     whatever wrote them (a backup, a rotation, a drill, the scheduler).
//
// A store without objectLock gets the same rule with its lock retention
// taken as zero, so backup evidence and drill evidence in one store are
// kept equally long.

// BackupRetention is how long every object of plan's backups in store st
// is locked.
func BackupRetention(plan *BackupPlan, st *Store) time.Duration {
	r := plan.Spec.Retention.Std()
	if r <= 0 {
		r = DefaultRetention.Std()
	}
	return max(r, storeLock(st))
}

// EvidenceRetention is how long evidence records and reports written to
// store st are locked.
func EvidenceRetention(st *Store) time.Duration {
	return max(DefaultRetention.Std(), storeLock(st))
}

func storeLock(st *Store) time.Duration {
	if st == nil || st.Spec.ObjectLock == nil {
		return 0
	}
	return st.Spec.ObjectLock.Retention.Std()
}

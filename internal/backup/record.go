package backup

import (
	"context"
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// States of RecordCheck.Status.
const (
	// RecordOK: the backup's signed record carries the stored manifest's
	// SHA-256.
	RecordOK = "ok"
	// RecordMissing: the log holds no committed record of the backup.
	RecordMissing = "missing"
	// RecordNoDigest: the record predates manifestSHA256.
	RecordNoDigest = "no digest"
	// RecordNotChecked: no trusted key to check the record with.
	RecordNotChecked = "not checked"
)

// RecordCheck is how a stored manifest compares with the backup's signed
// evidence record.
type RecordCheck struct {
	Status string `json:"status"`
	// Record is the key of the record compared; empty when none.
	Record string `json:"record,omitempty"`
}

// CheckRecord compares manifestSHA256, the SHA-256 of backup id's stored
// manifest (catalog.ReadDigest), with the `manifestSHA256` of the backup's
// committed evidence record in st, read with trusted keys only
// (docs/format.md §6). A differing digest, or records that disagree, fail
// with an error wrapping catalog.ErrVerification that names the manifest
// and the record: the manifest was replaced after the backup signed it. A
// log that cannot be read (a record by an untrusted key) fails too.
// Without a trusted key nothing is read (RecordNotChecked).
func CheckRecord(ctx context.Context, st evidence.StoreLike, id, manifestSHA256 string, trusted ...evidence.PublicKey) (RecordCheck, error) {
	if len(trusted) == 0 {
		return RecordCheck{Status: RecordNotChecked}, nil
	}
	recs, err := evidence.NewLog(st, nil, nil, evidence.WithTrustedKeys(trusted...)).Find(ctx, evidence.KindBackup, id)
	if err != nil {
		return RecordCheck{}, fmt.Errorf("backup %s: evidence record: %w", id, err)
	}
	res := RecordCheck{Status: RecordMissing}
	for _, r := range recs {
		if r.Outcome == evidence.OutcomeFailure {
			continue // a failed run's record says nothing of a manifest
		}
		want, ok := r.Subject["manifestSHA256"].(string)
		if !ok {
			if res.Status == RecordMissing {
				res = RecordCheck{Status: RecordNoDigest, Record: r.Key()}
			}
			continue
		}
		if want != manifestSHA256 {
			return RecordCheck{Status: "tampered", Record: r.Key()}, fmt.Errorf(
				"manifest %s has SHA-256 %s, but the backup's signed evidence record %s says %s (the manifest was replaced after the backup): %w",
				catalog.ManifestKey(id), manifestSHA256, r.Key(), want, catalog.ErrVerification)
		}
		res = RecordCheck{Status: RecordOK, Record: r.Key()}
	}
	return res, nil
}

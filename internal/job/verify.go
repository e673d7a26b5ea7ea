package job

import (
	"context"
	"errors"
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// VerifyResult is `backup verify`'s result: the stored data's checks, the
// manifest against its signed evidence record, and the versions of the
// backup's keys that lifeboat did not write.
type VerifyResult struct {
	catalog.VerifyResult
	Record backup.RecordCheck `json:"record"`
	// Versions are the backup's keys holding versions lifeboat did not
	// write (S3).
	Versions []store.VersionFinding `json:"versions,omitempty"`
}

// VerifyBackup verifies backup id in st: catalog.Verify (with the data key
// when u is set), then, on a store that keeps versions, every key of the
// backup for versions lifeboat did not write, then the manifest against
// the backup's signed record under the trusted keys (a missing record
// fails when a trusted key is given: anyone who can write the store can
// add a backup). A failed check returns the result and an error wrapping
// catalog.ErrVerification naming each problem; other errors end it early.
func VerifyBackup(ctx context.Context, st store.Store, id string, u envelope.Unwrapper, trusted []evidence.PublicKey) (VerifyResult, error) {
	res, verr := catalog.Verify(ctx, st, id, u != nil, u)
	out := VerifyResult{VerifyResult: res, Record: backup.RecordCheck{Status: backup.RecordNotChecked}}
	if verr != nil && len(res.Artifacts) == 0 && !errors.Is(verr, catalog.ErrVerification) {
		return out, verr
	}
	if va, ok := st.(store.VersionAuditor); ok {
		findings, err := va.AuditVersions(ctx, catalog.BackupPrefix(id))
		if err != nil {
			return out, fmt.Errorf("backup verify: %w", err)
		}
		out.Versions = findings
		for _, f := range findings {
			verr = errors.Join(verr, fmt.Errorf("backup %s: tampering: %s: %w", id, f, catalog.ErrVerification))
			out.OK = false
		}
	}
	if res.ManifestSHA256 != "" {
		rc, rerr := backup.CheckRecord(ctx, st, id, res.ManifestSHA256, trusted...)
		out.Record = rc
		if rerr == nil && len(trusted) > 0 && rc.Status == backup.RecordMissing {
			rerr = fmt.Errorf("backup %s: no signed evidence record of it under evidence/: %w", id, catalog.ErrVerification)
		}
		if rerr != nil {
			if !errors.Is(rerr, catalog.ErrVerification) && !errors.Is(rerr, evidence.ErrTampered) {
				return out, rerr
			}
			verr = errors.Join(verr, rerr)
			out.OK = false
		}
	}
	return out, verr
}

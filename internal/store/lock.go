package store

import (
	"context"
	"fmt"
	"time"
)

// LockStatus is what a store reports about its immutability: whether
// objects are protected by the storage itself (S3 Object Lock; the fs
// store's own write-once rules) and with which defaults.
type LockStatus struct {
	// Versioning is the bucket's versioning status ("Enabled" when on).
	Versioning string `json:"versioning,omitempty"`
	// Locked reports whether the storage enforces retention itself.
	Locked bool `json:"locked"`
	// EnforcedByLifeboat reports storage whose write-once rules only
	// lifeboat keeps (the fs store): they hold against lifeboat's own
	// mistakes, not against someone with write access to the storage.
	EnforcedByLifeboat bool `json:"enforcedByLifeboat,omitempty"`
	// DefaultMode and DefaultRetention are the storage's default retention
	// rule, if any.
	DefaultMode      string        `json:"defaultMode,omitempty"`
	DefaultRetention time.Duration `json:"defaultRetention,omitempty"`
}

// LockRequirement is what a plan asks of its store.
type LockRequirement struct {
	// Mode is the lock mode the plan wants: COMPLIANCE or GOVERNANCE.
	Mode string
	// Retention is how long the plan keeps its backups.
	Retention time.Duration
	// AllowUnlocked lets the plan use storage without Object Lock.
	AllowUnlocked bool
}

// LockVerdict is the judgement of a store against a requirement.
type LockVerdict struct {
	// OK is false when the plan must refuse the store.
	OK bool `json:"ok"`
	// Problems say what is missing, one sentence each; when OK is true
	// they are warnings the report must still show.
	Problems []string `json:"problems,omitempty"`
}

// JudgeLock decides whether storage with status st satisfies req. It is a
// pure function: the same inputs give the same verdict.
func JudgeLock(st LockStatus, req LockRequirement) LockVerdict {
	var v LockVerdict
	hard := false
	add := func(isHard bool, format string, args ...any) {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
		hard = hard || isHard
	}
	if st.Versioning != "" && st.Versioning != "Enabled" {
		add(!req.AllowUnlocked, "versioning is %s, not Enabled", st.Versioning)
	}
	switch {
	case st.EnforcedByLifeboat:
		add(false, "retention is enforced by lifeboat, not by the storage: anyone with write access to the directory can delete backups; use S3 Object Lock in COMPLIANCE mode for tamper-proof retention")
	case !st.Locked:
		add(!req.AllowUnlocked, "Object Lock is not enabled: objects could be deleted or overwritten by anyone with write access")
	}
	if st.Locked && st.DefaultMode == "" {
		add(false, "no default retention rule: lifeboat sets retention on every object it writes, but other writers to the bucket would leave unlocked objects")
	}
	if st.Locked && st.DefaultMode != "" && req.Mode != "" && st.DefaultMode != req.Mode {
		add(req.Mode == "COMPLIANCE" && st.DefaultMode != "COMPLIANCE", "default retention mode is %s, the plan wants %s", st.DefaultMode, req.Mode)
	}
	if st.Locked && st.DefaultRetention > 0 && req.Retention > 0 && st.DefaultRetention < req.Retention {
		add(false, "default retention %s is shorter than the plan's %s (lifeboat sets the plan's retention on each object)", days(st.DefaultRetention), days(req.Retention))
	}
	if req.AllowUnlocked && !st.Locked && !st.EnforcedByLifeboat {
		add(false, "allowed only because the plan says allowUnlocked: true; reports state that backups are not immutable")
	}
	v.OK = !hard
	return v
}

func days(d time.Duration) string { return fmt.Sprintf("%dd", int(d/(24*time.Hour))) }

// LockChecker is implemented by stores that can report their immutability
// (S3: the bucket's versioning and Object Lock configuration; fs: its own
// write-once rules). `store check` and a backup's pre-flight consume it.
type LockChecker interface {
	LockStatus(ctx context.Context) (LockStatus, error)
}

// VersionFinding is a key that holds more than lifeboat wrote: lifeboat
// writes each key once, so a second version or a delete marker was
// written by someone else (docs/format.md §1).
type VersionFinding struct {
	Key           string `json:"key"`
	Versions      int    `json:"versions"`
	DeleteMarkers int    `json:"deleteMarkers"`
}

func (f VersionFinding) String() string {
	return fmt.Sprintf("%s has %d versions and %d delete markers; lifeboat wrote one version (it is the one read)", f.Key, f.Versions, f.DeleteMarkers)
}

// VersionAuditor is implemented by stores that keep object versions (S3):
// AuditVersions reports every key under prefix with more than one version
// or a delete marker. `backup verify`, `evidence verify` and `store check`
// consume it.
type VersionAuditor interface {
	AuditVersions(ctx context.Context, prefix string) ([]VersionFinding, error)
}

// AbortedUpload is a multipart upload a Put left open and that was
// aborted.
type AbortedUpload struct {
	Key       string    `json:"key"`
	UploadID  string    `json:"uploadId"`
	Initiated time.Time `json:"initiated"`
}

// UploadJanitor is implemented by stores whose Puts can leave partial
// uploads behind when killed (S3 multipart uploads): AbortStaleUploads
// aborts those initiated more than olderThan before now.
type UploadJanitor interface {
	AbortStaleUploads(ctx context.Context, olderThan time.Duration, now time.Time) ([]AbortedUpload, error)
}

// StaleUploadAge is how old an open upload must be before it is taken for
// one a killed Put left behind: longer than any Put lifeboat runs.
const StaleUploadAge = 24 * time.Hour

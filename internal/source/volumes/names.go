package volumes

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels and annotations lifeboat puts on the VolumeSnapshots it creates
// (docs/format.md §6.2).
const (
	// LabelPlan holds the plan's name.
	LabelPlan = "lifeboat.dev/plan"
	// LabelBackup holds the backup ID in label form (LabelValue).
	LabelBackup = "lifeboat.dev/backup"
	// AnnotationBackup holds the backup ID in full.
	AnnotationBackup = "lifeboat.dev/backup"
	// AnnotationRetainUntil holds the backup's retain-until time, RFC 3339
	// in UTC. A snapshot is deleted by a later run of its plan once that
	// time, and its backup's manifest's retainUntil, have passed.
	AnnotationRetainUntil = "lifeboat.dev/retain-until"
)

// maxNameLen is the longest DNS subdomain, the limit of an object name.
const maxNameLen = validation.DNS1123SubdomainMaxLength

// SnapshotName returns the name of the VolumeSnapshot of claim taken by
// backup: lower(backup) + "-" + claim, cut and suffixed with a digest when
// longer than a DNS subdomain may be.
func SnapshotName(backup, claim string) string {
	name := strings.ReplaceAll(strings.ToLower(backup), "_", "-") + "-" + claim
	if len(name) <= maxNameLen {
		return name
	}
	sum := sha256.Sum256([]byte(backup + "/" + claim))
	prefix := strings.TrimRight(name[:maxNameLen-17], "-.")
	return prefix + "-" + hex.EncodeToString(sum[:8])
}

// LabelValue returns v when it is a valid label value, else a valid label
// value derived from it: its first 46 characters without trailing
// non-alphanumerics, "-" and 16 hex digits of its SHA-256.
func LabelValue(v string) string {
	if len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	prefix := v[:min(len(v), 46)]
	prefix = strings.TrimRightFunc(prefix, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
	// A prefix that starts with a non-alphanumeric would still be invalid.
	if prefix != "" && len(validation.IsValidLabelValue(prefix)) != 0 {
		prefix = ""
	}
	if prefix == "" {
		return hex.EncodeToString(sum[:8])
	}
	return prefix + "-" + hex.EncodeToString(sum[:8])
}

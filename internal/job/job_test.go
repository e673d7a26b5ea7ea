package job_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/job"
)

// TestNewRunID: a rotation run's ID is <policy>-<start>-<4 hex>, so
// runs started in the same second get different IDs (and evidence record
// names); it keeps to the evidence ID rule.
func TestNewRunID(t *testing.T) {
	started := time.Date(2026, 11, 26, 1, 0, 0, 999, time.UTC)
	re := regexp.MustCompile(`^quarterly-20261126T010000Z-[0-9a-f]{4}$`)
	seen := map[string]bool{}
	for range 64 {
		id, err := job.NewRunID("quarterly", started)
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(id) {
			t.Fatalf("rotation ID %q does not match %s", id, re)
		}
		seen[id] = true
	}
	if len(seen) < 2 {
		t.Fatalf("64 rotation IDs for the same second are all %v", seen)
	}
	// A DNS-label policy name at its longest (63 bytes) still fits.
	if id, err := job.NewRunID(strings.Repeat("a", 63), started); err != nil || len(id) > 128 {
		t.Fatalf("longest policy name: %q, %v", id, err)
	}
	for _, bad := range []string{strings.Repeat("a", 110), "a/b", "a b"} {
		if id, err := job.NewRunID(bad, started); err == nil {
			t.Fatalf("policy %q gave ID %q", bad, id)
		}
	}
}

package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

func TestJudgeLock(t *testing.T) {
	const day = 24 * time.Hour
	compliance6y := store.LockStatus{Versioning: "Enabled", Locked: true, DefaultMode: "COMPLIANCE", DefaultRetention: 2190 * day}
	for _, c := range []struct {
		name     string
		st       store.LockStatus
		req      store.LockRequirement
		ok       bool
		problems []string
	}{
		{"compliance bucket, compliance plan", compliance6y, store.LockRequirement{Mode: "COMPLIANCE", Retention: 2190 * day}, true, nil},
		{"no lock refused", store.LockStatus{Versioning: "Enabled"}, store.LockRequirement{Mode: "COMPLIANCE"}, false, []string{"Object Lock is not enabled"}},
		{"no lock allowed", store.LockStatus{Versioning: "Enabled"}, store.LockRequirement{AllowUnlocked: true}, true, []string{"Object Lock is not enabled", "allowUnlocked: true"}},
		{"versioning suspended", store.LockStatus{Versioning: "Suspended", Locked: true, DefaultMode: "COMPLIANCE"}, store.LockRequirement{Mode: "COMPLIANCE"}, false, []string{"versioning is Suspended"}},
		{"governance bucket, compliance plan", store.LockStatus{Versioning: "Enabled", Locked: true, DefaultMode: "GOVERNANCE", DefaultRetention: 2190 * day}, store.LockRequirement{Mode: "COMPLIANCE", Retention: 2190 * day}, false, []string{"mode is GOVERNANCE"}},
		{"compliance bucket, governance plan", compliance6y, store.LockRequirement{Mode: "GOVERNANCE", Retention: day}, true, []string{"mode is COMPLIANCE"}},
		{"short default retention warns", store.LockStatus{Versioning: "Enabled", Locked: true, DefaultMode: "COMPLIANCE", DefaultRetention: day}, store.LockRequirement{Mode: "COMPLIANCE", Retention: 2190 * day}, true, []string{"1d is shorter than the plan's 2190d"}},
		{"no default rule warns", store.LockStatus{Versioning: "Enabled", Locked: true}, store.LockRequirement{Mode: "COMPLIANCE"}, true, []string{"no default retention rule"}},
		{"fs store", store.LockStatus{EnforcedByLifeboat: true}, store.LockRequirement{Mode: "COMPLIANCE"}, true, []string{"enforced by lifeboat"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := store.JudgeLock(c.st, c.req)
			if v.OK != c.ok {
				t.Fatalf("OK = %v, want %v (problems %q)", v.OK, c.ok, v.Problems)
			}
			if len(v.Problems) != len(c.problems) {
				t.Fatalf("problems %q, want %d matching %q", v.Problems, len(c.problems), c.problems)
			}
			for i, want := range c.problems {
				if !strings.Contains(v.Problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, v.Problems[i], want)
				}
			}
		})
	}
}

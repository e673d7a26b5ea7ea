package drill

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

func TestJudge(t *testing.T) {
	targets := config.Targets{RTO: config.Duration(15 * time.Minute), RPO: config.Duration(time.Hour)}
	dur := func(d time.Duration) *time.Duration { return &d }
	passed := []evidence.Check{{Name: "inventory: etcd keyspace", Outcome: evidence.CheckPass}, {Name: "secretsReadable", Outcome: evidence.CheckPass}}
	for _, c := range []struct {
		name     string
		rto, rpo *time.Duration
		checks   []evidence.Check
		verdict  string
		reasons  []string // substrings, one per reason
	}{
		{"all pass", dur(3 * time.Minute), dur(20 * time.Minute), passed, evidence.VerdictPass, nil},
		{"equal to the targets passes", dur(15 * time.Minute), dur(time.Hour), passed, evidence.VerdictPass, nil},
		{"RTO over", dur(15*time.Minute + time.Millisecond), dur(time.Minute), passed, evidence.VerdictFail,
			[]string{"RTO 15m0.001s (900001 ms) exceeds the target 15m0s (900000 ms) by 1ms"}},
		{"RPO over", dur(time.Minute), dur(25 * time.Hour), passed, evidence.VerdictFail,
			[]string{"RPO 25h0m0s (90000000 ms) exceeds the target 1h0m0s (3600000 ms)"}},
		{"both over", dur(time.Hour), dur(2 * time.Hour), passed, evidence.VerdictFail, []string{"RTO", "RPO"}},
		{"a check failed", dur(time.Minute), dur(time.Minute),
			[]evidence.Check{passed[0], {Name: "secretsReadable", Outcome: evidence.CheckFail, Detail: "read ehr/db: 500"}},
			evidence.VerdictFail, []string{"check secretsReadable failed: read ehr/db: 500"}},
		{"a skipped check does not pass", dur(time.Minute), dur(time.Minute),
			[]evidence.Check{passed[0], {Name: "canary", Outcome: evidence.CheckSkipped}},
			evidence.VerdictFail, []string{"check canary was skipped"}},
		{"RTO not measured (restore never verified)", nil, dur(time.Minute), passed, evidence.VerdictFail,
			[]string{"RTO not measured"}},
		{"no checks ran", dur(time.Minute), dur(time.Minute), nil, evidence.VerdictFail, []string{"no verification check ran"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			verdict, reasons := Judge(targets, c.rto, c.rpo, c.checks)
			if verdict != c.verdict {
				t.Fatalf("verdict %q, want %q (reasons %q)", verdict, c.verdict, reasons)
			}
			if len(reasons) != len(c.reasons) {
				t.Fatalf("reasons %q, want %d", reasons, len(c.reasons))
			}
			for i, want := range c.reasons {
				if !strings.Contains(reasons[i], want) {
					t.Errorf("reason %d %q lacks %q", i, reasons[i], want)
				}
			}
		})
	}
}

// TestReportDecryptionRow: the §164.312(a)(2)(iv) row is cited only when
// the decrypt phase succeeded, i.e. every artifact decrypted.
func TestReportDecryptionRow(t *testing.T) {
	for _, c := range []struct {
		outcome string
		want    bool
	}{
		{evidence.PhaseSuccess, true},
		{evidence.PhaseFailure, false},
		{evidence.PhaseSkipped, false},
	} {
		res := Result{
			Drill: "d", RunID: "r", Manifest: &catalog.Manifest{Backup: "b", Plan: "p", DataKeyID: "k"},
			// One artifact decrypted before the phase failed.
			Artifacts: []string{"etcd-snapshot.db"},
			Phases:    []Phase{{Name: PhaseFetch, Outcome: evidence.PhaseSuccess}, {Name: PhaseDecrypt, Outcome: c.outcome}},
		}
		got := false
		for _, h := range res.Report().HIPAA {
			if h.Section == "§164.312(a)(2)(iv)" {
				got = true
			}
		}
		if got != c.want {
			t.Errorf("decrypt phase %s: decryption row cited %v, want %v", c.outcome, got, c.want)
		}
	}
}

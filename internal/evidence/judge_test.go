package evidence

import (
	"reflect"
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	ms := func(n int64) *int64 { return &n }
	targets := Targets{RTOMs: 900_000, RPOMs: 3_600_000}
	passing := []Check{{Name: "resource-counts", Outcome: CheckPass}, {Name: "canary-decrypts", Outcome: CheckPass}}
	for _, tc := range []struct {
		name     string
		measured Measured
		checks   []Check
		verdict  string
		reasons  []string // substrings, one per reason, in order
	}{
		{"within targets", Measured{RTOMs: ms(720_000), RPOMs: ms(1_200_000)}, passing, VerdictPass, nil},
		{"equal to targets", Measured{RTOMs: ms(900_000), RPOMs: ms(3_600_000)}, passing, VerdictPass, nil},
		{"worst gap is not judged", Measured{RTOMs: ms(1), RPOMs: ms(1), WorstGapMs: ms(99_999_999)}, passing, VerdictPass, nil},
		{"RTO over by 1 ms", Measured{RTOMs: ms(900_001), RPOMs: ms(0)}, passing, VerdictFail,
			[]string{"RTO 15m0.001s (900001 ms) exceeds the target 15m0s (900000 ms) by 1ms (1 ms)"}},
		{"RPO over", Measured{RTOMs: ms(60_000), RPOMs: ms(5_400_000)}, passing, VerdictFail,
			[]string{"RPO 1h30m0s (5400000 ms) exceeds the target 1h0m0s (3600000 ms) by 30m0s (1800000 ms)"}},
		{"RTO not measured", Measured{RPOMs: ms(0)}, passing, VerdictFail,
			[]string{"RTO not measured: the restore did not reach a verified state (target 15m0s (900000 ms))"}},
		{"RPO not measured", Measured{RTOMs: ms(0)}, passing, VerdictFail, []string{"RPO not measured"}},
		{"no checks", Measured{RTOMs: ms(1), RPOMs: ms(1)}, nil, VerdictFail, []string{"no verification check ran"}},
		{"failed check", Measured{RTOMs: ms(1), RPOMs: ms(1)},
			[]Check{{Name: "a", Outcome: CheckPass}, {Name: "canary-decrypts", Outcome: CheckFail, Detail: "AEAD tag mismatch"}}, VerdictFail,
			[]string{"check canary-decrypts failed: AEAD tag mismatch"}},
		{"skipped check", Measured{RTOMs: ms(1), RPOMs: ms(1)}, []Check{{Name: "volumes", Outcome: CheckSkipped}}, VerdictFail,
			[]string{"check volumes was skipped"}},
		{"check without outcome", Measured{RTOMs: ms(1), RPOMs: ms(1)}, []Check{{Name: "x"}}, VerdictFail, []string{"check x has no outcome"}},
		{"everything wrong", Measured{RTOMs: ms(1_000_000), RPOMs: ms(4_000_000)}, []Check{{Name: "x", Outcome: CheckFail}, {Name: "y", Outcome: "weird"}}, VerdictFail,
			[]string{"RTO 16m40s", "RPO 1h6m40s", "check x failed", `check y has outcome "weird"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			verdict, reasons := Judge(targets, tc.measured, tc.checks)
			if verdict != tc.verdict {
				t.Fatalf("verdict %s, want %s (reasons %q)", verdict, tc.verdict, reasons)
			}
			if reasons == nil || len(reasons) != len(tc.reasons) {
				t.Fatalf("reasons %q, want %d", reasons, len(tc.reasons))
			}
			for i, want := range tc.reasons {
				if !strings.Contains(reasons[i], want) {
					t.Errorf("reason %d: %q lacks %q", i, reasons[i], want)
				}
			}
		})
	}
}

func TestJudgeIsPure(t *testing.T) {
	ms := func(n int64) *int64 { return &n }
	checks := []Check{{Name: "a", Outcome: CheckFail}}
	before := append([]Check(nil), checks...)
	m := Measured{RTOMs: ms(5), RPOMs: ms(5)}
	v1, r1 := Judge(Targets{1, 1}, m, checks)
	v2, r2 := Judge(Targets{1, 1}, m, checks)
	if v1 != v2 || !reflect.DeepEqual(r1, r2) || !reflect.DeepEqual(before, checks) || *m.RTOMs != 5 {
		t.Fatal("Judge is not a pure function of its inputs")
	}
}

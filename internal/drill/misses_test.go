package drill

import (
	"context"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// recordsNewestFirst is a log read backwards, for ScheduleMisses.
type recordsNewestFirst []evidence.Record

func (rs recordsNewestFirst) Backwards(_ context.Context, limit int, fn func(evidence.Record) bool) error {
	for i, r := range rs {
		if i >= limit || !fn(r) {
			return nil
		}
	}
	return nil
}

func scheduleRecord(appended, tick time.Time, plan, status, reason, outcome string) evidence.Record {
	return evidence.Record{Kind: evidence.KindSchedule, Time: appended, Outcome: outcome, Subject: map[string]any{
		"schedule": plan + "-hourly", "tick": tick.Format(time.RFC3339), "status": status, "reason": reason,
		"targetKind": "BackupPlan", "targetName": plan,
	}}
}

// TestScheduleMisses: the ticks of the drilled plan in the window that did
// not succeed (missed, abandoned, failed runs) are returned oldest first;
// successes, other plans, other kinds and ticks after the incident are
// not; the scan stops at the first record before the window.
func TestScheduleMisses(t *testing.T) {
	incident := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return incident.Add(time.Duration(n) * time.Hour) }
	log := recordsNewestFirst{
		scheduleRecord(h(1), h(1), "cp", "missed", "suspended", evidence.OutcomeFailure), // after the incident
		scheduleRecord(h(-1), h(-1), "cp", "ran", "", evidence.OutcomeSuccess),
		scheduleRecord(h(-2), h(-2), "cp", "ran", "", evidence.OutcomeFailure),
		{Kind: evidence.KindBackup, Time: h(-2), Outcome: evidence.OutcomeFailure},
		scheduleRecord(h(-3), h(-3), "other", "missed", "concurrency-forbid", evidence.OutcomeFailure),
		scheduleRecord(h(-4), h(-5), "cp", "missed", "starting-deadline-exceeded", evidence.OutcomeFailure),
		scheduleRecord(h(-6), h(-6), "cp", "abandoned", "abandoned", evidence.OutcomeFailure),
		scheduleRecord(h(-30), h(-30), "cp", "missed", "suspended", evidence.OutcomeFailure), // before the window
		scheduleRecord(h(-7), h(-7), "cp", "missed", "suspended", evidence.OutcomeFailure),   // never reached
	}
	got, err := ScheduleMisses(context.Background(), log, "cp", incident, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := []ScheduleMiss{
		{Schedule: "cp-hourly", Tick: h(-6), Status: "abandoned", Reason: "abandoned"},
		{Schedule: "cp-hourly", Tick: h(-5), Status: "missed", Reason: "starting-deadline-exceeded"},
		{Schedule: "cp-hourly", Tick: h(-2), Status: "ran"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("miss %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

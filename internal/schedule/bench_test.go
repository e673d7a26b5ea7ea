package schedule

import "testing"

// BenchmarkDecideYearOfMinutes is the worst case of a five-field
// expression: a year of missed ticks, one a minute.
func BenchmarkDecideYearOfMinutes(b *testing.B) {
	s := Spec{Cron: mustCron(b, "* * * * *", "America/New_York")}
	st := State{LastTick: at(b, "2025-01-01T00:00:00Z")}
	now := at(b, "2026-01-01T00:00:00Z")
	for b.Loop() {
		if d := Decide(s, st, now); d.Missed[0].Count != 525600 {
			b.Fatal(show(d))
		}
	}
}

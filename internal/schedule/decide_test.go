package schedule

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/lifeboat-dr/lifeboat/internal/config"
)

// at parses an RFC 3339 time.
func at(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// mustCron parses a cron expression as config does, read in zone tz.
func mustCron(t testing.TB, expr, tz string) cron.Schedule {
	t.Helper()
	c, err := cron.ParseStandard(expr)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := c.(*cron.SpecSchedule); ok {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			t.Fatal(err)
		}
		s.Location = loc
	}
	return c
}

// list is a cron.Schedule with a fixed list of ticks, ascending.
type list []time.Time

func (l list) Next(t time.Time) time.Time {
	for _, x := range l {
		if x.After(t) {
			return x
		}
	}
	return time.Time{}
}

// show formats a Decision in UTC, one field per line, for comparison.
func show(d Decision) string {
	f := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "run %s replace %v last %s next %s start %s\n", f(d.Run), d.Replace, f(d.LastTick), f(d.Next), f(d.NextStart))
	for _, m := range d.Missed {
		fmt.Fprintf(&b, "  missed %s %s x%d\n", f(m.Tick), m.Reason, m.Count)
	}
	return b.String()
}

func TestDecide(t *testing.T) {
	daily := mustCron(t, "0 2 * * *", "UTC")
	hourly := mustCron(t, "@hourly", "UTC")
	d := func(day int) string { return fmt.Sprintf("2026-01-%02dT02:00:00Z", day) }
	miss := func(tick string, r Reason) Miss { return Miss{Tick: at(t, tick), Reason: r, Count: 1} }
	var superseded99 []Miss // the hours before the 100th due tick
	for h := 1; h < 100; h++ {
		superseded99 = append(superseded99, Miss{Tick: at(t, "2026-01-01T00:00:00Z").Add(time.Duration(h) * time.Hour), Reason: ReasonSuperseded, Count: 1})
	}
	tests := []struct {
		name  string
		spec  Spec
		state State
		now   string
		run   string // "" for none
		repl  bool
		miss  []Miss
		last  string // "" for zero
		next  string // NextStart is Next (no jitter here)
	}{
		{
			name:  "first load, nothing due yet",
			spec:  Spec{Cron: daily},
			state: State{Since: at(t, "2026-01-10T01:00:00Z")},
			now:   "2026-01-10T01:00:00Z",
			next:  d(10),
		},
		{
			name:  "first load never runs a tick before Since",
			spec:  Spec{Cron: daily},
			state: State{Since: at(t, "2026-01-10T03:00:00Z")},
			now:   "2026-01-10T03:00:00Z",
			next:  d(11),
		},
		{
			name:  "first load, then the first tick",
			spec:  Spec{Cron: daily},
			state: State{Since: at(t, "2026-01-10T01:00:00Z")},
			now:   "2026-01-10T02:00:00Z",
			run:   d(10), last: d(10), next: d(11),
		},
		{
			name: "no history and no Since: nothing before now",
			spec: Spec{Cron: daily},
			now:  "2026-01-10T03:00:00Z",
			next: d(11),
		},
		{
			name:  "on time",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(9))},
			now:   d(10),
			run:   d(10), last: d(10), next: d(11),
		},
		{
			name:  "a second before the tick",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(9))},
			now:   "2026-01-10T01:59:59Z",
			last:  d(9), next: d(10),
		},
		{
			name:  "the tick already decided is not decided again",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(10))},
			now:   "2026-01-10T02:00:30Z",
			last:  d(10), next: d(11),
		},
		{
			name:  "restart after downtime, no deadline: the most recent runs, older ones superseded",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(7)), Since: at(t, "2026-01-10T05:00:00Z")},
			now:   "2026-01-10T05:00:00Z",
			run:   d(10), last: d(10), next: d(11),
			miss: []Miss{miss(d(8), ReasonSuperseded), miss(d(9), ReasonSuperseded)},
		},
		{
			name:  "restart after downtime within the deadline: older ones past it are missed by deadline",
			spec:  Spec{Cron: daily, StartingDeadline: 30 * time.Hour},
			state: State{LastTick: at(t, d(6))},
			now:   "2026-01-10T05:00:00Z",
			run:   d(10), last: d(10), next: d(11),
			miss: []Miss{
				miss(d(7), ReasonDeadline),
				miss(d(8), ReasonDeadline),
				miss(d(9), ReasonSuperseded), // 27h late: could have run, but d(10) is newer
			},
		},
		{
			name:  "deadline exceeded: nothing runs",
			spec:  Spec{Cron: daily, StartingDeadline: 30 * time.Minute},
			state: State{LastTick: at(t, d(8))},
			now:   "2026-01-10T03:00:00Z",
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(9), ReasonDeadline), miss(d(10), ReasonDeadline)},
		},
		{
			name:  "exactly at the deadline still runs",
			spec:  Spec{Cron: daily, StartingDeadline: 30 * time.Minute},
			state: State{LastTick: at(t, d(9))},
			now:   "2026-01-10T02:30:00Z",
			run:   d(10), last: d(10), next: d(11),
		},
		{
			name:  "a nanosecond past the deadline",
			spec:  Spec{Cron: daily, StartingDeadline: 30 * time.Minute},
			state: State{LastTick: at(t, d(9))},
			now:   "2026-01-10T02:30:00.000000001Z",
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(10), ReasonDeadline)},
		},
		{
			name:  "suspended: every due tick is missed",
			spec:  Spec{Cron: daily, Suspend: true},
			state: State{LastTick: at(t, d(8))},
			now:   "2026-01-10T05:00:00Z",
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(9), ReasonSuspended), miss(d(10), ReasonSuspended)},
		},
		{
			name:  "suspended, nothing due",
			spec:  Spec{Cron: daily, Suspend: true},
			state: State{LastTick: at(t, d(10))},
			now:   "2026-01-10T05:00:00Z",
			last:  d(10), next: d(11),
		},
		{
			name:  "un-suspended without skipImmediately: the most recent tick runs late",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(8)), Since: at(t, "2026-01-10T03:00:00Z")},
			now:   "2026-01-10T03:00:00Z",
			run:   d(10), last: d(10), next: d(11),
			miss: []Miss{miss(d(9), ReasonSuperseded)},
		},
		{
			name:  "un-suspended with skipImmediately: ticks before Since never run",
			spec:  Spec{Cron: daily, SkipImmediately: true},
			state: State{LastTick: at(t, d(8)), Since: at(t, "2026-01-10T03:00:00Z")},
			now:   "2026-01-10T03:00:00Z",
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(9), ReasonSkipImmediately), miss(d(10), ReasonSkipImmediately)},
		},
		{
			name:  "skipImmediately: a tick after Since runs",
			spec:  Spec{Cron: daily, SkipImmediately: true},
			state: State{LastTick: at(t, d(8)), Since: at(t, "2026-01-09T12:00:00Z")},
			now:   d(10),
			run:   d(10), last: d(10), next: d(11),
			miss: []Miss{miss(d(9), ReasonSkipImmediately)},
		},
		{
			name:  "skipImmediately at Since exactly: the tick at Since is skipped",
			spec:  Spec{Cron: daily, SkipImmediately: true},
			state: State{LastTick: at(t, d(9)), Since: at(t, d(10))},
			now:   d(10),
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(10), ReasonSkipImmediately)},
		},
		{
			name:  "skipImmediately on first load is the same as without",
			spec:  Spec{Cron: daily, SkipImmediately: true},
			state: State{Since: at(t, "2026-01-10T01:00:00Z")},
			now:   d(10),
			run:   d(10), last: d(10), next: d(11),
		},
		{
			name:  "suspended with skipImmediately: suspension is the reason",
			spec:  Spec{Cron: daily, Suspend: true, SkipImmediately: true},
			state: State{LastTick: at(t, d(8)), Since: at(t, "2026-01-09T12:00:00Z")},
			now:   d(10),
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(9), ReasonSuspended), miss(d(10), ReasonSuspended)},
		},
		{
			name:  "100 due ticks: the most recent runs",
			spec:  Spec{Cron: hourly},
			state: State{LastTick: at(t, "2026-01-01T00:00:00Z")},
			now:   "2026-01-05T04:00:00Z", // ticks 01:00 on the 1st .. 04:00 on the 5th: 100
			run:   "2026-01-05T04:00:00Z", last: "2026-01-05T04:00:00Z", next: "2026-01-05T05:00:00Z",
			miss: superseded99,
		},
		{
			name:  "101 due ticks: too many, none runs",
			spec:  Spec{Cron: hourly},
			state: State{LastTick: at(t, "2026-01-01T00:00:00Z")},
			now:   "2026-01-05T05:00:00Z",
			last:  "2026-01-05T05:00:00Z", next: "2026-01-05T06:00:00Z",
			miss: []Miss{{Tick: at(t, "2026-01-05T05:00:00Z"), Reason: ReasonTooMany, Count: 101}},
		},
		{
			name:  "many more than 100 due ticks",
			spec:  Spec{Cron: hourly, StartingDeadline: time.Hour},
			state: State{LastTick: at(t, "2026-01-01T00:00:00Z")},
			now:   "2026-01-10T00:30:00Z",
			last:  "2026-01-10T00:00:00Z", next: "2026-01-10T01:00:00Z",
			miss: []Miss{{Tick: at(t, "2026-01-10T00:00:00Z"), Reason: ReasonTooMany, Count: 216}},
		},
		{
			name:  "more than 100 while suspended: one suspended miss counting them",
			spec:  Spec{Cron: hourly, Suspend: true},
			state: State{LastTick: at(t, "2026-01-01T00:00:00Z")},
			now:   "2026-01-10T00:30:00Z",
			last:  "2026-01-10T00:00:00Z", next: "2026-01-10T01:00:00Z",
			miss: []Miss{{Tick: at(t, "2026-01-10T00:00:00Z"), Reason: ReasonSuspended, Count: 216}},
		},
		{
			name:  "more than 100 before Since with skipImmediately, then one after it runs",
			spec:  Spec{Cron: hourly, SkipImmediately: true},
			state: State{LastTick: at(t, "2026-01-01T00:00:00Z"), Since: at(t, "2026-01-09T23:30:00Z")},
			now:   "2026-01-10T00:00:00Z",
			run:   "2026-01-10T00:00:00Z", last: "2026-01-10T00:00:00Z", next: "2026-01-10T01:00:00Z",
			miss: []Miss{{Tick: at(t, "2026-01-09T23:00:00Z"), Reason: ReasonSkipImmediately, Count: 215}},
		},
		{
			name:  "Forbid with a run in progress",
			spec:  Spec{Cron: daily, Concurrency: config.ConcurrencyForbid},
			state: State{LastTick: at(t, d(9)), Running: 1},
			now:   d(10),
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(10), ReasonForbid)},
		},
		{
			name:  "no policy means Forbid",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(9)), Running: 1},
			now:   d(10),
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(10), ReasonForbid)},
		},
		{
			name:  "an unknown policy means Forbid",
			spec:  Spec{Cron: daily, Concurrency: "Sometimes"},
			state: State{LastTick: at(t, d(9)), Running: 2},
			now:   d(10),
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(10), ReasonForbid)},
		},
		{
			name:  "Forbid with nothing running",
			spec:  Spec{Cron: daily, Concurrency: config.ConcurrencyForbid},
			state: State{LastTick: at(t, d(9))},
			now:   d(10),
			run:   d(10), last: d(10), next: d(11),
		},
		{
			name:  "Forbid with a run in progress after downtime: older superseded, newest forbidden",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(8)), Running: 1},
			now:   d(10),
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(9), ReasonSuperseded), miss(d(10), ReasonForbid)},
		},
		{
			name:  "Allow with a run in progress",
			spec:  Spec{Cron: daily, Concurrency: config.ConcurrencyAllow},
			state: State{LastTick: at(t, d(9)), Running: 3},
			now:   d(10),
			run:   d(10), last: d(10), next: d(11),
		},
		{
			name:  "Replace with a run in progress",
			spec:  Spec{Cron: daily, Concurrency: config.ConcurrencyReplace},
			state: State{LastTick: at(t, d(9)), Running: 1},
			now:   d(10),
			run:   d(10), repl: true, last: d(10), next: d(11),
		},
		{
			name:  "Replace with nothing running",
			spec:  Spec{Cron: daily, Concurrency: config.ConcurrencyReplace},
			state: State{LastTick: at(t, d(9))},
			now:   d(10),
			run:   d(10), last: d(10), next: d(11),
		},
		{
			name:  "the deadline comes before the concurrency policy",
			spec:  Spec{Cron: daily, Concurrency: config.ConcurrencyReplace, StartingDeadline: time.Minute},
			state: State{LastTick: at(t, d(9)), Running: 1},
			now:   "2026-01-10T02:05:00Z",
			last:  d(10), next: d(11),
			miss: []Miss{miss(d(10), ReasonDeadline)},
		},
		{
			name:  "@every 5s from the moment of loading",
			spec:  Spec{Cron: mustCron(t, "@every 5s", "UTC")},
			state: State{Since: at(t, "2026-01-10T12:00:00.5Z")},
			now:   "2026-01-10T12:00:12Z",
			run:   "2026-01-10T12:00:10Z", last: "2026-01-10T12:00:10Z", next: "2026-01-10T12:00:15Z",
			miss: []Miss{miss("2026-01-10T12:00:05Z", ReasonSuperseded)},
		},
		{
			name:  "@every 5s, next decision",
			spec:  Spec{Cron: mustCron(t, "@every 5s", "UTC")},
			state: State{LastTick: at(t, "2026-01-10T12:00:10Z"), Since: at(t, "2026-01-10T12:00:00.5Z")},
			now:   "2026-01-10T12:00:15.002Z",
			run:   "2026-01-10T12:00:15Z", last: "2026-01-10T12:00:15Z", next: "2026-01-10T12:00:20Z",
		},
		{
			name:  "a schedule that never fires again",
			spec:  Spec{Cron: list{at(t, d(1)), at(t, d(2))}},
			state: State{LastTick: at(t, d(1))},
			now:   d(5),
			run:   d(2), last: d(2), next: "",
		},
		{
			name:  "LastTick ahead of the clock (clock skew): nothing due",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(12))},
			now:   d(10),
			last:  d(12), next: d(13),
		},
		{
			name:  "restored: ticks before the restore are missed, the restore runs at once, past any deadline",
			spec:  Spec{Cron: daily, StartingDeadline: time.Minute},
			state: State{LastTick: at(t, d(7)), RestoredAt: at(t, "2026-01-10T05:00:00Z")},
			now:   "2026-01-10T09:00:00Z",
			run:   "2026-01-10T05:00:00Z",
			miss:  []Miss{miss(d(8), ReasonRestored), miss(d(9), ReasonRestored), miss(d(10), ReasonRestored)},
			last:  "2026-01-10T05:00:00Z", next: d(11),
		},
		{
			name:  "restored, and a tick after the restore is due: that tick runs instead",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(7)), RestoredAt: at(t, "2026-01-09T05:00:00Z")},
			now:   "2026-01-10T03:00:00Z",
			run:   d(10),
			miss:  []Miss{miss(d(8), ReasonRestored), miss(d(9), ReasonRestored)},
			last:  d(10), next: d(11),
		},
		{
			name:  "restored, and the tick after the restore is past its deadline: it runs anyway",
			spec:  Spec{Cron: daily, StartingDeadline: 5 * time.Minute},
			state: State{LastTick: at(t, d(7)), RestoredAt: at(t, "2026-01-09T05:00:00Z")},
			now:   "2026-01-10T03:00:00Z",
			run:   d(10),
			miss:  []Miss{miss(d(8), ReasonRestored), miss(d(9), ReasonRestored)},
			last:  d(10), next: d(11),
		},
		{
			name:  "a restore already decided (before LastTick) changes nothing",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, "2026-01-10T05:00:00Z"), RestoredAt: at(t, "2026-01-10T05:00:00Z")},
			now:   "2026-01-10T09:00:00Z",
			last:  "2026-01-10T05:00:00Z", next: d(11),
		},
		{
			name:  "restored while a run is in progress under Forbid: the restore's run is missed",
			spec:  Spec{Cron: daily},
			state: State{LastTick: at(t, d(10)), RestoredAt: at(t, "2026-01-10T05:00:00Z"), Running: 1},
			now:   "2026-01-10T09:00:00Z",
			miss:  []Miss{miss("2026-01-10T05:00:00Z", ReasonForbid)},
			last:  "2026-01-10T05:00:00Z", next: d(11),
		},
		{
			name:  "restored while suspended: nothing runs, the restore stays pending",
			spec:  Spec{Cron: daily, Suspend: true},
			state: State{LastTick: at(t, d(9)), RestoredAt: at(t, "2026-01-10T05:00:00Z")},
			now:   "2026-01-10T09:00:00Z",
			miss:  []Miss{miss(d(10), ReasonSuspended)},
			last:  d(10), next: d(11),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.spec, tt.state, at(t, tt.now))
			want := Decision{Replace: tt.repl, Missed: tt.miss}
			if tt.run != "" {
				want.Run = at(t, tt.run)
			}
			if tt.last != "" {
				want.LastTick = at(t, tt.last)
			}
			if tt.next != "" {
				want.Next = at(t, tt.next)
				want.NextStart = want.Next
			}
			if show(got) != show(want) {
				t.Errorf("got:\n%swant:\n%s", show(got), show(want))
			}
		})
	}
}

func TestDecideJitter(t *testing.T) {
	s := Spec{Name: "nightly", Cron: mustCron(t, "0 2 * * *", "UTC"), Jitter: 30 * time.Minute, JitterSeed: "clusters/east", StartingDeadline: time.Hour}
	off := Offset(s)
	if off <= 0 || off >= s.Jitter {
		t.Fatalf("offset %s not in (0, %s); pick another seed for this test", off, s.Jitter)
	}
	tick := at(t, "2026-01-10T02:00:00Z")
	st := State{LastTick: at(t, "2026-01-09T02:00:00Z")}

	// Before its start the tick is not due: wake at its start.
	d := Decide(s, st, tick.Add(off-time.Nanosecond))
	if !d.Run.IsZero() || len(d.Missed) != 0 || !d.Next.Equal(tick) || !d.NextStart.Equal(tick.Add(off)) || !d.LastTick.Equal(st.LastTick) {
		t.Errorf("before the start:\n%s", show(d))
	}
	// At its start it runs, and the next start is a day later.
	d = Decide(s, st, tick.Add(off))
	if !d.Run.Equal(tick) || !d.NextStart.Equal(tick.Add(24*time.Hour+off)) {
		t.Errorf("at the start:\n%s", show(d))
	}
	// The deadline counts from the start, not from the tick.
	if d = Decide(s, st, tick.Add(off+time.Hour)); !d.Run.Equal(tick) {
		t.Errorf("at start + deadline:\n%s", show(d))
	}
	d = Decide(s, st, tick.Add(off+time.Hour+time.Second))
	if !d.Run.IsZero() || len(d.Missed) != 1 || d.Missed[0].Reason != ReasonDeadline {
		t.Errorf("past start + deadline:\n%s", show(d))
	}
}

func TestOffset(t *testing.T) {
	s := Spec{Name: "nightly", Jitter: time.Hour, JitterSeed: "clusters/east"}
	if a, b := Offset(s), Offset(s); a != b {
		t.Fatalf("Offset is not deterministic: %s, %s", a, b)
	}
	// The formula is part of the contract: replicas and releases agree.
	if got, want := Offset(s), Offset(Spec{Name: "nightly", Jitter: time.Hour, JitterSeed: "clusters/east", Cron: list{}}); got != want {
		t.Errorf("Offset depends on more than name, seed and jitter: %s, %s", got, want)
	}
	for _, j := range []time.Duration{0, -time.Minute} {
		if got := Offset(Spec{Name: "nightly", Jitter: j, JitterSeed: "x"}); got != 0 {
			t.Errorf("jitter %s: got offset %s, want 0", j, got)
		}
	}
	if got := Offset(Spec{Name: "nightly", Jitter: 1, JitterSeed: "x"}); got != 0 {
		t.Errorf("jitter 1ns: got %s, want 0", got)
	}

	// Different seeds spread over [0, jitter); so do different names.
	for _, vary := range []string{"seed", "name"} {
		const n = 1000
		seen := make(map[time.Duration]bool)
		var quarters [4]int
		for i := range n {
			s := Spec{Name: "nightly", JitterSeed: "clusters/east", Jitter: time.Hour}
			if vary == "seed" {
				s.JitterSeed = fmt.Sprintf("clusters/c%d", i)
			} else {
				s.Name = fmt.Sprintf("nightly-%d", i)
			}
			off := Offset(s)
			if off < 0 || off >= s.Jitter {
				t.Fatalf("%s: offset %s outside [0, %s)", s.JitterSeed, off, s.Jitter)
			}
			seen[off] = true
			quarters[off/(15*time.Minute)]++
		}
		if len(seen) < n-5 {
			t.Errorf("varying the %s: only %d distinct offsets of %d", vary, len(seen), n)
		}
		for q, c := range quarters {
			if c < n/4-100 || c > n/4+100 {
				t.Errorf("varying the %s: quarter %d of the jitter holds %d of %d offsets", vary, q, c, n)
			}
		}
	}
	// The separator keeps name and seed apart.
	if Offset(Spec{Name: "ab", JitterSeed: "c", Jitter: time.Hour}) == Offset(Spec{Name: "a", JitterSeed: "bc", Jitter: time.Hour}) {
		t.Error("name and seed run together")
	}
}

func TestNewSpec(t *testing.T) {
	objs, err := config.Parse("s.yaml", []byte(`apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: nightly}
spec:
  cron: "30 1 * * *"
  timeZone: America/New_York
  backupPlan: plan
  startingDeadline: 1h
  jitter: 10m
  skipImmediately: true
  suspend: true
  concurrencyPolicy: Replace
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSpec(objs[0].(*config.Schedule), "clusters/east")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "nightly" || s.StartingDeadline != time.Hour || s.Jitter != 10*time.Minute || !s.SkipImmediately || !s.Suspend ||
		s.Concurrency != config.ConcurrencyReplace || s.JitterSeed != "clusters/east" {
		t.Errorf("got %+v", s)
	}
	if got := s.Cron.Next(at(t, "2026-06-01T00:00:00Z")); !got.Equal(at(t, "2026-06-01T05:30:00Z")) {
		t.Errorf("cron not in America/New_York: next %s", got)
	}
	if _, err := NewSpec(&config.Schedule{Spec: config.ScheduleSpec{Cron: "nope"}}, ""); err == nil {
		t.Error("bad cron: got no error")
	}
}

// loop plays the serve loop over [from, to): it decides at each NextStart
// and records what ran and what was missed.
func loop(t *testing.T, s Spec, from, to time.Time) (runs []time.Time, missed []Miss) {
	t.Helper()
	st := State{Since: from}
	now := from
	for i := 0; now.Before(to); i++ {
		if i > 100000 {
			t.Fatal("the loop does not advance")
		}
		d := Decide(s, st, now)
		if !d.Run.IsZero() {
			runs = append(runs, d.Run)
		}
		missed = append(missed, d.Missed...)
		st.LastTick = d.LastTick
		if d.NextStart.IsZero() {
			break
		}
		if !d.NextStart.After(now) {
			t.Fatalf("at %s: next start %s is not after now", now, d.NextStart)
		}
		now = d.NextStart
	}
	return runs, missed
}

func TestLoopRunsEveryTickOnce(t *testing.T) {
	for _, expr := range []string{"0 2 * * *", "*/15 * * * *", "30 1 * * *", "0 * * * *", "@every 7m"} {
		t.Run(expr, func(t *testing.T) {
			s := Spec{Name: "s", Cron: mustCron(t, expr, "America/New_York"), Jitter: 5 * time.Minute, JitterSeed: "seed", StartingDeadline: 10 * time.Minute}
			from, to := at(t, "2026-02-25T00:00:00Z"), at(t, "2026-03-15T00:00:00Z")
			runs, missed := loop(t, s, from, to)
			if len(missed) != 0 {
				t.Errorf("a loop waking on time missed %v", missed)
			}
			var want []time.Time
			for x := next(s.Cron, from); x.Add(Offset(s)).Before(to); x = next(s.Cron, x) {
				want = append(want, x)
			}
			if len(runs) != len(want) || len(runs) == 0 {
				t.Fatalf("got %d runs, want %d", len(runs), len(want))
			}
			for i := range runs {
				if !runs[i].Equal(want[i]) {
					t.Fatalf("run %d: got %s, want %s", i, runs[i], want[i])
				}
			}
		})
	}
}

func TestDaylightSaving(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	local := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, ny) }

	t.Run("spring forward: 02:30 does not exist on 2026-03-08", func(t *testing.T) {
		c := mustCron(t, "30 2 * * *", "America/New_York")
		// robfig/cron goes from the 7th straight to the 9th.
		if got := c.Next(local(2026, 3, 7, 2, 30)); !got.Equal(at(t, "2026-03-09T06:30:00Z")) {
			t.Fatalf("robfig/cron: next after 03-07 02:30 is %s", got.In(ny))
		}
		s := Spec{Cron: c}
		st := State{LastTick: local(2026, 3, 7, 2, 30)}
		d := Decide(s, st, local(2026, 3, 8, 12, 0))
		if !d.Run.IsZero() || len(d.Missed) != 0 || !d.Next.Equal(at(t, "2026-03-09T06:30:00Z")) {
			t.Errorf("on 03-08:\n%s", show(d))
		}
		runs, _ := loop(t, s, local(2026, 3, 7, 0, 0), local(2026, 3, 10, 0, 0))
		if len(runs) != 2 || !runs[0].Equal(at(t, "2026-03-07T07:30:00Z")) || !runs[1].Equal(at(t, "2026-03-09T06:30:00Z")) {
			t.Errorf("runs %v, want 03-07 and 03-09 at 02:30 local", runs)
		}
	})

	t.Run("fall back: 01:30 happens twice on 2026-11-01 and runs once", func(t *testing.T) {
		c := mustCron(t, "30 1 * * *", "America/New_York")
		first := at(t, "2026-11-01T05:30:00Z")  // 01:30 EDT
		second := at(t, "2026-11-01T06:30:00Z") // 01:30 EST
		if got := c.Next(first); !got.Equal(second) {
			t.Fatalf("robfig/cron: next after 01:30 EDT is %s, want 01:30 EST", got)
		}
		s := Spec{Cron: c}
		d := Decide(s, State{LastTick: at(t, "2026-10-31T05:30:00Z")}, first)
		if !d.Run.Equal(first) || !d.Next.Equal(at(t, "2026-11-02T06:30:00Z")) {
			t.Errorf("at 01:30 EDT:\n%s", show(d))
		}
		d = Decide(s, State{LastTick: first}, second)
		if !d.Run.IsZero() || len(d.Missed) != 0 {
			t.Errorf("at 01:30 EST:\n%s", show(d))
		}
		runs, _ := loop(t, s, local(2026, 10, 31, 12, 0), local(2026, 11, 2, 12, 0))
		if len(runs) != 2 || !runs[0].Equal(first) || !runs[1].Equal(at(t, "2026-11-02T06:30:00Z")) {
			t.Errorf("runs %v, want 11-01 01:30 EDT and 11-02 01:30 EST", runs)
		}
	})

	t.Run("fall back: fixed hours drop the repeated pass", func(t *testing.T) {
		c := mustCron(t, "*/30 1 * * *", "America/New_York")
		if got := next(c, at(t, "2026-11-01T05:30:00Z")); !got.Equal(at(t, "2026-11-02T06:00:00Z")) {
			t.Errorf("next after 01:30 EDT: %s, want 11-02 01:00 EST", got.In(ny))
		}
	})

	t.Run("fall back: an expression firing every hour keeps both passes", func(t *testing.T) {
		c := mustCron(t, "0 * * * *", "America/New_York")
		if got := next(c, at(t, "2026-11-01T05:00:00Z")); !got.Equal(at(t, "2026-11-01T06:00:00Z")) {
			t.Errorf("next after 01:00 EDT: %s, want 01:00 EST", got.In(ny))
		}
	})

	t.Run("UTC and @every are never dropped", func(t *testing.T) {
		for _, c := range []cron.Schedule{mustCron(t, "30 1 * * *", "UTC"), mustCron(t, "@every 1h", "America/New_York")} {
			x := at(t, "2026-11-01T04:30:00Z")
			for range 48 {
				if y := next(c, x); y.Sub(x) > 24*time.Hour || y.IsZero() {
					t.Fatalf("%T: gap from %s to %s", c, x, y)
				} else {
					x = y
				}
			}
		}
	})
}

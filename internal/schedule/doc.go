// Package schedule decides, for the `lifeboat serve` loop, what each
// Schedule does at a given moment: which cron tick to run now, which ticks
// will never run and why, and when to wake next. It mirrors the semantics
// of a Kubernetes CronJob.
//
// Everything here is a pure function over plain data: no I/O, no
// goroutines, no clock. The moment of the decision comes in as an argument,
// so the rules are table-tested with fixed times and no sleeping. The loop
// that calls Decide owns the clock, the Lease, the claims and the evidence
// records.
//
// Invariants of Decide:
//
//   - A tick is the nominal time the cron expression names (spec.cron in
//     spec.timeZone). Its start is the tick plus Offset, the schedule's
//     jitter delay, a fixed value in [0, jitter) derived from the schedule
//     name and a seed (the cluster's store prefix) by SHA-256, so every
//     replica and every restart computes the same one. A tick is due once
//     its start is not after now.
//   - Every tick is decided exactly once: a tick is considered only when it
//     is after State.LastTick, and the Decision's LastTick, which the loop
//     stores once it has recorded the decision, is the newest tick the
//     decision settles. A tick is decided either as the one Run, or as a
//     Miss with a Reason; the reasons are exported constants because they
//     are written into signed evidence records.
//   - With no history (State.LastTick zero), no tick at or before
//     State.Since (the moment the schedule was first loaded) is ever
//     considered, like a CronJob never runs times before its creation.
//   - At most one tick runs per decision: the most recent due tick, and only
//     when it is within StartingDeadline of its start. Older due ticks are
//     missed: ReasonDeadline when past the deadline, ReasonSuperseded
//     otherwise. More than 100 due ticks run none and are one Miss with
//     ReasonTooMany and their Count.
//   - While suspended every due tick is a Miss with ReasonSuspended, so the
//     evidence log shows every tick that did not run.
//   - With SkipImmediately, ticks at or before State.Since (the moment of
//     un-suspending) never run: they are Misses with ReasonSkipImmediately.
//   - The concurrency policy applies to the tick that would run: Forbid
//     (the default, and what an unknown value means) makes it a Miss with
//     ReasonForbid while a run is in progress; Allow runs it; Replace runs
//     it and sets Decision.Replace so that the loop cancels the running one
//     first.
//   - After a restore (State.RestoredAt after State.LastTick), due ticks
//     at or before it are Misses with ReasonRestored, and unless a later
//     tick is due, RestoredAt itself runs at once as a tick, past any
//     StartingDeadline: the restored cluster's first backup.
//   - Next is the first tick not yet due, NextStart its start: when the
//     loop should decide again.
//
// Daylight saving time. Cron expressions are read in the schedule's zone by
// robfig/cron. When clocks spring forward, a time in the skipped hour does
// not exist and does not run that day: "30 2 * * *" in America/New_York
// has no tick on 2026-03-08 and runs again at 02:30 on 2026-03-09. When
// clocks fall back, robfig/cron names the repeated wall-clock time twice
// ("30 1 * * *" at 01:30 EDT and again at 01:30 EST on 2026-11-01); this
// package drops the second occurrence for an expression that fixes its
// hours, so a daily schedule runs once that day. An expression that fires
// in every hour of the day ("0 * * * *", "*/15 * * * *") keeps both passes,
// which are an hour apart in real time, as classic cron does.
//
// Cost. Decide steps through the ticks between State.LastTick and now one
// by one: at most 525,960 a year for a five-field expression (one a
// minute, under a second of work, BenchmarkDecideYearOfMinutes); "@every"
// schedules, meant for tests and demos, may have more.
//
// Claims. TickKey names the object a replica writes, with the store's
// never-overwrite condition, to claim a tick before running it:
// runs/<schedule>/<tick in UTC as 20060102T150405Z>.json. The name is
// unique per tick because ticks fall on whole seconds: the five-field cron
// syntax has no seconds field, and robfig/cron rounds "@every" intervals
// down to whole seconds (never below one) and its ticks to whole seconds,
// so a sub-second tick cannot be expressed.
package schedule

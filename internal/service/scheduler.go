package service

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/schedule"
	"github.com/lifeboat-dr/lifeboat/internal/server"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// settleAttempts is how many times a finished run's outcome is written
// before it is left to the next leader (1+2+4+8 s between them).
const settleAttempts = 5

// retryAfter is how soon a tick is tried again after a store error.
const retryAfter = 5 * time.Second

// maxSleep bounds the loop's sleep, so a clock jump is noticed.
const maxSleep = time.Minute

// statusScan is how many evidence records are read backwards at start to
// rebuild the schedules' last outcomes (docs/format.md §7.4).
const statusScan = 5000

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	// Identity names this replica in claims and outcomes. Required.
	Identity string
	// Runner runs the jobs. Required.
	Runner Runner
	// Signer signs `schedule` records. Required.
	Signer *evidence.Signer
	// Clock is the time source; nil means the real clock.
	Clock clock.WithTicker
	// Metrics receives the service's metrics; nil records none.
	Metrics *server.Metrics
	// Logger receives one line per run start and end; nil discards.
	Logger *slog.Logger
	// LeaderElection says whether a Lease decides who leads; without it a
	// replica settles only its own orphaned claims (§7.2).
	LeaderElection bool
	// JitterSeed spreads jitter between clusters (the cluster's identity).
	JitterSeed string
	// AfterRun, if set, is called with each finished run's result after
	// its outcome is settled.
	AfterRun func(Target, RunResult)
}

// Scheduler decides and runs the ticks of every Schedule in its
// configuration. Its loop runs only while Lead is called (while this
// replica leads); Drain ends the runs on shutdown.
type Scheduler struct {
	o     SchedulerOptions
	log   *slog.Logger
	clock clock.WithTicker

	mu      sync.Mutex
	env     *wire.Env
	entries map[string]*entry
	leading bool
	kick    chan struct{}
	runs    sync.WaitGroup
	// running holds every run in progress, by schedule and tick, whether
	// or not its schedule is still configured.
	running map[runKey]*runHandle
	// draining is set by Drain: no run starts after it (runs.Add happens
	// under mu, before the claim, only while it is false).
	draining bool
}

// entry is one Schedule's configuration and (shared with the entries of
// later configurations of the same schedule and store) its state.
type entry struct {
	sched  *config.Schedule
	spec   schedule.Spec
	target Target
	// storeName is where its claims and records go.
	storeName string
	*schedState
}

// schedState is what a schedule has learnt and decided. A reload that
// keeps the schedule on the same store keeps the same schedState, so a
// decision in progress on the old entry lands where the new one reads it.
type schedState struct {
	st store.Store

	state   schedule.State
	decided bool // state.LastTick was rebuilt from the store
	retryAt time.Time
	// recheckAt, when set, is when prepare runs again to reconcile an
	// outcome that had no record yet.
	recheckAt time.Time
	// pending is the tick of the outcome recheckAt is for.
	pending  time.Time
	next     time.Time
	lastRun  time.Time
	lastOK   time.Time
	lastOut  string
	lastID   string
	lastTick time.Time
}

type runHandle struct {
	cancel context.CancelFunc
	kind   string
}

type runKey struct {
	schedule string
	tick     time.Time
}

// runningTicks returns the ticks of name's runs in progress; s.mu held.
func (s *Scheduler) runningTicks(name string) []time.Time {
	var ticks []time.Time
	for k := range s.running {
		if k.schedule == name {
			ticks = append(ticks, k.tick)
		}
	}
	return ticks
}

// NewScheduler returns a Scheduler with no configuration; call SetConfig.
func NewScheduler(o SchedulerOptions) *Scheduler {
	s := &Scheduler{o: o, log: o.Logger, clock: o.Clock, entries: map[string]*entry{}, kick: make(chan struct{}, 1), running: map[runKey]*runHandle{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = clock.RealClock{}
	}
	return s
}

// ScheduleStore is the name of the store holding a schedule's claims and
// records (docs/format.md §7).
func ScheduleStore(set *config.Set, sc *config.Schedule) (string, error) {
	kind, name := sc.Spec.Target()
	switch kind {
	case config.KindBackupPlan:
		if p, ok := set.BackupPlan(name); ok {
			return p.Spec.Store, nil
		}
	case config.KindDrill:
		if d, ok := set.Drill(name); ok {
			if p, ok := set.BackupPlan(d.Spec.BackupPlan); ok {
				return p.Spec.Store, nil
			}
		}
	case config.KindRotationPolicy:
		if pol, ok := set.RotationPolicy(name); ok {
			if names := wire.StoresOfKeyProvider(set, pol.Spec.KeyProvider); len(names) > 0 {
				return names[0], nil
			}
			return "", fmt.Errorf("schedule %s: no BackupPlan uses the key provider of rotation policy %s, so it has no store", sc.Metadata.Name, name)
		}
	}
	return "", fmt.Errorf("schedule %s: no %s named %q", sc.Metadata.Name, kind, name)
}

// SetConfig swaps in a configuration. A schedule whose spec is unchanged
// keeps its state and running jobs; a removed one keeps its running jobs
// until they end but gets no new ticks; its metrics series are removed.
func (s *Scheduler) SetConfig(env *wire.Env) error {
	next := map[string]*entry{}
	for _, sc := range env.Set.Schedules {
		storeName, err := ScheduleStore(env.Set, sc)
		if err != nil {
			return err
		}
		spec, err := schedule.NewSpec(sc, s.o.JitterSeed)
		if err != nil {
			return fmt.Errorf("schedule %s: %w", sc.Metadata.Name, err)
		}
		kind, name := sc.Spec.Target()
		e := &entry{sched: sc, target: Target{Kind: kind, Name: name}, storeName: storeName, spec: spec}
		next[sc.Metadata.Name] = e
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, e := range next {
		old, ok := s.entries[name]
		switch {
		case !ok:
			e.schedState = &schedState{}
			e.state.Since = now
			continue
		case old.storeName == e.storeName:
			e.schedState = old.schedState // the same state, shared
		default:
			// Another store: its claims are read again (prepare); what is
			// known of the history is kept for the status page.
			e.schedState = &schedState{state: old.state}
			e.lastRun, e.lastOK, e.lastOut, e.lastID, e.lastTick = old.lastRun, old.lastOK, old.lastOut, old.lastID, old.lastTick
		}
		if old.spec.Suspend && !e.spec.Suspend {
			e.state.Since = now // un-suspended (schedule.State.Since)
		}
	}
	s.env, s.entries = env, next
	s.poke()
	return nil
}

func (s *Scheduler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Lead runs the loop until ctx ends (the Lease is lost, or the service
// stops). It first rebuilds each schedule's state from its store. When ctx
// ends, every run it started is cancelled at once unless stopping is
// closed first (then Drain decides).
func (s *Scheduler) Lead(ctx context.Context, stopping <-chan struct{}) {
	s.mu.Lock()
	s.leading = true
	for _, e := range s.entries {
		e.decided = false
	}
	s.mu.Unlock()
	if s.o.Metrics != nil {
		s.o.Metrics.SetLeader(true)
	}
	s.log.Info("leading: taking ticks", "identity", s.o.Identity)
	defer func() {
		s.mu.Lock()
		s.leading = false
		lost := true
		select {
		case <-stopping:
			lost = false
		default:
		}
		if lost {
			for k, h := range s.running {
				s.log.Warn("leadership lost: cancelling run", "schedule", k.schedule, "tick", k.tick)
				h.cancel()
			}
		}
		s.mu.Unlock()
		if s.o.Metrics != nil {
			s.o.Metrics.SetLeader(false)
		}
		s.log.Info("no longer leading", "identity", s.o.Identity)
	}()
	for {
		wake := s.step(ctx)
		d := max(wake.Sub(s.clock.Now()), 0)
		d = min(d, maxSleep)
		t := s.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-stopping:
			t.Stop()
			return
		case <-s.kick:
			t.Stop()
		case <-t.C():
		}
	}
}

// step decides every schedule at the clock's now and returns when to wake.
func (s *Scheduler) step(ctx context.Context) time.Time {
	now := s.clock.Now()
	wake := now.Add(maxSleep)
	s.mu.Lock()
	names := make([]string, 0, len(s.entries))
	for name := range s.entries {
		names = append(names, name)
	}
	env := s.env
	s.mu.Unlock()
	slices.Sort(names)
	for _, name := range names {
		if ctx.Err() != nil {
			return wake
		}
		s.mu.Lock()
		e, ok := s.entries[name]
		s.mu.Unlock()
		if !ok {
			continue
		}
		if w := s.decide(ctx, env, e, now); w.Before(wake) {
			wake = w
		}
	}
	return wake
}

// decide settles what is due for one schedule.
func (s *Scheduler) decide(ctx context.Context, env *wire.Env, e *entry, now time.Time) time.Time {
	name := e.sched.Metadata.Name
	if now.Before(e.retryAt) {
		return e.retryAt
	}
	s.mu.Lock()
	if !e.recheckAt.IsZero() && !now.Before(e.recheckAt) {
		e.recheckAt, e.decided = time.Time{}, false
	}
	s.mu.Unlock()
	if e.st == nil || !e.decided {
		if err := s.prepare(ctx, env, e, now); err != nil {
			s.log.Error("schedule's store unavailable; retrying", "schedule", name, "store", e.storeName, "err", err)
			if s.o.Metrics != nil {
				s.o.Metrics.StoreReachable(e.storeName, false)
			}
			e.retryAt = now.Add(retryAfter)
			return e.retryAt
		}
	}
	s.mu.Lock()
	e.state.Running = len(s.runningTicks(name))
	st := e.state
	s.mu.Unlock()
	d := schedule.Decide(e.spec, st, now)
	for _, m := range d.Missed {
		if err := s.settleMiss(ctx, env, e, m, now); err != nil {
			s.log.Error("recording a missed tick failed; retrying", "schedule", name, "tick", m.Tick, "err", err)
			e.retryAt = now.Add(retryAfter)
			return e.retryAt
		}
		s.advance(e, m.Tick)
	}
	if !d.Run.IsZero() {
		if d.Replace {
			s.mu.Lock()
			for _, tick := range s.runningTicks(name) {
				s.log.Info("concurrencyPolicy Replace: cancelling the running tick", "schedule", name, "tick", tick)
				s.running[runKey{name, tick}].cancel()
			}
			s.mu.Unlock()
		}
		if err := s.start(ctx, env, e, d.Run, now); err != nil {
			s.log.Error("claiming a tick failed; retrying", "schedule", name, "tick", d.Run, "err", err)
			e.retryAt = now.Add(retryAfter)
			return e.retryAt
		}
	}
	s.advance(e, d.LastTick)
	s.mu.Lock()
	e.next = d.Next
	s.mu.Unlock()
	if s.o.Metrics != nil && !d.Next.IsZero() {
		s.o.Metrics.SetNext(name, d.Next)
	}
	wake := d.NextStart
	if wake.IsZero() {
		wake = now.Add(maxSleep)
	}
	s.mu.Lock()
	if !e.recheckAt.IsZero() && e.recheckAt.Before(wake) {
		wake = e.recheckAt // an unrecorded outcome to reconcile (§7.2)
	}
	s.mu.Unlock()
	return wake
}

func (s *Scheduler) advance(e *entry, tick time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tick.After(e.state.LastTick) {
		e.state.LastTick = tick
	}
}

// prepare opens the schedule's store and rebuilds its state: the newest
// claim is the newest tick decided; claims of runs with no outcome whose
// claimant is gone are settled as abandoned (docs/format.md §7.2).
func (s *Scheduler) prepare(ctx context.Context, env *wire.Env, e *entry, now time.Time) error {
	if e.st == nil {
		st, _, err := env.StoreNamed(ctx, e.storeName, false)
		if err != nil {
			return err
		}
		s.mu.Lock()
		e.st = st
		s.mu.Unlock()
	}
	name := e.sched.Metadata.Name
	claims := map[time.Time]bool{}
	outcomes := map[time.Time]bool{}
	var newest, newestOutcome time.Time
	for info, err := range e.st.List(ctx, "runs/"+name+"/") {
		if err != nil {
			return fmt.Errorf("list runs/%s/: %w", name, err)
		}
		tick, isOutcome, ok := parseRunKey(name, info.Key)
		if !ok {
			continue
		}
		if tick.After(now.Add(clockSkew)) {
			// No replica claims a tick before it is due (its clock may
			// run ahead by clockSkew): someone else wrote this, and it
			// must not become the newest tick decided, which would stop
			// the schedule until then (docs/format.md §7.1).
			s.log.Error("an object under runs/ names a tick in the future; lifeboat never writes one, so it is ignored",
				"schedule", name, "key", info.Key, "tick", tick)
			continue
		}
		if isOutcome {
			outcomes[tick] = true
			if tick.After(newestOutcome) {
				newestOutcome = tick
			}
			continue
		}
		claims[tick] = true
		if tick.After(newest) {
			newest = tick
		}
	}
	for tick := range claims {
		if outcomes[tick] {
			continue
		}
		s.mu.Lock()
		_, mine := s.running[runKey{name, tick}]
		s.mu.Unlock()
		if mine {
			continue
		}
		data, err := readRunObject(ctx, e.st, ClaimKey(name, tick))
		if err != nil {
			return fmt.Errorf("read claim %s: %w", ClaimKey(name, tick), err)
		}
		c, err := ParseClaim(data)
		if err != nil {
			s.log.Error("unreadable claim left as it is", "schedule", name, "claim", ClaimKey(name, tick), "err", err)
			continue
		}
		orphan := c.Decision == DecisionSkip || (s.o.LeaderElection && c.Claimant != s.o.Identity) || c.Claimant == s.o.Identity
		if !orphan {
			continue
		}
		status, reason := StatusAbandoned, ReasonAbandoned
		if c.Decision == DecisionSkip {
			status, reason = StatusMissed, c.Reason
		}
		if err := s.settle(ctx, env, e, settlement{tick: tick, status: status, outcome: evidence.OutcomeFailure, reason: reason, missed: 1}, now); err != nil {
			return err
		}
		s.log.Warn("settled a claimed tick with no outcome", "schedule", name, "tick", tick, "claimant", c.Claimant, "status", status)
	}
	// The newest outcome is the one a writer that stopped may have left
	// without its record (§7.2).
	// A recheck is for the outcome that was found unrecorded, even if
	// newer ticks have been settled since.
	s.mu.Lock()
	want := e.pending
	e.pending = time.Time{}
	s.mu.Unlock()
	if want.IsZero() {
		want = newestOutcome
	}
	var last *Outcome
	if !want.IsZero() {
		data, err := readRunObject(ctx, e.st, OutcomeKey(name, want))
		if err != nil {
			return fmt.Errorf("read outcome %s: %w", OutcomeKey(name, want), err)
		}
		if o, err := ParseOutcome(data); err != nil {
			s.log.Error("unreadable outcome left as it is", "schedule", name, "outcome", OutcomeKey(name, want), "err", err)
		} else if !o.Tick.Equal(want) {
			s.log.Error("an outcome names another tick than its key; left as it is", "schedule", name, "outcome", OutcomeKey(name, want), "tick", o.Tick)
		} else {
			last = &o
		}
	}
	seen, complete, err := s.rebuildHistory(ctx, e, last)
	if err != nil {
		// The history only feeds the status page and metrics: a log that
		// does not read back is reported, and the schedule still runs.
		s.log.Error("last outcomes not rebuilt from the evidence log", "schedule", name, "store", e.storeName, "err", err)
	} else if last != nil && !seen && complete && (s.o.LeaderElection || last.Writer == s.o.Identity) {
		// Without leader election every replica would append it: only its
		// writer (restarted under the same identity) does.
		if err := s.reconcile(ctx, env, e, *last, now); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if newest.After(e.state.LastTick) {
		e.state.LastTick = newest
	}
	lastTick := e.state.LastTick
	s.mu.Unlock()
	restored, err := s.restoredAt(ctx, e, lastTick)
	if err != nil {
		s.log.Error("restore records not read from the evidence log; a backup after a restore waits for its next tick", "schedule", name, "store", e.storeName, "err", err)
	}
	s.mu.Lock()
	e.state.RestoredAt = restored
	e.decided = true
	s.mu.Unlock()
	if s.o.Metrics != nil {
		s.o.Metrics.StoreReachable(e.storeName, true)
	}
	return nil
}

// rebuildHistory fills a schedule's last outcome, last run and last
// success from its newest signed `schedule` records, read backwards from
// the head of its store's evidence log (docs/format.md §7.4). It stops at
// the newest success, or after statusScan records.
//
// It also reports whether the record of the newest outcome `want` (nil:
// none) was seen, and whether the scan went far enough to tell: that
// record is appended after its outcome was written, so the scan is
// complete once it passes a record appended well before the outcome's
// settledAt (clock skew between replicas allowed), or reaches the start
// of the log.
func (s *Scheduler) rebuildHistory(ctx context.Context, e *entry, want *Outcome) (seen, complete bool, err error) {
	name := e.sched.Metadata.Name
	var (
		found         bool
		tick, run, ok time.Time
		out, id       string
		read          int
		passed        bool
	)
	err = evidence.NewLog(e.st, s.o.Signer, s.clock.Now).Backwards(ctx, statusScan, func(r evidence.Record) bool {
		read++
		if want != nil && r.Time.Before(want.SettledAt.Add(-clockSkew)) {
			passed = true
		}
		if r.Kind != KindSchedule || r.Subject["schedule"] != name {
			return ok.IsZero() || !(want == nil || seen || passed)
		}
		if want != nil && subjectTime(r.Subject, "tick").Equal(want.Tick) {
			seen = true
		}
		finished := subjectTime(r.Subject, "finishedAt")
		if !found {
			found = true
			tick = subjectTime(r.Subject, "tick")
			out, _ = r.Subject["status"].(string)
			if out == StatusRan {
				out = r.Outcome
			}
			id, _ = r.Subject["run"].(string)
			run = subjectTime(r.Subject, "startedAt")
		}
		if r.Outcome == evidence.OutcomeSuccess && ok.IsZero() {
			ok = finished
		}
		return ok.IsZero() || !(want == nil || seen || passed)
	})
	if err != nil {
		return false, false, err
	}
	complete = seen || passed || read < statusScan
	s.mu.Lock()
	defer s.mu.Unlock()
	if found && (e.lastTick.IsZero() || tick.After(e.lastTick)) {
		e.lastTick, e.lastOut, e.lastID = tick, out, id
		if !run.IsZero() {
			e.lastRun = run
		}
	}
	if ok.After(e.lastOK) {
		e.lastOK = ok
	}
	if s.o.Metrics != nil && found {
		s.o.Metrics.SetLastOutcome(name, outcomeOf(e.lastOut))
		if !e.lastOK.IsZero() {
			s.o.Metrics.SetLastSuccess(name, e.lastOK)
		}
	}
	return seen, complete, nil
}

// restoredAt returns the time, in whole seconds, of the newest signed
// `restore` record of a backup of the schedule's plan that is after
// lastTick, or zero (docs/format.md §7.4): the cluster was restored from
// that backup since the schedule last decided a tick, so its next backup
// runs at once (schedule.State.RestoredAt). Only backup schedules have
// one. The scan reads records newest first and stops at the first one
// appended before lastTick.
func (s *Scheduler) restoredAt(ctx context.Context, e *entry, lastTick time.Time) (time.Time, error) {
	if e.target.Kind != config.KindBackupPlan {
		return time.Time{}, nil
	}
	var found time.Time
	err := evidence.NewLog(e.st, s.o.Signer, s.clock.Now).Backwards(ctx, statusScan, func(r evidence.Record) bool {
		if !lastTick.IsZero() && r.Time.Before(lastTick.Add(-clockSkew)) {
			return false
		}
		// Only a restore of the cluster's own state (etcd) replaces the
		// cluster the schedule backs up; manifests restored elsewhere
		// do not.
		if r.Kind != job.KindRestore || r.Outcome != evidence.OutcomeSuccess || r.Subject["target"] != "etcd" {
			return true
		}
		id, _ := r.Subject["backup"].(string)
		plan, _, err := catalog.ParseID(id)
		if err != nil || plan != e.target.Name {
			return true
		}
		found = r.Time.UTC().Truncate(time.Second)
		return false
	})
	if err != nil || !found.After(lastTick) {
		return time.Time{}, err
	}
	return found, nil
}

// clockSkew is how far replicas' clocks may disagree.
const clockSkew = 5 * time.Minute

// reconcileAfter is how old a settled outcome with no record must be
// before another replica appends the record: its writer appends right
// after the outcome, so by then it stopped in between.
const reconcileAfter = time.Minute

// reconcile appends the `schedule` record of a settled tick whose writer
// stopped between writing its outcome and appending its record (§7.2), so
// that every outcome has its record. An outcome younger than
// reconcileAfter is left to its writer and checked again later.
func (s *Scheduler) reconcile(ctx context.Context, env *wire.Env, e *entry, o Outcome, now time.Time) error {
	name, tick := e.sched.Metadata.Name, o.Tick
	if wait := o.SettledAt.Add(reconcileAfter); now.Before(wait) {
		s.mu.Lock()
		e.recheckAt, e.pending = wait, tick
		s.mu.Unlock()
		return nil
	}
	if err := s.checkOutcome(ctx, e, o); err != nil {
		// Unsigned, so anyone with write access to the store may have
		// written it: nothing is signed from it (§7.2).
		s.log.Error("a settled tick's outcome does not check out; no schedule record is appended from it",
			"schedule", name, "outcome", OutcomeKey(name, tick), "err", err)
		return nil
	}
	s.log.Warn("a settled tick has no schedule record (its writer stopped in between); appending it", "schedule", name, "tick", tick, "writer", o.Writer)
	return s.appendRecord(ctx, env, e, settlement{
		tick: tick, status: o.Status, outcome: o.Outcome, reason: o.Reason, run: o.Run, rec: o.Record, missed: 1,
	}, o.Writer)
}

// checkOutcome checks an outcome read from the store before a record is
// signed from it (docs/format.md §7.2): it must be about this schedule,
// its tick and its target, and a success or partial outcome must cite the
// run's own signed record, of the target's kind and about the target, with
// the same outcome and run ID, appended after the tick (less the clock
// skew). prepare has checked that its tick is the one its key names.
func (s *Scheduler) checkOutcome(ctx context.Context, e *entry, o Outcome) error {
	name := e.sched.Metadata.Name
	switch {
	case o.Schedule != name:
		return fmt.Errorf("it names schedule %q", o.Schedule)
	case o.Target != e.target:
		return fmt.Errorf("it names target %s %q, the schedule's is %s %q", o.Target.Kind, o.Target.Name, e.target.Kind, e.target.Name)
	}
	if o.Outcome == evidence.OutcomeFailure {
		return nil
	}
	if o.Record == "" {
		return fmt.Errorf("a %s outcome cites no record", o.Outcome)
	}
	r, err := evidence.NewLog(e.st, s.o.Signer, s.clock.Now).Record(ctx, o.Record)
	if err != nil {
		return fmt.Errorf("its record: %w", err)
	}
	kind, field := "", ""
	switch e.target.Kind {
	case config.KindBackupPlan:
		kind, field = evidence.KindBackup, "plan"
	case config.KindRotationPolicy:
		kind, field = evidence.KindRotation, "policy"
	case config.KindDrill:
		kind, field = evidence.KindDrill, "drill"
	}
	switch {
	case r.Kind != kind:
		return fmt.Errorf("its record %s is a %s record, not a %s one", o.Record, r.Kind, kind)
	case r.Subject[field] != e.target.Name:
		return fmt.Errorf("its record %s is about %s %v, not %s", o.Record, field, r.Subject[field], e.target.Name)
	case r.Outcome != o.Outcome:
		return fmt.Errorf("its record %s says %s, the outcome %s", o.Record, r.Outcome, o.Outcome)
	case r.ID != o.Run:
		return fmt.Errorf("its record %s is of run %s, the outcome names %s", o.Record, r.ID, o.Run)
	case r.Time.Before(o.Tick.Add(-clockSkew)):
		return fmt.Errorf("its record %s was appended at %s, before the tick", o.Record, r.Time.UTC().Format(time.RFC3339))
	}
	return nil
}

// outcomeOf maps a last status to a record outcome: a missed or abandoned
// tick is a failure (§7.2).
func outcomeOf(last string) string {
	switch last {
	case StatusMissed, StatusAbandoned:
		return evidence.OutcomeFailure
	}
	return last
}

func subjectTime(subject map[string]any, field string) time.Time {
	s, _ := subject[field].(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Schedules reports every schedule's state for the status page.
func (s *Scheduler) Schedules() []server.ScheduleStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]server.ScheduleStatus, 0, len(s.entries))
	for _, e := range s.entries {
		sc := e.sched
		st := server.ScheduleStatus{
			Name: sc.Metadata.Name, Kind: kindOf(e.target.Kind), Target: e.target.Name,
			Cron: sc.Spec.Cron, TimeZone: sc.Spec.TimeZone, Suspended: e.spec.Suspend,
			LastRun: e.lastRun, LastSuccess: e.lastOK, LastOutcome: e.lastOut, LastRunID: e.lastID,
			Running: len(s.runningTicks(sc.Metadata.Name)) > 0,
		}
		if !e.spec.Suspend {
			st.NextRun = e.next
			if st.NextRun.IsZero() {
				st.NextRun = e.spec.Cron.Next(s.clock.Now())
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b server.ScheduleStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// claim writes a tick's claim; won is false when another replica has it.
func (s *Scheduler) claim(ctx context.Context, env *wire.Env, e *entry, tick time.Time, decision, reason string, now time.Time) (bool, error) {
	data, err := EncodeClaim(Claim{
		Schedule: e.sched.Metadata.Name, Tick: tick, Target: e.target, Decision: decision, Reason: reason,
		Claimant: s.o.Identity, ClaimedAt: now,
	})
	if err != nil {
		return false, err
	}
	key := ClaimKey(e.sched.Metadata.Name, tick)
	won, err := putOnce(ctx, e.st, key, data, now.Add(s.retention(env, e)))
	if err != nil || won {
		return won, err
	}
	// A claim with this replica's identity and decision is its own: an
	// earlier attempt wrote it and then failed (or lost the reply), and
	// nothing runs it (a run in progress is never claimed again).
	existing, err := readRunObject(ctx, e.st, key)
	if err != nil {
		return false, fmt.Errorf("read claim %s: %w", key, err)
	}
	c, err := ParseClaim(existing)
	if err != nil {
		return false, nil // not ours to judge: another writer's, or damaged
	}
	return c.Claimant == s.o.Identity && c.Decision == decision && c.Reason == reason, nil
}

func (s *Scheduler) retention(env *wire.Env, e *entry) time.Duration {
	cs, _ := env.Set.Store(e.storeName)
	return config.EvidenceRetention(cs)
}

func (s *Scheduler) settleMiss(ctx context.Context, env *wire.Env, e *entry, m schedule.Miss, now time.Time) error {
	won, err := s.claim(ctx, env, e, m.Tick, DecisionSkip, string(m.Reason), now)
	if err != nil || !won {
		return err
	}
	n := max(m.Count, 1)
	s.log.Warn("tick not run", "schedule", e.sched.Metadata.Name, "tick", m.Tick, "reason", m.Reason, "count", n)
	if s.o.Metrics != nil {
		for range n {
			s.o.Metrics.Missed(e.sched.Metadata.Name, string(m.Reason))
		}
	}
	return s.settle(ctx, env, e, settlement{tick: m.Tick, status: StatusMissed, outcome: evidence.OutcomeFailure, reason: string(m.Reason), missed: n}, now)
}

// settlement is what settle writes.
type settlement struct {
	tick              time.Time
	status, outcome   string
	reason, run, rec  string
	started, finished time.Time
	missed            int
}

// settle writes a tick's outcome once and, if this replica wrote it,
// appends the tick's `schedule` record.
func (s *Scheduler) settle(ctx context.Context, env *wire.Env, e *entry, st settlement, now time.Time) error {
	name := e.sched.Metadata.Name
	data, err := EncodeOutcome(Outcome{
		Schedule: name, Tick: st.tick, Target: e.target, Status: st.status, Outcome: st.outcome,
		Reason: st.reason, Run: st.run, Record: st.rec, Writer: s.o.Identity, SettledAt: now,
	})
	if err != nil {
		return err
	}
	won, err := putOnce(ctx, e.st, OutcomeKey(name, st.tick), data, now.Add(s.retention(env, e)))
	if err != nil {
		return fmt.Errorf("settle %s: %w", OutcomeKey(name, st.tick), err)
	}
	if !won {
		// This replica's own outcome, from an attempt that failed before
		// its record, still needs the record.
		existing, rerr := readRunObject(ctx, e.st, OutcomeKey(name, st.tick))
		if rerr != nil {
			return fmt.Errorf("settle %s: read it back: %w", OutcomeKey(name, st.tick), rerr)
		}
		if o, perr := ParseOutcome(existing); perr != nil || o.Writer != s.o.Identity {
			s.log.Info("tick already settled by another replica", "schedule", name, "tick", st.tick)
			return nil
		}
	}
	return s.appendRecord(ctx, env, e, st, s.o.Identity)
}

// appendRecord appends a settled tick's `schedule` record (§7.3) and
// updates the schedule's last outcome.
func (s *Scheduler) appendRecord(ctx context.Context, env *wire.Env, e *entry, st settlement, writer string) error {
	name := e.sched.Metadata.Name
	subject := map[string]any{
		"schedule": name, "tick": st.tick.UTC().Format(time.RFC3339), "status": st.status, "reason": st.reason,
		"run": st.run, "record": st.rec, "targetKind": e.target.Kind, "targetName": e.target.Name,
		"startedAt": timeText(st.started), "finishedAt": timeText(st.finished),
		"startDelayMs": int64(0), "missedCount": int64(max(st.missed, 1)), "writer": writer,
	}
	if !st.started.IsZero() {
		subject["startDelayMs"] = st.started.Sub(st.tick).Milliseconds()
	}
	opts := []evidence.Option{evidence.WithRetention(s.retention(env, e)), evidence.WithLogger(s.log)}
	_, err := evidence.NewLog(e.st, s.o.Signer, s.clock.Now, opts...).Append(ctx, evidence.Record{
		Kind: KindSchedule, ID: name + "-" + st.tick.UTC().Format(tickLayout), Outcome: st.outcome,
		Subject: subject, HIPAA: scheduleHIPAA,
	})
	if err != nil {
		return fmt.Errorf("schedule record of %s at %s: %w", name, st.tick.UTC().Format(time.RFC3339), err)
	}
	s.mu.Lock()
	if st.tick.After(e.lastTick) || e.lastTick.IsZero() {
		e.lastTick, e.lastOut, e.lastID = st.tick, st.outcome, st.run
		if st.status != StatusRan {
			e.lastOut = st.status
		}
		if !st.finished.IsZero() {
			e.lastRun = st.finished
		}
		if st.outcome == evidence.OutcomeSuccess {
			e.lastOK = st.finished
		}
	}
	s.mu.Unlock()
	if s.o.Metrics != nil {
		s.o.Metrics.SetLastOutcome(name, st.outcome)
		if st.outcome == evidence.OutcomeSuccess {
			s.o.Metrics.SetLastSuccess(name, st.finished)
		}
	}
	return nil
}

// KindSchedule is the evidence kind of a tick's record (§7.3).
const KindSchedule = evidence.KindSchedule

var scheduleHIPAA = []string{"§164.308(a)(7)(ii)(A)", "§164.316(b)(2)(i)"}

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// start claims a tick and, if this replica won it, runs it.
func (s *Scheduler) start(ctx context.Context, env *wire.Env, e *entry, tick, now time.Time) error {
	name := e.sched.Metadata.Name
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return nil // shutting down: the tick is left to the next leader
	}
	s.runs.Add(1)
	s.mu.Unlock()
	won, err := s.claim(ctx, env, e, tick, DecisionRun, "", now)
	if err != nil || !won {
		s.runs.Done()
		if err == nil {
			s.log.Info("tick claimed by another replica", "schedule", name, "tick", tick)
		}
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	kind := kindOf(e.target.Kind)
	s.mu.Lock()
	s.running[runKey{name, tick}] = &runHandle{cancel: cancel, kind: kind}
	s.mu.Unlock()
	if s.o.Metrics != nil {
		s.o.Metrics.RunStarted(kind, name)
		s.o.Metrics.StartDelay(name, now.Sub(tick))
	}
	s.log.Info("run started", "schedule", name, "tick", tick.UTC(), "kind", kind, "target", e.target.Name, "claim", ClaimKey(name, tick))
	go func() {
		defer s.runs.Done()
		defer cancel()
		started := s.clock.Now()
		res := s.o.Runner.Run(runCtx, env, e.target)
		finished := s.clock.Now()
		s.log.Info("run finished", "schedule", name, "tick", tick.UTC(), "kind", kind, "run", res.ID, "outcome", res.Outcome,
			"record", res.Record, "duration", finished.Sub(started).Round(time.Millisecond), "reason", res.Reason)
		if s.o.Metrics != nil {
			s.o.Metrics.RunFinished(kind, name, res.Outcome, finished.Sub(started))
			observe(s.o.Metrics, res)
		}
		// Settle even when cancelled, on a detached context, retrying a
		// store that fails for about half a minute: an unsettled run would
		// later be settled as abandoned.
		sett := settlement{
			tick: tick, status: StatusRan, outcome: res.Outcome, reason: res.Reason, run: res.ID, rec: res.Record,
			started: started, finished: finished, missed: 1,
		}
		for attempt, wait := 1, time.Second; ; attempt, wait = attempt+1, wait*2 {
			sctx, scancel := context.WithTimeout(context.WithoutCancel(runCtx), 30*time.Second)
			err := s.settle(sctx, env, e, sett, finished)
			scancel()
			if err == nil {
				break
			}
			if attempt == settleAttempts {
				s.log.Error("the run's outcome is not recorded; the next leader settles the tick as abandoned", "schedule", name, "tick", tick.UTC(), "run", res.ID, "err", err)
				break
			}
			s.log.Warn("recording the run's outcome failed; retrying", "schedule", name, "tick", tick.UTC(), "run", res.ID, "attempt", attempt, "err", err)
			<-s.clock.After(wait)
		}
		s.mu.Lock()
		delete(s.running, runKey{name, tick})
		s.mu.Unlock()
		if s.o.AfterRun != nil {
			s.o.AfterRun(e.target, res)
		}
		s.poke()
	}()
	return nil
}

func kindOf(targetKind string) string {
	switch targetKind {
	case config.KindBackupPlan:
		return "backup"
	case config.KindRotationPolicy:
		return "rotation"
	case config.KindDrill:
		return "drill"
	}
	return "unknown"
}

// Drain ends the runs on shutdown: drills are cancelled at once (a drill
// cut short measures nothing, and its scratch cluster is torn down),
// backups and rotations may finish within grace, then they are cancelled
// too. It returns when every run goroutine has recorded its outcome.
func (s *Scheduler) Drain(grace time.Duration) {
	s.mu.Lock()
	s.draining = true
	for _, h := range s.running {
		if h.kind == "drill" {
			h.cancel()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.runs.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-s.clock.After(grace):
	}
	s.log.Warn("grace period over: cancelling the runs still going", "grace", grace)
	s.CancelAll()
	<-done
}

// CancelAll cancels every run in progress.
func (s *Scheduler) CancelAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.running {
		h.cancel()
	}
}

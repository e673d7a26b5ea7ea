package service

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/schedule"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// fakeRunner counts runs per target and tick; block, when set, holds each
// run until it is closed or the run's context ends.
type fakeRunner struct {
	mu      sync.Mutex
	runs    int
	started chan struct{}
	block   chan struct{}
	// cancelled counts runs whose context ended before block closed.
	cancelled int
}

func (f *fakeRunner) Run(ctx context.Context, _ *wire.Env, t Target) RunResult {
	f.mu.Lock()
	f.runs++
	n := f.runs
	f.mu.Unlock()
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			f.mu.Lock()
			f.cancelled++
			f.mu.Unlock()
			return RunResult{Outcome: evidence.OutcomeFailure, Reason: "interrupted"}
		}
	}
	return RunResult{ID: fmt.Sprintf("%s-run-%d", t.Name, n), Outcome: evidence.OutcomeSuccess}
}

func (f *fakeRunner) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs
}

// schedEnv is a configuration with one fs store and the given schedule
// specs (flow YAML, by name), every schedule backing up plan "clinic".
type schedEnv struct {
	env    *wire.Env
	root   string
	signer *evidence.Signer
}

func newSchedEnv(t *testing.T, schedules map[string]string) schedEnv {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "store")
	cfg := fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: local}
spec: {type: fs, path: %s, objectLock: {mode: COMPLIANCE, retention: 1d}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: {type: local, keyring: %s}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: clinic}
spec:
  store: local
  keyProvider: local
  retention: 1d
  sources:
    - encryptionConfig: {file: %s}
`, strconv.Quote(root), strconv.Quote(filepath.Join(dir, "keyring.json")), strconv.Quote(filepath.Join(dir, "enc.yaml")))
	for name, spec := range schedules {
		cfg += fmt.Sprintf("---\napiVersion: lifeboat.dev/v1alpha1\nkind: Schedule\nmetadata: {name: %s}\nspec: %s\n", name, spec)
	}
	path := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := config.LoadPaths(path)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := evidence.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return schedEnv{env: &wire.Env{Set: set}, root: root, signer: signer}
}

func (e schedEnv) store(t *testing.T) store.Store {
	t.Helper()
	st, err := fs.Open(context.Background(), fs.Options{Root: e.root})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// replica starts a scheduler leading on its own goroutine; stop ends it.
type replica struct {
	s        *Scheduler
	cancel   context.CancelFunc
	stopping chan struct{}
	done     chan struct{}
}

func (r *replica) running() bool {
	for _, s := range r.s.Schedules() {
		if s.Running {
			return true
		}
	}
	return false
}

func startReplica(t *testing.T, e schedEnv, identity string, r Runner, clk *clocktesting.FakeClock, leaderElection bool) *replica {
	t.Helper()
	s := NewScheduler(SchedulerOptions{Identity: identity, Runner: r, Signer: e.signer, Clock: clk, LeaderElection: leaderElection})
	if err := s.SetConfig(e.env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &replica{s: s, cancel: cancel, stopping: make(chan struct{}), done: make(chan struct{})}
	go func() { defer close(rp.done); s.Lead(ctx, rp.stopping) }()
	t.Cleanup(func() {
		cancel()
		<-rp.done
		// Runs settle after Lead returns: wait for them before the
		// temporary directories go.
		s.CancelAll()
		s.runs.Wait()
	})
	return rp
}

// runObjects counts the claims and outcomes under runs/<schedule>/.
func runObjects(t *testing.T, st store.Store, schedule string) (claims, outcomes map[time.Time]bool) {
	t.Helper()
	claims, outcomes = map[time.Time]bool{}, map[time.Time]bool{}
	for info, err := range st.List(context.Background(), "runs/"+schedule+"/") {
		if err != nil {
			t.Fatal(err)
		}
		tick, isOutcome, ok := parseRunKey(schedule, info.Key)
		if !ok {
			t.Fatalf("unexpected object %s", info.Key)
		}
		if isOutcome {
			outcomes[tick] = true
		} else {
			claims[tick] = true
		}
	}
	return claims, outcomes
}

// scheduleRecords returns the `schedule` records of a verified log.
func scheduleRecords(t *testing.T, e schedEnv) []evidence.Record {
	t.Helper()
	st := e.store(t)
	if _, err := evidence.NewLog(st, nil, nil).Verify(context.Background(), e.signer.PublicKey()); err != nil {
		t.Fatalf("evidence log does not verify: %v", err)
	}
	var out []evidence.Record
	err := evidence.NewLog(st, e.signer, nil).Backwards(context.Background(), 1<<20, func(r evidence.Record) bool {
		if r.Kind == KindSchedule {
			out = append(out, r)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// appendRunRecord appends the signed record a run of target leaves (a
// backup record of plan clinic, here) and returns its key, for an outcome
// to cite.
func appendRunRecord(t *testing.T, e schedEnv, st store.Store, kind, id, field, name, outcome string, at time.Time) string {
	t.Helper()
	r, err := evidence.NewLog(st, e.signer, func() time.Time { return at }).Append(context.Background(), evidence.Record{
		Kind: kind, ID: id, Outcome: outcome, Subject: map[string]any{field: name}, HIPAA: []string{"§164.308(a)(7)(ii)(A)"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.Key()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// start is a time half a minute past a whole minute, now: the fs store
// judges retention with the real clock, so fake time stays near it.
func start() time.Time {
	t := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	// Keep clear of the 02:00 UTC tick of the tests' "0 2 * * *"
	// schedules: a real tick falling due beside a test's own would run.
	// Later, never earlier: the stores' locks are checked against the
	// real clock.
	if h := t.Hour(); h >= 1 && h <= 3 {
		t = t.Add(4 * time.Hour)
	}
	return t
}

// TestSchedulerSplitBrain: two replicas that both believe they lead (a
// split brain, the worst case the Lease can leave) run each of five ticks
// exactly once between them: one claim, one outcome, one run, one signed
// `schedule` record per tick, and the evidence log verifies.
func TestSchedulerSplitBrain(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"every-minute": `{cron: "* * * * *", backupPlan: clinic}`})
	clk := clocktesting.NewFakeClock(start())
	runner := &fakeRunner{}
	a := startReplica(t, e, "replica-a", runner, clk, true)
	b := startReplica(t, e, "replica-b", runner, clk, true)
	st := e.store(t)
	const ticks = 5
	for i := 1; i <= ticks; i++ {
		waitFor(t, "both replicas waiting", func() bool { return clk.Waiters() >= 2 })
		clk.Step(time.Minute)
		// Each run ends before the next tick (fake time stands still while
		// it runs), so Forbid never applies here.
		waitFor(t, fmt.Sprintf("tick %d settled", i), func() bool {
			_, outcomes := runObjects(t, st, "every-minute")
			return len(outcomes) == i && !a.running() && !b.running()
		})
	}
	claims, outcomes := runObjects(t, st, "every-minute")
	if len(claims) != ticks || len(outcomes) != ticks {
		t.Fatalf("%d claims and %d outcomes, want %d of each", len(claims), len(outcomes), ticks)
	}
	for tick := range claims {
		if !outcomes[tick] {
			t.Errorf("tick %s claimed but not settled", tick)
		}
	}
	waitFor(t, "every record appended", func() bool { return len(scheduleRecords(t, e)) == ticks })
	if n := runner.count(); n != ticks {
		for _, r := range scheduleRecords(t, e) {
			t.Logf("%s %s %v", r.ID, r.Outcome, r.Subject)
		}
		t.Fatalf("%d runs, want %d (one per tick)", n, ticks)
	}
	seen := map[string]bool{}
	for _, r := range scheduleRecords(t, e) {
		if seen[r.ID] {
			t.Fatalf("two schedule records for %s", r.ID)
		}
		seen[r.ID] = true
		if r.Outcome != evidence.OutcomeSuccess || r.Subject["status"] != StatusRan {
			t.Errorf("record %s: outcome %s status %v, want success ran", r.ID, r.Outcome, r.Subject["status"])
		}
	}
}

// TestSchedulerSuspendedTicksRecorded: a suspended schedule runs nothing,
// but each of its ticks is claimed as a skip, settled as missed with the
// reason, and recorded, so the evidence accounts for every tick.
func TestSchedulerSuspendedTicksRecorded(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"paused": `{cron: "* * * * *", backupPlan: clinic, suspend: true}`})
	clk := clocktesting.NewFakeClock(start())
	runner := &fakeRunner{}
	startReplica(t, e, "replica-a", runner, clk, true)
	st := e.store(t)
	for i := 1; i <= 3; i++ {
		waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
		clk.Step(time.Minute)
		waitFor(t, fmt.Sprintf("tick %d settled", i), func() bool {
			_, outcomes := runObjects(t, st, "paused")
			return len(outcomes) == i
		})
	}
	if n := runner.count(); n != 0 {
		t.Fatalf("%d runs of a suspended schedule", n)
	}
	waitFor(t, "every record appended", func() bool { return len(scheduleRecords(t, e)) == 3 })
	recs := scheduleRecords(t, e)
	if len(recs) != 3 {
		t.Fatalf("%d schedule records, want 3", len(recs))
	}
	for _, r := range recs {
		if r.Outcome != evidence.OutcomeFailure || r.Subject["status"] != StatusMissed || r.Subject["reason"] != "suspended" {
			t.Errorf("record %s: %s %v %v, want failure missed suspended", r.ID, r.Outcome, r.Subject["status"], r.Subject["reason"])
		}
	}
}

// TestSchedulerForbid: with concurrencyPolicy Forbid (the default), a tick
// that falls due while the previous run goes on is recorded as missed
// with reason concurrency-forbid; the running one still settles.
func TestSchedulerForbid(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"slow": `{cron: "* * * * *", backupPlan: clinic}`})
	clk := clocktesting.NewFakeClock(start())
	runner := &fakeRunner{started: make(chan struct{}, 4), block: make(chan struct{})}
	rp := startReplica(t, e, "replica-a", runner, clk, true)
	st := e.store(t)
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	clk.Step(time.Minute)
	<-runner.started
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	clk.Step(time.Minute)
	waitFor(t, "the second tick settled as missed", func() bool {
		_, outcomes := runObjects(t, st, "slow")
		return len(outcomes) == 1
	})
	close(runner.block)
	waitFor(t, "the first tick settled", func() bool {
		_, outcomes := runObjects(t, st, "slow")
		return len(outcomes) == 2
	})
	waitFor(t, "every record appended", func() bool { return len(scheduleRecords(t, e)) == 2 })
	reasons := map[string]int{}
	for _, r := range scheduleRecords(t, e) {
		reasons[fmt.Sprint(r.Subject["status"], "/", r.Subject["reason"])]++
	}
	if reasons["ran/"] != 1 || reasons["missed/concurrency-forbid"] != 1 {
		t.Fatalf("records %v, want one ran and one missed/concurrency-forbid", reasons)
	}
	if n := runner.count(); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}

	// A new leader, minutes later, finds the newest outcome (the missed
	// tick) recorded behind the older tick's record: nothing to reconcile.
	rp.cancel()
	<-rp.done
	clk.Step(3 * reconcileAfter)
	s2 := startReplica(t, e, "replica-b", runner, clk, true)
	waitFor(t, "the new leader's history", func() bool {
		ss := s2.s.Schedules()
		return len(ss) == 1 && ss[0].LastOutcome != ""
	})
	waitFor(t, "the new leader waiting", func() bool { return clk.Waiters() >= 1 })
	seen := map[string]bool{}
	for _, r := range scheduleRecords(t, e) {
		if seen[r.ID] {
			t.Fatalf("tick %s recorded twice after a new leader", r.ID)
		}
		seen[r.ID] = true
	}
}

// TestSchedulerSettlesAbandonedClaim: a claim to run, left by a replica
// that lost the Lease before it settled, is settled as abandoned by the
// next leader (one outcome, one failure record) and not run again.
func TestSchedulerSettlesAbandonedClaim(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"nightly": `{cron: "0 2 * * *", backupPlan: clinic}`})
	now := start()
	clk := clocktesting.NewFakeClock(now)
	st := e.store(t)
	tick := now.Add(-30 * time.Second).Add(-time.Hour)
	data, err := EncodeClaim(Claim{Schedule: "nightly", Tick: tick, Target: Target{Kind: config.KindBackupPlan, Name: "clinic"},
		Decision: DecisionRun, Claimant: "old-leader", ClaimedAt: tick})
	if err != nil {
		t.Fatal(err)
	}
	if won, err := putOnce(context.Background(), st, ClaimKey("nightly", tick), data, now.Add(time.Hour)); err != nil || !won {
		t.Fatalf("seed claim: %v %v", won, err)
	}
	runner := &fakeRunner{}
	startReplica(t, e, "new-leader", runner, clk, true)
	waitFor(t, "the claim settled", func() bool {
		_, outcomes := runObjects(t, st, "nightly")
		return outcomes[tick]
	})
	ob, err := readRunObject(context.Background(), st, OutcomeKey("nightly", tick))
	if err != nil {
		t.Fatal(err)
	}
	o, err := ParseOutcome(ob)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != StatusAbandoned || o.Outcome != evidence.OutcomeFailure || o.Writer != "new-leader" {
		t.Fatalf("outcome %+v, want abandoned failure written by new-leader", o)
	}
	waitFor(t, "its record appended", func() bool { return len(scheduleRecords(t, e)) == 1 })
	recs := scheduleRecords(t, e)
	if len(recs) != 1 || recs[0].Subject["status"] != StatusAbandoned {
		t.Fatalf("records %v, want one abandoned", recs)
	}
	if runner.count() != 0 {
		t.Fatal("an abandoned tick was run again")
	}
}

// TestSchedulerNoElectionKeepsOthersClaims: without leader election a
// replica settles only its own orphaned claims, never another's (which
// may still be running).
func TestSchedulerNoElectionKeepsOthersClaims(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"nightly": `{cron: "0 2 * * *", backupPlan: clinic}`})
	now := start()
	clk := clocktesting.NewFakeClock(now)
	st := e.store(t)
	for i, who := range []string{"other", "me"} {
		tick := now.Add(-30*time.Second - time.Duration(i+1)*time.Hour)
		data, _ := EncodeClaim(Claim{Schedule: "nightly", Tick: tick, Target: Target{Kind: config.KindBackupPlan, Name: "clinic"},
			Decision: DecisionRun, Claimant: who, ClaimedAt: tick})
		if _, err := putOnce(context.Background(), st, ClaimKey("nightly", tick), data, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	startReplica(t, e, "me", &fakeRunner{}, clk, false)
	mine := now.Add(-30*time.Second - 2*time.Hour)
	waitFor(t, "my orphaned claim settled", func() bool {
		_, outcomes := runObjects(t, st, "nightly")
		return outcomes[mine]
	})
	_, outcomes := runObjects(t, st, "nightly")
	if len(outcomes) != 1 {
		t.Fatalf("%d outcomes, want only mine settled", len(outcomes))
	}
}

// TestSchedulerDrain: on shutdown a backup in progress finishes within the
// grace period and its outcome is recorded as a success; after the grace
// period a run still going is cancelled and recorded as a failure.
func TestSchedulerDrain(t *testing.T) {
	for _, finish := range []bool{true, false} {
		t.Run(fmt.Sprintf("finishes=%v", finish), func(t *testing.T) {
			e := newSchedEnv(t, map[string]string{"nightly": `{cron: "* * * * *", backupPlan: clinic}`})
			clk := clocktesting.NewFakeClock(start())
			runner := &fakeRunner{started: make(chan struct{}, 1), block: make(chan struct{})}
			rp := startReplica(t, e, "replica-a", runner, clk, true)
			waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
			clk.Step(time.Minute)
			<-runner.started
			close(rp.stopping)
			<-rp.done
			drained := make(chan struct{})
			go func() { rp.s.Drain(time.Minute); close(drained) }()
			waitFor(t, "drain waiting on its grace period", func() bool { return clk.Waiters() >= 1 })
			if finish {
				close(runner.block)
			} else {
				clk.Step(time.Minute)
			}
			<-drained
			recs := scheduleRecords(t, e)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			want := evidence.OutcomeSuccess
			if !finish {
				want = evidence.OutcomeFailure
			}
			if recs[0].Outcome != want {
				t.Fatalf("outcome %s, want %s", recs[0].Outcome, want)
			}
			if !finish && runner.cancelled != 1 {
				t.Fatalf("%d runs cancelled, want 1", runner.cancelled)
			}
		})
	}
}

// TestSchedulerRebuildsHistory: a new scheduler over a store with settled
// ticks shows the last outcome and success from the signed records, and
// does not decide a claimed tick again.
func TestSchedulerRebuildsHistory(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"every-minute": `{cron: "* * * * *", backupPlan: clinic}`})
	clk := clocktesting.NewFakeClock(start())
	runner := &fakeRunner{}
	rp := startReplica(t, e, "replica-a", runner, clk, true)
	st := e.store(t)
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	clk.Step(time.Minute)
	waitFor(t, "the tick settled", func() bool { _, o := runObjects(t, st, "every-minute"); return len(o) == 1 })
	waitFor(t, "its record appended", func() bool { return len(scheduleRecords(t, e)) == 1 })
	rp.cancel()
	<-rp.done

	s2 := NewScheduler(SchedulerOptions{Identity: "replica-b", Runner: runner, Signer: e.signer, Clock: clk, LeaderElection: true})
	if err := s2.SetConfig(e.env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s2.Lead(ctx, nil) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "history rebuilt", func() bool {
		ss := s2.Schedules()
		return len(ss) == 1 && ss[0].LastOutcome == evidence.OutcomeSuccess
	})
	ss := s2.Schedules()[0]
	if !strings.HasPrefix(ss.LastRunID, "clinic-run-") || ss.LastSuccess.IsZero() {
		t.Fatalf("rebuilt %+v, want the run's ID and its success time", ss)
	}
	if runner.count() != 1 {
		t.Fatalf("%d runs, want 1 (the settled tick is not run again)", runner.count())
	}
}

// TestSchedulerReconcilesMissingRecord: a replica that died between
// writing a tick's outcome and appending its record leaves an outcome with
// no record; the next leader appends the record from the outcome once the
// outcome is older than reconcileAfter (never while its writer may still
// be about to append it), exactly once.
func TestSchedulerReconcilesMissingRecord(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"nightly": `{cron: "0 2 * * *", backupPlan: clinic}`})
	now := start()
	clk := clocktesting.NewFakeClock(now)
	st := e.store(t)
	tick := now.Add(-30*time.Second - time.Hour)
	target := Target{Kind: config.KindBackupPlan, Name: "clinic"}
	rec := appendRunRecord(t, e, st, evidence.KindBackup, "clinic-20261205T010000Z-abcd", "plan", "clinic", evidence.OutcomeSuccess, now.Add(-20*time.Second))
	claim, _ := EncodeClaim(Claim{Schedule: "nightly", Tick: tick, Target: target, Decision: DecisionRun, Claimant: "dead", ClaimedAt: tick})
	outcome, _ := EncodeOutcome(Outcome{Schedule: "nightly", Tick: tick, Target: target, Status: StatusRan, Outcome: evidence.OutcomeSuccess,
		Run: "clinic-20261205T010000Z-abcd", Record: rec, Writer: "dead", SettledAt: now.Add(-10 * time.Second)})
	for key, data := range map[string][]byte{ClaimKey("nightly", tick): claim, OutcomeKey("nightly", tick): outcome} {
		if _, err := putOnce(context.Background(), st, key, data, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	startReplica(t, e, "new-leader", &fakeRunner{}, clk, true)
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	if n := len(scheduleRecords(t, e)); n != 0 {
		t.Fatalf("%d records appended for an outcome 10s old, want none yet", n)
	}
	clk.Step(reconcileAfter)
	waitFor(t, "the record appended", func() bool { return len(scheduleRecords(t, e)) == 1 })
	r := scheduleRecords(t, e)[0]
	if r.Outcome != evidence.OutcomeSuccess || r.Subject["writer"] != "dead" || r.Subject["run"] != "clinic-20261205T010000Z-abcd" {
		t.Fatalf("record %v %v, want the outcome's success, run and writer", r.Outcome, r.Subject)
	}
	clk.Step(reconcileAfter)
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	if n := len(scheduleRecords(t, e)); n != 1 {
		t.Fatalf("%d records, want exactly 1", n)
	}
}

// TestSchedulerLeaseLostCancelsRuns: when the Lease is lost (Lead's
// context ends without a shutdown), every run in progress is cancelled at
// once, not left to race the next leader, and its tick is still settled
// and recorded, as a failure.
func TestSchedulerLeaseLostCancelsRuns(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"nightly": `{cron: "* * * * *", backupPlan: clinic}`})
	clk := clocktesting.NewFakeClock(start())
	runner := &fakeRunner{started: make(chan struct{}, 1), block: make(chan struct{})}
	rp := startReplica(t, e, "replica-a", runner, clk, true)
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	clk.Step(time.Minute)
	<-runner.started
	rp.cancel() // the Lease is lost
	<-rp.done
	waitFor(t, "the cancelled run recorded", func() bool { return len(scheduleRecords(t, e)) == 1 })
	r := scheduleRecords(t, e)[0]
	if r.Outcome != evidence.OutcomeFailure || r.Subject["status"] != StatusRan {
		t.Fatalf("record %s %v, want a failed run", r.Outcome, r.Subject)
	}
	runner.mu.Lock()
	defer runner.mu.Unlock()
	if runner.cancelled != 1 {
		t.Fatalf("%d runs cancelled, want 1", runner.cancelled)
	}
}

// TestSchedulerReconcilesAfterNewerTicks: the unrecorded outcome a new
// leader finds is still reconciled a minute later although newer ticks
// (run by the new leader, each with its record) have been settled in the
// meantime; every tick ends with exactly one record.
func TestSchedulerReconcilesAfterNewerTicks(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"often": `{cron: "* * * * *", backupPlan: clinic}`})
	now := start()
	clk := clocktesting.NewFakeClock(now)
	st := e.store(t)
	tick := now.Add(-30 * time.Second) // the tick the dead leader ran
	target := Target{Kind: config.KindBackupPlan, Name: "clinic"}
	rec := appendRunRecord(t, e, st, evidence.KindBackup, "clinic-dead-run", "plan", "clinic", evidence.OutcomeSuccess, now.Add(-10*time.Second))
	claim, _ := EncodeClaim(Claim{Schedule: "often", Tick: tick, Target: target, Decision: DecisionRun, Claimant: "dead", ClaimedAt: tick})
	outcome, _ := EncodeOutcome(Outcome{Schedule: "often", Tick: tick, Target: target, Status: StatusRan, Outcome: evidence.OutcomeSuccess,
		Run: "clinic-dead-run", Record: rec, Writer: "dead", SettledAt: now.Add(-5 * time.Second)})
	for key, data := range map[string][]byte{ClaimKey("often", tick): claim, OutcomeKey("often", tick): outcome} {
		if _, err := putOnce(context.Background(), st, key, data, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	rp := startReplica(t, e, "new-leader", &fakeRunner{}, clk, true)
	// The next tick (30 s on) runs and is recorded before the recheck
	// (55 s on) is due: the dead leader's outcome is then no longer the
	// newest.
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	clk.Step(30 * time.Second)
	waitFor(t, "the newer tick settled", func() bool {
		_, outcomes := runObjects(t, st, "often")
		return len(outcomes) == 2 && !rp.running()
	})
	waitFor(t, "the newer tick recorded", func() bool { return len(scheduleRecords(t, e)) == 1 })
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	clk.Step(30 * time.Second)
	waitFor(t, "every tick recorded", func() bool { return len(scheduleRecords(t, e)) == 2 })
	ids := map[string]bool{}
	for _, r := range scheduleRecords(t, e) {
		if ids[r.ID] {
			t.Fatalf("tick %s recorded twice", r.ID)
		}
		ids[r.ID] = true
	}
	if !ids["often-"+tick.UTC().Format(tickLayout)] {
		t.Fatalf("the dead leader's tick has no record: %v", ids)
	}
}

// TestSchedulerRunsAfterRestore: a cluster restored from a backup (a
// signed `restore` record of a backup of the schedule's plan, appended
// while serve was down) makes the next leader record the ticks that fell
// due before the restore as missed with reason "restored", and take a
// backup of the restored cluster at once, as a tick at the restore's time,
// exactly once; a later restart does not run it again.
func TestSchedulerRunsAfterRestore(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"hourly": `{cron: "0 * * * *", backupPlan: clinic}`})
	clk := clocktesting.NewFakeClock(start())
	runner := &fakeRunner{}
	rp := startReplica(t, e, "replica-a", runner, clk, true)
	st := e.store(t)
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	clk.Step(time.Hour)
	waitFor(t, "the first tick settled", func() bool { _, o := runObjects(t, st, "hourly"); return len(o) == 1 })
	waitFor(t, "its record appended", func() bool { return len(scheduleRecords(t, e)) == 1 })
	rp.cancel()
	<-rp.done

	// Two and a half hours down; then the cluster is restored.
	clk.Step(150 * time.Minute)
	id, err := catalog.NewID("clinic", clk.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	restore, err := evidence.NewLog(st, e.signer, clk.Now).Append(context.Background(), evidence.Record{
		Kind: job.KindRestore, ID: id + "-restore", Outcome: evidence.OutcomeSuccess,
		Subject: map[string]any{"backup": id, "target": "etcd"},
	})
	if err != nil {
		t.Fatal(err)
	}
	restoredAt := restore.Time.UTC().Truncate(time.Second)
	// The hourly ticks after the first one run and up to the restore.
	wantRestored := 0
	for h := restoredAt.Truncate(time.Hour); h.After(restoredAt.Add(-150 * time.Minute)); h = h.Add(-time.Hour) {
		wantRestored++
	}

	for _, identity := range []string{"replica-b", "replica-c"} {
		rp := startReplica(t, e, identity, runner, clk, true)
		waitFor(t, "the restore's backup settled", func() bool {
			_, o := runObjects(t, st, "hourly")
			return o[restoredAt] && !rp.running()
		})
		waitFor(t, "every record appended", func() bool { return len(scheduleRecords(t, e)) == 2+wantRestored })
		rp.cancel()
		<-rp.done
	}
	if n := runner.count(); n != 2 {
		t.Fatalf("%d runs, want 2: the first tick and one backup after the restore", n)
	}
	var restored, ran int
	for _, r := range scheduleRecords(t, e) {
		switch {
		case r.Subject["status"] == StatusMissed && r.Subject["reason"] == string(schedule.ReasonRestored):
			restored++
		case r.Subject["status"] == StatusRan && subjectTime(r.Subject, "tick").Equal(restoredAt):
			ran++
		}
	}
	if restored != wantRestored || ran != 1 {
		for _, r := range scheduleRecords(t, e) {
			t.Logf("%s %s %v", r.ID, r.Outcome, r.Subject)
		}
		t.Fatalf("%d ticks missed as restored (want the %d due during the outage), %d runs at the restore (want 1)", restored, wantRestored, ran)
	}
}

// TestSchedulerChecksOutcomeBeforeSigning: the objects under runs/ are
// unsigned, so anyone who can write to the store can plant an outcome. A
// new leader appends a `schedule` record from an unrecorded outcome only
// when it checks out (docs/format.md §7.2): a success must cite the run's
// own signed record, about the schedule's target, with the same outcome
// and run, appended after the tick. A failure needs no record.
func TestSchedulerChecksOutcomeBeforeSigning(t *testing.T) {
	const run = "clinic-20261205T010000Z-abcd"
	type variant struct {
		name     string
		outcome  string // of the planted outcome
		cite     bool   // whether the outcome cites the record
		recPlan  string // the record's plan
		recOut   string // the record's outcome
		recRun   string // the record's ID
		recAge   time.Duration
		target   string        // the outcome's target name
		keyTick  time.Duration // the key's tick, relative to the outcome's
		wantRecs int
	}
	base := variant{outcome: evidence.OutcomeSuccess, cite: true, recPlan: "clinic", recOut: evidence.OutcomeSuccess, recRun: run,
		recAge: 20 * time.Second, target: "clinic", wantRecs: 1}
	with := func(name string, f func(*variant)) variant { v := base; v.name = name; f(&v); return v }
	for _, v := range []variant{
		with("a success citing its run's record", func(v *variant) {}),
		with("a success citing no record", func(v *variant) { v.cite, v.wantRecs = false, 0 }),
		with("a record of another plan", func(v *variant) { v.recPlan, v.wantRecs = "other", 0 }),
		with("a record that says failure", func(v *variant) { v.recOut, v.wantRecs = evidence.OutcomeFailure, 0 }),
		with("a record of another run", func(v *variant) { v.recRun, v.wantRecs = "clinic-20251205T010000Z-ffff", 0 }),
		with("a record from before the tick", func(v *variant) { v.recAge, v.wantRecs = 2*time.Hour, 0 }),
		with("an outcome of another target", func(v *variant) { v.target, v.wantRecs = "other", 0 }),
		with("an outcome under another tick's key", func(v *variant) { v.keyTick, v.wantRecs = -time.Minute, 0 }),
		with("a failure citing no record", func(v *variant) { v.outcome, v.cite, v.wantRecs = evidence.OutcomeFailure, false, 1 }),
	} {
		t.Run(v.name, func(t *testing.T) {
			e := newSchedEnv(t, map[string]string{"nightly": `{cron: "0 2 * * *", backupPlan: clinic}`})
			now := start()
			clk := clocktesting.NewFakeClock(now)
			st := e.store(t)
			tick := now.Add(-30*time.Second - time.Hour)
			rec := appendRunRecord(t, e, st, evidence.KindBackup, v.recRun, "plan", v.recPlan, v.recOut, now.Add(-v.recAge))
			if !v.cite {
				rec = ""
			}
			reason := ""
			if v.outcome == evidence.OutcomeFailure {
				reason = "backup failed at step store"
			}
			target := Target{Kind: config.KindBackupPlan, Name: v.target}
			keyTick := tick.Add(v.keyTick)
			claim, err := EncodeClaim(Claim{Schedule: "nightly", Tick: keyTick, Target: target, Decision: DecisionRun, Claimant: "dead", ClaimedAt: tick})
			if err != nil {
				t.Fatal(err)
			}
			outcome, err := EncodeOutcome(Outcome{Schedule: "nightly", Tick: tick, Target: target, Status: StatusRan, Outcome: v.outcome,
				Reason: reason, Run: run, Record: rec, Writer: "dead", SettledAt: now.Add(-10 * time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			for key, data := range map[string][]byte{ClaimKey("nightly", keyTick): claim, OutcomeKey("nightly", keyTick): outcome} {
				if _, err := putOnce(context.Background(), st, key, data, now.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			startReplica(t, e, "new-leader", &fakeRunner{}, clk, true)
			waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
			clk.Step(reconcileAfter)
			if v.wantRecs > 0 {
				waitFor(t, "the record appended", func() bool { return len(scheduleRecords(t, e)) == v.wantRecs })
				r := scheduleRecords(t, e)[0]
				if r.Outcome != v.outcome || r.Subject["run"] != run {
					t.Fatalf("record %s %v, want the outcome's %s and run", r.Outcome, r.Subject, v.outcome)
				}
				return
			}
			waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
			clk.Step(reconcileAfter)
			waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
			if recs := scheduleRecords(t, e); len(recs) != 0 {
				t.Fatalf("%d schedule records signed from an outcome that does not check out: %v", len(recs), recs[0].Subject)
			}
		})
	}
}

// TestSchedulerIgnoresFutureClaim: a claim planted for a tick a year
// ahead must not become the newest tick decided; the schedule still runs
// the tick that falls due, and records it.
func TestSchedulerIgnoresFutureClaim(t *testing.T) {
	e := newSchedEnv(t, map[string]string{"often": `{cron: "* * * * *", backupPlan: clinic}`})
	now := start()
	clk := clocktesting.NewFakeClock(now)
	st := e.store(t)
	future := now.Truncate(time.Minute).Add(365 * 24 * time.Hour)
	target := Target{Kind: config.KindBackupPlan, Name: "clinic"}
	for _, c := range []Claim{
		{Schedule: "often", Tick: future, Target: target, Decision: DecisionRun, Claimant: "intruder", ClaimedAt: now},
		{Schedule: "often", Tick: future.Add(time.Minute), Target: target, Decision: DecisionSkip, Reason: string(schedule.ReasonSuspended), Claimant: "intruder", ClaimedAt: now},
	} {
		data, err := EncodeClaim(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := putOnce(context.Background(), st, ClaimKey("often", c.Tick), data, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	runner := &fakeRunner{}
	startReplica(t, e, "leader", runner, clk, true)
	waitFor(t, "the replica waiting", func() bool { return clk.Waiters() >= 1 })
	clk.Step(30 * time.Second)
	waitFor(t, "the due tick run and recorded", func() bool { return runner.count() == 1 && len(scheduleRecords(t, e)) == 1 })
	if r := scheduleRecords(t, e)[0]; r.Subject["status"] != StatusRan || r.Subject["tick"] != now.Add(30*time.Second).UTC().Format(time.RFC3339) {
		t.Fatalf("record %v, want the due tick run", r.Subject)
	}
}

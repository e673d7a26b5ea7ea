package service

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/server"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// replicaLag reads lifeboat_replica_lag_seconds{plan,store} from m.
func replicaLag(t *testing.T, m *server.Metrics, plan, store string) (float64, bool) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lifeboat_replica_lag_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["plan"] == plan && labels["store"] == store {
				return s.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// TestReplicatorBackoff: serve's catch-up loop (a fake job.CatchUp on a
// fake clock) retries a failing replica after 30s, then 60s, then, caught
// up, every 5 minutes; the lag metric grows from when the replica was
// last seen caught up while it cannot be read, follows the oldest backup
// not replicated, and is 0 once caught up.
func TestReplicatorBackoff(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	m := server.NewMetrics(clk.Now)
	set := &config.Set{BackupPlans: []*config.BackupPlan{{
		Metadata: config.ObjectMeta{Name: "control-plane"},
		Spec:     config.BackupPlanSpec{Store: "primary", Replicas: []string{"dr"}},
	}}}
	env := &wire.Env{Set: set}
	unreachable := errors.New("dial tcp: connection refused")
	backupDone := t0.Add(-10 * time.Minute)
	script := []job.ReplicaLag{
		{Plan: "control-plane", Store: "dr", Err: unreachable},
		{Plan: "control-plane", Store: "dr", Err: unreachable},
		{Plan: "control-plane", Store: "dr", Err: unreachable, Behind: backupDone, Pending: 1},
		{Plan: "control-plane", Store: "dr", Copied: 1},
		{Plan: "control-plane", Store: "dr"},
	}
	passes := make(chan time.Time)
	i := 0
	r := &replicator{
		env: func() *wire.Env { return env }, metrics: m, clock: clk, log: slog.New(slog.DiscardHandler),
		catchUp: func(ctx context.Context, e *wire.Env, o job.ReplicateOptions) []job.ReplicaLag {
			l := script[i]
			i++
			passes <- clk.Now()
			return []job.ReplicaLag{l}
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx, stop) }()
	defer func() { cancel(); <-done }()

	// step waits for the loop to sleep, advances the clock by d and
	// returns when the pass it starts has set the metric.
	step := func(d time.Duration) time.Time {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !clk.HasWaiters() {
			if time.Now().After(deadline) {
				t.Fatal("the loop does not wait")
			}
			time.Sleep(time.Millisecond)
		}
		clk.Step(d)
		select {
		case at := <-passes:
			for !clk.HasWaiters() { // the pass has finished and set the metric
				time.Sleep(time.Millisecond)
			}
			return at
		case <-time.After(10 * time.Second):
			t.Fatalf("no pass after %s", d)
		}
		return time.Time{}
	}
	lag := func() float64 {
		t.Helper()
		v, ok := replicaLag(t, m, "control-plane", "dr")
		if !ok {
			t.Fatal("no lifeboat_replica_lag_seconds{plan=control-plane,store=dr}")
		}
		return v
	}

	if at := step(0); !at.Equal(t0) {
		t.Fatalf("first pass at %s, want at once", at)
	}
	if v := lag(); v != 0 {
		t.Fatalf("lag %v at the first failure", v)
	}
	if at := step(30 * time.Second); !at.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("second pass at %s", at)
	}
	if v := lag(); v != 30 {
		t.Fatalf("lag %v, want 30 (unreadable since the first failure)", v)
	}
	// The next retry is 60s later, not 30s.
	clk.Step(30 * time.Second)
	select {
	case at := <-passes:
		t.Fatalf("a pass at %s, before the doubled delay", at)
	case <-time.After(50 * time.Millisecond):
	}
	if at := step(30 * time.Second); !at.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("third pass at %s", at)
	}
	if v := lag(); v != (10*time.Minute + 90*time.Second).Seconds() {
		t.Fatalf("lag %v, want since the backup not replicated completed", v)
	}
	// The delay doubled again (120s); then caught up, the lag is 0 and
	// the next pass comes after the interval.
	if at := step(120 * time.Second); !at.Equal(t0.Add(210 * time.Second)) {
		t.Fatalf("fourth pass at %s", at)
	}
	if v := lag(); v != 0 {
		t.Fatalf("lag %v after catching up", v)
	}
	if at := step(ReplicaInterval); !at.Equal(t0.Add(210*time.Second + ReplicaInterval)) {
		t.Fatalf("fifth pass at %s", at)
	}
}

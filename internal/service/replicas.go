package service

import (
	"context"
	"log/slog"
	"time"

	"k8s.io/utils/clock"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/server"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// Replica catch-up timing (docs/format.md §9): a pass every
// ReplicaInterval while every replica is caught up; after a failed pass
// the next comes after ReplicaRetryMin, doubling up to ReplicaRetryMax.
const (
	ReplicaInterval = 5 * time.Minute
	ReplicaRetryMin = 30 * time.Second
	ReplicaRetryMax = 30 * time.Minute
)

// replicator retries the replication of every plan's backups to its
// replica stores while this replica of serve leads: the same code path
// as `lifeboat backup replicate` (job.CatchUp). A scheduled backup
// replicates itself as it commits (job.Backup); this loop catches up what
// failed, what rotation added, and replicas added to a plan later.
type replicator struct {
	env     func() *wire.Env
	signer  *evidence.Signer
	metrics *server.Metrics
	clock   clock.Clock
	log     *slog.Logger
	// catchUp is job.CatchUp.
	catchUp func(context.Context, *wire.Env, job.ReplicateOptions) []job.ReplicaLag
	// since is, per {plan, store}, when the replica was last seen caught
	// up (or first seen failing): the lag reported while it cannot be
	// read.
	since map[[2]string]time.Time
}

// run passes until ctx ends or stop closes.
func (r *replicator) run(ctx context.Context, stop <-chan struct{}) {
	if r.since == nil {
		r.since = map[[2]string]time.Time{}
	}
	delay, retry := time.Duration(0), ReplicaRetryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-r.clock.After(delay):
		}
		if r.pass(ctx) {
			delay, retry = ReplicaInterval, ReplicaRetryMin
			continue
		}
		delay, retry = retry, min(retry*2, ReplicaRetryMax)
		r.log.Info("replicas not caught up; retrying", "in", delay)
	}
}

// pass runs one catch-up and sets the lag metric; it reports whether
// every replica of every plan is caught up.
func (r *replicator) pass(ctx context.Context) bool {
	env := r.env()
	if env == nil || !hasReplicas(env.Set) {
		return true
	}
	now := r.clock.Now()
	ok := true
	for _, l := range r.catchUp(ctx, env, job.ReplicateOptions{Signer: r.signer, Now: r.clock.Now}) {
		k := [2]string{l.Plan, l.Store}
		behind := l.Behind
		switch {
		case l.Err != nil && behind.IsZero():
			// Not even read: behind since it was last seen caught up.
			if r.since[k].IsZero() {
				r.since[k] = now
			}
			behind = r.since[k]
		case l.Err == nil && l.Pending == 0:
			r.since[k] = now
		}
		if l.Err != nil {
			ok = false
			r.log.Warn("replica not caught up", "plan", l.Plan, "store", l.Store, "pending", l.Pending, "err", l.Err)
		} else if l.Copied > 0 {
			r.log.Info("replica caught up", "plan", l.Plan, "store", l.Store, "backups", l.Copied)
		}
		ok = ok && l.Pending == 0
		r.metrics.ReplicaBehind(l.Plan, l.Store, behind)
	}
	return ok
}

func hasReplicas(set *config.Set) bool {
	for _, p := range set.BackupPlans {
		if len(p.Spec.Replicas) > 0 {
			return true
		}
	}
	return false
}

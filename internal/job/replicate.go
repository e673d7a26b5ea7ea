package job

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/replica"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// KindReplica is the evidence record kind of a replication
// (docs/format.md §9.5).
const KindReplica = "replica"

// replicaHIPAA are the sections a replication is evidence for.
var replicaHIPAA = []string{
	"§164.308(a)(7)(ii)(A)", // data backup plan: an exact copy elsewhere
	"§164.310(d)(2)(iv)",    // retrievable exact copy: digests checked
	"§164.312(c)(1)",        // integrity
}

// ReplicateOptions configure Replicate and CatchUp.
type ReplicateOptions struct {
	// Signer signs the `replica` records; its key (and Trusted) vouch for
	// the manifests and records copied. Required.
	Signer *evidence.Signer
	// Trusted are further evidence keys whose records are copied and
	// vouch for manifests (an earlier signing key).
	Trusted []evidence.PublicKey
	// Progress, when set, is told of each object.
	Progress func(replica.Event)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Plans, when set, limits CatchUp to these BackupPlans.
	Plans []string
}

// ReplicaResult is what one replication of one backup to one replica
// did.
type ReplicaResult struct {
	replica.Result
	// Plan is the backup's plan; Primary its store.
	Plan    string `json:"plan"`
	Primary string `json:"primary"`
	// Error says why it failed; "" on success.
	Error string `json:"error,omitempty"`
	// Record is the key of the `replica` record appended to the
	// primary's log; "" when none.
	Record string `json:"recordAppended,omitempty"`
}

// replicaTarget is one plan's primary and one of its replicas, opened.
type replicaTarget struct {
	plan             *config.BackupPlan
	pcs, rcs         *config.Store
	primary, replica store.Store
	copier           *replica.Copier
}

// openReplica opens replica store name of plan for writing, refusing it
// when its lock status does not satisfy the plan (store.JudgeLock), as
// for the primary: nothing is written to a refused store.
func openReplica(ctx context.Context, env *wire.Env, plan *config.BackupPlan, pcs *config.Store, primary store.Store, name string, o ReplicateOptions) (*replicaTarget, error) {
	if !slices.Contains(plan.Spec.Replicas, name) {
		return nil, fmt.Errorf("replicate: store %q is not a replica of backup plan %s (spec.replicas: %s)", name, plan.Metadata.Name, strings.Join(plan.Spec.Replicas, ", "))
	}
	rcs, ok := env.Set.Store(name)
	if !ok {
		return nil, fmt.Errorf("replicate: %w", &NotFoundError{config.KindStore, name})
	}
	// Opened for writing first (an fs store is created), then judged, as
	// backup run does with the plan's store.
	rst, err := env.OpenStore(ctx, rcs, false)
	if err != nil {
		return nil, fmt.Errorf("replicate to %s: %w", name, err)
	}
	chk, err := env.CheckStore(ctx, rcs)
	if err != nil {
		return nil, fmt.Errorf("replicate to %s: %w", name, err)
	}
	if !chk.Verdict.OK {
		return nil, fmt.Errorf("replicate to %s: %w: %s (see `lifeboat store check %s`)", name, ErrStoreRefused, strings.Join(chk.Verdict.Problems, "; "), name)
	}
	if o.Signer == nil {
		return nil, errors.New("replicate: no evidence signer")
	}
	c, err := replica.New(replica.Options{
		Primary: primary, Replica: rst, PrimaryName: pcs.Metadata.Name, ReplicaName: name,
		Trusted: append([]evidence.PublicKey{o.Signer.PublicKey()}, o.Trusted...),
		// The one retention rule, with the replica's lock
		// (docs/format.md §9.1): never shorter than the backup's own
		// lock, nor than the replica's objectLock.
		BackupRetainUntil: func(m catalog.Manifest) time.Time {
			// Whole seconds, rounded up, as backup.Run does: S3 keeps
			// a lock's date to the second.
			r := m.Started.Add(config.BackupRetention(plan, rcs) + time.Second - 1).Truncate(time.Second)
			if m.RetainUntil.After(r) {
				return m.RetainUntil
			}
			return r
		},
		EvidenceRetention: max(config.EvidenceRetention(pcs), config.EvidenceRetention(rcs)),
		Now:               o.Now, Logger: env.Logger, Progress: o.Progress,
	})
	if err != nil {
		return nil, err
	}
	return &replicaTarget{plan: plan, pcs: pcs, rcs: rcs, primary: primary, replica: rst, copier: c}, nil
}

// backup replicates backup id and appends its `replica` record to the
// primary's log when it copied something, or when it failed and
// recordFailure is set.
func (t *replicaTarget) backup(ctx context.Context, env *wire.Env, id string, o ReplicateOptions, recordFailure bool) (ReplicaResult, error) {
	r, err := t.copier.Backup(ctx, id)
	out := ReplicaResult{Result: r, Plan: t.plan.Metadata.Name, Primary: t.pcs.Metadata.Name}
	if err != nil {
		err = fmt.Errorf("backup %s to replica %s: %w", id, t.rcs.Metadata.Name, err)
	}
	if r.Copied == 0 && (err == nil || !recordFailure) {
		if err != nil {
			out.Error = err.Error()
		}
		return out, err
	}
	return recordReplica(ctx, env, t.primary, t.pcs, out, err, o)
}

// recordReplica appends the `replica` record of out (failed with err, or
// not) to the primary's evidence log (docs/format.md §9.5).
func recordReplica(ctx context.Context, env *wire.Env, primary store.Store, pcs *config.Store, out ReplicaResult, err error, o ReplicateOptions) (ReplicaResult, error) {
	r := out.Result
	subject := map[string]any{
		"backup": r.Backup, "plan": out.Plan, "store": r.Store, "primary": out.Primary,
		"state": r.State, "copied": int64(r.Copied), "skipped": int64(r.Skipped), "bytes": r.Bytes,
		"manifestSHA256": r.ManifestSHA256, "evidenceHead": r.EvidenceHead, "step": "", "object": "",
	}
	outcome := evidence.OutcomeSuccess
	if err != nil {
		out.Error = err.Error()
		outcome = evidence.OutcomeFailure
		// The step and the object, never the error's text (it may quote
		// an endpoint or a server's message).
		if re := (*replica.Error)(nil); errors.As(err, &re) {
			subject["step"], subject["object"] = re.Step, re.Object
		} else {
			subject["step"] = "open"
		}
	}
	rctx, cancel := detached(ctx)
	defer cancel()
	opts := []evidence.Option{evidence.WithRetention(config.EvidenceRetention(pcs))}
	if env.Logger != nil {
		opts = append(opts, evidence.WithLogger(env.Logger))
	}
	rec, rerr := evidence.NewLog(primary, o.Signer, o.Now, opts...).Append(rctx, evidence.Record{
		Kind: KindReplica, ID: r.Backup, Outcome: outcome, Subject: subject, HIPAA: replicaHIPAA,
	})
	if rerr != nil {
		if env.Logger != nil {
			env.Logger.Error("the replication has no evidence record", "backup", r.Backup, "store", r.Store, "err", rerr)
		}
		return out, errors.Join(err, fmt.Errorf("record the replication of backup %s to %s: %w", r.Backup, r.Store, rerr))
	}
	out.Record = rec.Key()
	return out, err
}

// Replicate copies committed backup id to the replica stores to (all of
// its plan's replicas when empty): `lifeboat backup replicate`. Each
// replica is tried even after another failed; the error joins the
// failures. Each replication that copied something or failed appends a
// `replica` record to the primary's evidence log.
func Replicate(ctx context.Context, env *wire.Env, id string, to []string, o ReplicateOptions) ([]ReplicaResult, error) {
	planName, _, err := catalog.ParseID(id)
	if err != nil {
		return nil, fmt.Errorf("backup replicate: %w", err)
	}
	plan, ok := env.Set.BackupPlan(planName)
	if !ok {
		return nil, fmt.Errorf("backup replicate %s: %w", id, &NotFoundError{config.KindBackupPlan, planName})
	}
	if len(to) == 0 {
		to = plan.Spec.Replicas
	}
	if len(to) == 0 {
		return nil, fmt.Errorf("backup replicate %s: backup plan %s has no replicas (spec.replicas)", id, planName)
	}
	for _, name := range to {
		if !slices.Contains(plan.Spec.Replicas, name) {
			return nil, fmt.Errorf("backup replicate %s: %w (backup plan %s replicates to %s)", id, &NotFoundError{"replica Store", name}, planName, strings.Join(plan.Spec.Replicas, ", "))
		}
	}
	pcs, _ := env.Set.Store(plan.Spec.Store)
	primary, err := env.OpenStore(ctx, pcs, false)
	if err != nil {
		return nil, fmt.Errorf("backup replicate %s: %w", id, err)
	}
	return replicateAll(ctx, env, plan, pcs, primary, id, to, o)
}

func replicateAll(ctx context.Context, env *wire.Env, plan *config.BackupPlan, pcs *config.Store, primary store.Store, id string, to []string, o ReplicateOptions) ([]ReplicaResult, error) {
	var out []ReplicaResult
	var errs []error
	for _, name := range to {
		t, err := openReplica(ctx, env, plan, pcs, primary, name, o)
		if err != nil {
			r := ReplicaResult{Result: replica.Result{Backup: id, Store: name, State: replica.StateUnreachable}, Plan: plan.Metadata.Name, Primary: pcs.Metadata.Name}
			if o.Signer != nil {
				r, err = recordReplica(ctx, env, primary, pcs, r, err, o)
			} else {
				r.Error = err.Error()
			}
			out = append(out, r)
			errs = append(errs, err)
			continue
		}
		r, err := t.backup(ctx, env, id, o, true)
		out = append(out, r)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// ReplicaLag is one replica's state for a plan after CatchUp.
type ReplicaLag struct {
	Plan, Store string
	// Behind is the completion of the oldest backup not replicated; zero
	// when the replica is caught up (or could not be read: see Err).
	Behind time.Time
	// Pending counts the backups not replicated afterwards.
	Pending int
	// Copied counts the backups this run replicated.
	Copied int
	// Err is the first failure; nil when every backup was replicated.
	Err error
}

// CatchUp replicates, for every plan with replicas, each committed backup
// not yet replicated (oldest first) and the evidence log, and reports each
// replica's lag: `serve`'s retry loop. Failures are logged and returned in
// the lags, not recorded (a retry every few minutes during an outage
// would flood the log); successes that copied something are recorded.
func CatchUp(ctx context.Context, env *wire.Env, o ReplicateOptions) []ReplicaLag {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	var out []ReplicaLag
	for _, plan := range env.Set.BackupPlans {
		if len(plan.Spec.Replicas) == 0 || (len(o.Plans) > 0 && !slices.Contains(o.Plans, plan.Metadata.Name)) {
			continue
		}
		pcs, _ := env.Set.Store(plan.Spec.Store)
		fail := func(err error) {
			for _, name := range plan.Spec.Replicas {
				out = append(out, ReplicaLag{Plan: plan.Metadata.Name, Store: name, Err: err})
			}
		}
		primary, err := env.OpenStore(ctx, pcs, false)
		if err != nil {
			fail(err)
			continue
		}
		ms, err := catalog.List(ctx, primary, catalog.ListOptions{Plan: plan.Metadata.Name})
		if err != nil {
			fail(err)
			continue
		}
		slices.Reverse(ms) // oldest first
		for _, name := range plan.Spec.Replicas {
			out = append(out, catchUpOne(ctx, env, plan, pcs, primary, name, ms, now, o))
		}
	}
	return out
}

func catchUpOne(ctx context.Context, env *wire.Env, plan *config.BackupPlan, pcs *config.Store, primary store.Store, name string, ms []catalog.Manifest, now func() time.Time, o ReplicateOptions) ReplicaLag {
	lag := ReplicaLag{Plan: plan.Metadata.Name, Store: name}
	t, err := openReplica(ctx, env, plan, pcs, primary, name, o)
	if err != nil {
		lag.Err = err
		return lag
	}
	states, err := replica.Status(ctx, primary, t.replica, ms)
	if err != nil {
		lag.Err = fmt.Errorf("replica %s: %w", name, err)
		return lag
	}
	var counted []catalog.Manifest
	stopped := false // the replica failed other than on one backup's data
	for _, m := range ms {
		if !m.RetainUntil.After(now()) {
			continue
		}
		if states[m.Backup] != replica.StateReplicated && !stopped {
			r, err := t.backup(ctx, env, m.Backup, o, false)
			states[m.Backup] = r.State
			switch {
			case errors.Is(err, replica.ErrNotVouched):
				// Planted on the primary: never replicated, not lag.
				if env.Logger != nil {
					env.Logger.Warn("backup on the primary that no signed record vouches for; not replicated", "backup", m.Backup, "store", name)
				}
				continue
			case err != nil:
				lag.Err = firstErr(lag.Err, err)
				if env.Logger != nil {
					env.Logger.Warn("replication failed; retrying later", "backup", m.Backup, "store", name, "err", err)
				}
				// A store that cannot be reached fails every backup the
				// same way: stop here; one backup's bad data does not
				// stop the others.
				stopped = !errors.Is(err, catalog.ErrVerification) && !errors.Is(err, replica.ErrExpired)
			case r.Copied > 0:
				lag.Copied++
			}
		}
		counted = append(counted, m)
	}
	if !stopped {
		if _, err := t.copier.Evidence(ctx); err != nil {
			lag.Err = firstErr(lag.Err, err)
		}
	}
	for _, m := range counted {
		if states[m.Backup] != replica.StateReplicated {
			lag.Pending++
		}
	}
	_, lag.Behind = replica.Lag(counted, states, now())
	return lag
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// ReplicaState is a backup's state on one replica, for `backup list`.
type ReplicaState struct {
	Store string `json:"store"`
	State string `json:"state"`
}

// ReplicaStates returns, for backups ms of the plans in the
// configuration, their state on each replica of their plan
// (replica.Status), by backup ID. A replica that cannot be read gives
// `unreachable`, with a warning in the returned list.
func ReplicaStates(ctx context.Context, env *wire.Env, primary store.Store, ms []catalog.Manifest) (map[string][]ReplicaState, []string) {
	out := map[string][]ReplicaState{}
	var warnings []string
	byPlan := map[string][]catalog.Manifest{}
	for _, m := range ms {
		byPlan[m.Plan] = append(byPlan[m.Plan], m)
	}
	for planName, pms := range byPlan {
		plan, ok := env.Set.BackupPlan(planName)
		if !ok {
			continue
		}
		for _, name := range plan.Spec.Replicas {
			states := map[string]string{}
			rcs, _ := env.Set.Store(name)
			rst, err := env.OpenStore(ctx, rcs, true)
			if err == nil {
				states, err = replica.Status(ctx, primary, rst, pms)
			}
			if errors.Is(err, iofs.ErrNotExist) {
				// An fs replica nothing was copied to yet.
				err = nil
				for _, m := range pms {
					states[m.Backup] = replica.StateMissing
				}
			}
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("replica %s of plan %s: %v", name, planName, err))
			}
			for _, m := range pms {
				st := states[m.Backup]
				if st == "" {
					st = replica.StateUnreachable
				}
				out[m.Backup] = append(out[m.Backup], ReplicaState{Store: name, State: st})
			}
		}
	}
	return out, warnings
}

package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/drill"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/server"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// book keeps what the status page shows besides the schedules: each plan's
// newest backup, each drill's last run, each key provider's primary
// version and each store's last probe. Status returns it from memory; the
// service refreshes it from the stores (refresh) and from the runs it
// finishes (ran).
type book struct {
	sched *Scheduler
	log   *slog.Logger
	now   func() time.Time

	mu        sync.Mutex
	identity  string
	leader    bool
	configErr string
	plans     map[string]server.PlanStatus
	drills    map[string]server.DrillStatus
	keys      map[string]server.KeyStatus
	stores    map[string]server.StoreStatus
	refreshed bool

	// Opened stores and key providers, reused between refreshes until the
	// configuration changes (a new S3 client or Vault transport a minute
	// would cost a credential lookup and a connection each time).
	openStores map[string]store.Store
	openKeys   map[string]versionLister

	// audited is when each store's versions were last audited, tampered
	// how many keys that audit found.
	audited  map[string]time.Time
	tampered map[string]int

	// auditStatus reports the audit log stream's state; nil without one.
	auditStatus func() *server.AuditStatus
}

// setAudit installs what reports the audit log stream's state.
func (b *book) setAudit(f func() *server.AuditStatus) {
	b.mu.Lock()
	b.auditStatus = f
	b.mu.Unlock()
}

func newBook(sched *Scheduler, identity string, log *slog.Logger, now func() time.Time) *book {
	return &book{
		sched: sched, log: log, now: now, identity: identity,
		plans: map[string]server.PlanStatus{}, drills: map[string]server.DrillStatus{},
		keys: map[string]server.KeyStatus{}, stores: map[string]server.StoreStatus{},
		audited: map[string]time.Time{}, tampered: map[string]int{},
	}
}

// Status implements server.StatusSource.
func (b *book) Status(context.Context) server.Status {
	st := server.Status{Schedules: b.sched.Schedules()}
	b.mu.Lock()
	st.Identity, st.Leader = b.identity, b.leader
	st.ConfigValid, st.ConfigError = b.configErr == "", b.configErr
	st.Plans = sortedValues(b.plans, func(p server.PlanStatus) string { return p.Name })
	st.Drills = sortedValues(b.drills, func(d server.DrillStatus) string { return d.Name })
	st.Keys = sortedValues(b.keys, func(k server.KeyStatus) string { return k.Provider })
	st.Stores = sortedValues(b.stores, func(s server.StoreStatus) string { return s.Name })
	audit := b.auditStatus
	b.mu.Unlock()
	// Outside b.mu: the readiness probe and the scheduler must not wait on
	// the audit log.
	if audit != nil {
		st.Audit = audit()
	}
	return st
}

func sortedValues[T any](m map[string]T, key func(T) string) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	return out
}

func (b *book) setLeader(v bool) {
	b.mu.Lock()
	b.leader = v
	b.mu.Unlock()
}

func (b *book) setConfigError(text string) {
	b.mu.Lock()
	b.configErr = text
	b.mu.Unlock()
}

// configure keeps only the objects of set, with their targets: a plan's
// RPO target is the tightest targets.rpo of the drills that test it.
func (b *book) configure(set *config.Set, m *server.Metrics) {
	b.mu.Lock()
	defer b.mu.Unlock()
	plans := map[string]server.PlanStatus{}
	for _, p := range set.BackupPlans {
		ps := b.plans[p.Metadata.Name]
		ps.Name, ps.Store, ps.Target, ps.TargetDrill = p.Metadata.Name, p.Spec.Store, 0, ""
		for _, d := range set.Drills {
			rpo := d.Spec.Targets.RPO.Std()
			if d.Spec.BackupPlan == p.Metadata.Name && rpo > 0 && (ps.Target == 0 || rpo < ps.Target) {
				ps.Target, ps.TargetDrill = rpo, d.Metadata.Name
			}
		}
		plans[ps.Name] = ps
		if m != nil {
			m.PlanTarget(ps.Name, ps.Target)
		}
	}
	drills := map[string]server.DrillStatus{}
	for _, d := range set.Drills {
		ds := b.drills[d.Metadata.Name]
		ds.Name = d.Metadata.Name
		ds.RTOTarget, ds.RPOTarget = d.Spec.Targets.RTO.Std(), d.Spec.Targets.RPO.Std()
		drills[ds.Name] = ds
	}
	keys := map[string]server.KeyStatus{}
	for _, kp := range set.KeyProviders {
		ks := b.keys[kp.Metadata.Name]
		ks.Provider = kp.Metadata.Name
		ks.RotationPeriod = rotationPeriod(set, kp.Metadata.Name, b.now())
		keys[ks.Provider] = ks
	}
	stores := map[string]server.StoreStatus{}
	for _, cs := range set.Stores {
		ss, ok := b.stores[cs.Metadata.Name]
		if !ok {
			ss = server.StoreStatus{Name: cs.Metadata.Name}
		}
		stores[ss.Name] = ss
	}
	b.plans, b.drills, b.keys, b.stores = plans, drills, keys, stores
	b.openStores, b.openKeys = map[string]store.Store{}, map[string]versionLister{}
}

// storeFor returns the opened store of cs, opening it once per
// configuration.
func (b *book) storeFor(ctx context.Context, env *wire.Env, cs *config.Store) (store.Store, error) {
	b.mu.Lock()
	st, ok := b.openStores[cs.Metadata.Name]
	b.mu.Unlock()
	if ok {
		return st, nil
	}
	// Opened for writing, as the runs open it: an fs store not yet
	// written to is created rather than reported missing.
	st, err := env.OpenStore(ctx, cs, false)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.openStores != nil {
		b.openStores[cs.Metadata.Name] = st
	}
	b.mu.Unlock()
	return st, nil
}

// keysFor returns the opened provider of kp, opening it once per
// configuration.
func (b *book) keysFor(ctx context.Context, env *wire.Env, kp *config.KeyProvider) (versionLister, error) {
	b.mu.Lock()
	p, ok := b.openKeys[kp.Metadata.Name]
	b.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := env.OpenKeys(ctx, kp)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.openKeys != nil {
		b.openKeys[kp.Metadata.Name] = p
	}
	b.mu.Unlock()
	return p, nil
}

// rotationPeriod is the interval between the next two ticks of the
// tightest schedule rotating the provider's key; 0 when none does.
func rotationPeriod(set *config.Set, provider string, now time.Time) time.Duration {
	var period time.Duration
	for _, sc := range set.Schedules {
		if sc.Spec.RotationPolicy == "" || sc.Spec.Suspend {
			continue
		}
		pol, ok := set.RotationPolicy(sc.Spec.RotationPolicy)
		if !ok || pol.Spec.KeyProvider != provider {
			continue
		}
		c, err := sc.CronSchedule()
		if err != nil {
			continue
		}
		first := c.Next(now)
		if p := c.Next(first).Sub(first); p > 0 && (period == 0 || p < period) {
			period = p
		}
	}
	return period
}

// refresh probes every store, reads each plan's newest committed backup
// (one listing of backups/ per store, one manifest per plan), the last
// drill records, and each key provider's primary version. A store or
// provider that fails is shown as such; the others are still refreshed.
func (b *book) refresh(ctx context.Context, env *wire.Env, m *server.Metrics, signer *evidence.Signer) {
	set := env.Set
	first := !b.refreshed
	for _, cs := range set.Stores {
		st, err := b.storeFor(ctx, env, cs)
		if err == nil {
			err = b.refreshStore(ctx, set, cs, st, m, signer, first)
		}
		if err == nil {
			err = b.audit(ctx, cs, st, m, signer)
		}
		ss := server.StoreStatus{Name: cs.Metadata.Name, Reachable: err == nil}
		if err != nil {
			ss.Error = "unreachable (see the service log)"
			b.log.Warn("store probe failed", "store", cs.Metadata.Name, "err", err)
		}
		if m != nil {
			m.StoreReachable(cs.Metadata.Name, err == nil)
		}
		b.mu.Lock()
		if _, ok := b.stores[ss.Name]; ok {
			b.stores[ss.Name] = ss
		}
		b.mu.Unlock()
	}
	for _, kp := range set.KeyProviders {
		p, err := b.keysFor(ctx, env, kp)
		var primary *keysPrimary
		if err == nil {
			primary, err = primaryOf(ctx, p)
		}
		if err != nil {
			b.log.Warn("key provider not read", "keyProvider", kp.Metadata.Name, "err", err)
			continue
		}
		if m != nil {
			m.KEKAge(kp.Metadata.Name, primary.created)
		}
		b.mu.Lock()
		if ks, ok := b.keys[kp.Metadata.Name]; ok {
			ks.Primary, ks.Created = primary.version, primary.created
			b.keys[kp.Metadata.Name] = ks
		}
		b.mu.Unlock()
	}
	b.mu.Lock()
	b.refreshed = true
	b.mu.Unlock()
}

// refreshStore reads one store: its plans' newest backups and, on the
// first refresh, the last run of each drill whose plan writes there.
func (b *book) refreshStore(ctx context.Context, set *config.Set, cs *config.Store, st store.Store, m *server.Metrics, signer *evidence.Signer, first bool) error {
	byPlan := map[string][]string{} // plan -> backup IDs with a manifest
	for info, err := range st.List(ctx, "backups/") {
		if err != nil {
			return err
		}
		id, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, "backups/"), "/manifest.json")
		if !ok || strings.Contains(id, "/") {
			continue
		}
		plan, _, err := catalog.ParseID(id)
		if err != nil {
			continue
		}
		if p, ok := set.BackupPlan(plan); !ok || p.Spec.Store != cs.Metadata.Name {
			continue
		}
		byPlan[plan] = append(byPlan[plan], id)
	}
	for plan, ids := range byPlan {
		// Newest first (IDs sort by time within a plan). The live RPO
		// counts only a backup its signed record speaks for, with the
		// manifest the record pins and a point in time not in the future:
		// a manifest planted by someone who can write the store must not
		// make a stopped schedule look fresh.
		slices.SortFunc(ids, func(a, b string) int { return strings.Compare(b, a) })
		for _, id := range ids[:min(len(ids), maxNewestTries)] {
			man, sum, err := catalog.ReadDigest(ctx, st, id)
			if err != nil {
				b.log.Warn("manifest unreadable; not counted", "plan", plan, "backup", id, "err", err)
				continue
			}
			rc, err := backup.CheckRecord(ctx, st, id, sum, signer.PublicKey())
			if err != nil || rc.Status != backup.RecordOK {
				b.log.Warn("backup without a matching signed record; not counted for the live RPO", "plan", plan, "backup", id, "record", rc.Status, "err", err)
				continue
			}
			if man.PointInTime().After(b.now().Add(clockSkew)) {
				b.log.Warn("backup's point in time is in the future; not counted", "plan", plan, "backup", id)
				continue
			}
			b.backup(&man, m)
			break
		}
	}
	if !first {
		return nil
	}
	want := map[string]bool{}
	for _, d := range set.Drills {
		if p, ok := set.BackupPlan(d.Spec.BackupPlan); ok && p.Spec.Store == cs.Metadata.Name {
			want[d.Metadata.Name] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	err := evidence.NewLog(st, signer, b.now).Backwards(ctx, statusScan, func(r evidence.Record) bool {
		if r.Kind != evidence.KindDrill {
			return true
		}
		name, _ := r.Subject["drill"].(string)
		if !want[name] {
			return true
		}
		delete(want, name)
		b.drillRecord(name, r, m)
		return len(want) > 0
	})
	if err != nil {
		var ve *evidence.VerifyError
		if errors.As(err, &ve) {
			b.log.Error("evidence log does not read back; drill status not rebuilt", "store", cs.Metadata.Name, "err", err)
			return nil
		}
		return err
	}
	return nil
}

// auditEvery is how often a store's object versions are audited: the
// audit lists every version in the store.
const auditEvery = 30 * time.Minute

// KindTampering is the evidence kind of a version audit that found keys
// holding versions lifeboat did not write.
const KindTampering = "tampering"

// maxTamperedKeys bounds the keys a tampering record names.
const maxTamperedKeys = 100

// audit lists, at most every auditEvery, the store's keys holding object
// versions or delete markers lifeboat did not write (S3), sets
// lifeboat_store_tampered_keys and, on the leader, appends a signed
// `tampering` record when the count grew: someone else writes to the
// store.
func (b *book) audit(ctx context.Context, cs *config.Store, st store.Store, m *server.Metrics, signer *evidence.Signer) error {
	va, ok := st.(store.VersionAuditor)
	if !ok {
		return nil
	}
	name := cs.Metadata.Name
	b.mu.Lock()
	due := b.now().Sub(b.audited[name]) >= auditEvery
	before, leader := b.tampered[name], b.leader
	b.mu.Unlock()
	if !due {
		return nil
	}
	if leader {
		// Uploads a killed backup left open are aborted and recorded here
		// too, not only by the next backup into the store.
		if _, err := job.CleanStaleUploads(ctx, st, name, signer, config.EvidenceRetention(cs), b.now, b.log); err != nil {
			b.log.Warn("stale uploads not cleaned up", "store", name, "err", err)
		}
	}
	findings, err := va.AuditVersions(ctx, "")
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.audited[name], b.tampered[name] = b.now(), len(findings)
	b.mu.Unlock()
	if m != nil {
		m.StoreTampered(name, len(findings))
	}
	if len(findings) == 0 {
		return nil
	}
	b.log.Error("the store holds object versions lifeboat did not write: someone else writes to it", "store", name, "keys", len(findings), "first", findings[0].String())
	if !leader || len(findings) <= before || signer == nil {
		return nil
	}
	var keys []any
	for _, f := range findings[:min(len(findings), maxTamperedKeys)] {
		keys = append(keys, map[string]any{"key": f.Key, "versions": int64(f.Versions), "deleteMarkers": int64(f.DeleteMarkers)})
	}
	t := b.now().UTC()
	_, err = evidence.NewLog(st, signer, b.now, evidence.WithRetention(config.EvidenceRetention(cs)), evidence.WithLogger(b.log)).Append(ctx, evidence.Record{
		Kind: KindTampering, ID: name + "-" + t.Format("20060102T150405Z"), Outcome: evidence.OutcomeFailure,
		Subject: map[string]any{"store": name, "count": int64(len(findings)), "keys": keys, "auditedAt": t.Format(time.RFC3339Nano)},
		HIPAA:   []string{"§164.312(c)(1)", "§164.312(b)"},
	})
	if err != nil {
		b.log.Error("tampering not recorded in the evidence log", "store", name, "err", err)
	}
	return nil
}

// maxNewestTries bounds how many of a plan's newest backups are tried
// for one its signed record speaks for.
const maxNewestTries = 10

// backup records a committed backup as its plan's newest if it is newer.
func (b *book) backup(man *catalog.Manifest, m *server.Metrics) {
	pit := man.PointInTime()
	b.mu.Lock()
	ps, ok := b.plans[man.Plan]
	if ok && pit.After(ps.NewestPointInTime) {
		ps.NewestPointInTime = pit
		b.plans[man.Plan] = ps
	}
	b.mu.Unlock()
	if ok && m != nil {
		bySource, rev := backupFacts(man)
		m.BackupCommitted(man.Plan, bySource, rev, pit)
	}
}

// drillRecord rebuilds a drill's last run from its signed record.
func (b *book) drillRecord(name string, r evidence.Record, m *server.Metrics) {
	measured, _ := r.Subject["measured"].(map[string]any)
	ms := func(field string) *int64 {
		v, ok := measured[field].(int64)
		if !ok {
			return nil
		}
		return &v
	}
	rto, rpo, gap := ms("rtoMs"), ms("rpoMs"), ms("worstGapMs")
	b.mu.Lock()
	ds, ok := b.drills[name]
	if ok && r.Time.After(ds.LastRun) {
		ds.LastRun = r.Time
		ds.Verdict, _ = r.Subject["verdict"].(string)
		ds.RTO, ds.RPO, ds.WorstGap = msDur(rto), msDur(rpo), msDur(gap)
		if rep, ok := r.Subject["report"].(map[string]any); ok {
			ds.ReportKey, _ = rep["key"].(string)
		}
		ds.Phases = nil
		b.drills[name] = ds
	}
	b.mu.Unlock()
	if ok && m != nil {
		d := &drill.Result{Measured: evidence.Measured{RTOMs: rto, RPOMs: rpo, WorstGapMs: gap}}
		d.Targets.RTOMs, d.Targets.RPOMs = ds.RTOTarget.Milliseconds(), ds.RPOTarget.Milliseconds()
		met := drillMet(d)
		// The record counts the checks but does not list their outcomes:
		// a pass means every check passed; a fail with the RTO and RPO met
		// means a check failed; otherwise the checks are not known.
		switch c, _ := r.Subject["checks"].(int64); {
		case ds.Verdict == evidence.VerdictPass && c > 0:
			met["checks"] = true
		case ds.Verdict != evidence.VerdictPass && met["rto"] && met["rpo"]:
			met["checks"] = false
		default:
			delete(met, "checks")
		}
		m.DrillFinished(name, rto, rpo, gap, met)
	}
}

func msDur(v *int64) time.Duration {
	if v == nil {
		return 0
	}
	return time.Duration(*v) * time.Millisecond
}

// ran updates the book from a finished run.
func (b *book) ran(res RunResult) {
	if res.Backup != nil && res.Outcome != evidence.OutcomeFailure {
		b.backup(res.Backup, nil)
	}
	if d := res.Drill; d != nil && d.RunID != "" {
		b.mu.Lock()
		if ds, ok := b.drills[d.Drill]; ok {
			ds.LastRun, ds.Verdict = d.Finished, d.Verdict
			ds.RTO, ds.RPO, ds.WorstGap = msDur(d.Measured.RTOMs), msDur(d.Measured.RPOMs), msDur(d.Measured.WorstGapMs)
			ds.ReportKey = res.ReportKey
			ds.Phases = ds.Phases[:0:0]
			for _, p := range d.Phases {
				ds.Phases = append(ds.Phases, server.Phase{Name: p.Name, Duration: p.Duration})
			}
			b.drills[d.Drill] = ds
		}
		b.mu.Unlock()
	}
}

// ready says why the service is not ready: the first refresh has not
// finished, or a store did not answer its last probe. The text names the
// stores and nothing else.
func (b *book) ready() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.refreshed {
		return errors.New("the stores and key providers have not been read yet")
	}
	var down []string
	for name, st := range b.stores {
		if !st.Reachable {
			down = append(down, name)
		}
	}
	if len(down) > 0 {
		slices.Sort(down)
		return fmt.Errorf("unreachable stores: %s", strings.Join(down, ", "))
	}
	return nil
}

// keysPrimary is a provider's primary KEK version.
type keysPrimary struct {
	version string
	created time.Time
}

// versionLister is what the status page needs of a key provider.
type versionLister interface {
	Versions(ctx context.Context) ([]keys.Version, error)
}

func primaryOf(ctx context.Context, p versionLister) (*keysPrimary, error) {
	vs, err := p.Versions(ctx)
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		if v.Primary {
			return &keysPrimary{version: v.Ref.Version, created: v.Created}, nil
		}
	}
	return nil, errors.New("the provider reports no primary version")
}

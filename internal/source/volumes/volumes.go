package volumes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumesnapshot/v1"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// Options describe the snapshots of one backup.
type Options struct {
	// Config reaches the cluster's API server. Required.
	Config *rest.Config
	// Plan and Backup are the plan's name and the backup ID. Required.
	Plan, Backup string
	// Namespaces limits the claims to these namespaces; empty means all.
	Namespaces []string
	// LabelSelector limits the claims to those it matches; empty means
	// all.
	LabelSelector string
	// SnapshotClass is the VolumeSnapshotClass; empty means the driver's
	// default.
	SnapshotClass string
	// Timeout bounds waiting for the snapshots to be ready; zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Partial records a failed snapshot and goes on (onError partial);
	// otherwise any failure fails Take (onError fail).
	Partial bool
	// RetainUntil is the backup's retain-until time, written on each
	// snapshot. Required.
	RetainUntil time.Time
	// Retention is the plan's retention. A snapshot of a backup that was
	// never committed is kept at least this long after the API server
	// created it, whatever its (editable) annotation says. Required.
	Retention time.Duration
	// Committed looks up an earlier backup of the plan in the catalog,
	// for retention: the retain-until annotation on a VolumeSnapshot can
	// be edited by anyone who may update VolumeSnapshots, the object-locked
	// manifest cannot. Required.
	Committed func(ctx context.Context, backup string) (Commit, bool, error)
	// Now is the clock for readyAt and retention; nil means time.Now.
	Now func() time.Time
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Commit is what an earlier, committed backup's manifest says about its
// snapshots.
type Commit struct {
	// RetainUntil is the manifest's retainUntil.
	RetainUntil time.Time
	// Snapshots are the manifest's volume snapshots as "namespace/name".
	Snapshots []string
}

// DefaultTimeout bounds waiting for snapshots when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Minute

// Polling intervals while waiting for snapshots: the first, and the most
// it backs off to.
const (
	pollFirst = 250 * time.Millisecond
	pollMax   = 5 * time.Second
)

// callTimeout bounds each API call made while waiting for snapshots. The
// calls do not run under the overall timeout, which wait alone checks
// between polls; a call cut short (by callTimeout or the run's
// cancellation) is retried and never becomes a snapshot's state.
const callTimeout = 15 * time.Second

// cleanupTimeout bounds deleting snapshots after a failure, which runs even
// when the run's context is done.
const cleanupTimeout = 30 * time.Second

// Result is what Take took.
type Result struct {
	// Volumes is the manifest's volumes section.
	Volumes catalog.Volumes
	// Skipped holds one entry per failed snapshot under Partial; any entry
	// makes the backup partial.
	Skipped []catalog.Skip
}

// ClaimError is the failure of one claim's snapshot.
type ClaimError struct {
	Namespace, Claim string
	// Snapshot is the VolumeSnapshot's name.
	Snapshot string
	Err      error
}

func (e *ClaimError) Error() string {
	return fmt.Sprintf("claim %s/%s: volume snapshot %s: %v", e.Namespace, e.Claim, e.Snapshot, e.Err)
}

func (e *ClaimError) Unwrap() error { return e.Err }

// ErrNotReady is the cause of a ClaimError for a snapshot that was not ready
// within the timeout.
var ErrNotReady = errors.New("not ready within the timeout")

// snap is one claim's snapshot as Take tracks it.
type snap struct {
	rec     catalog.VolumeSnapshot
	created bool
	uid     types.UID
	done    bool
	err     error
	state   string // last state logged
}

func (s *snap) key() string { return s.rec.Namespace + "/" + s.rec.Claim }

type taker struct {
	opts  Options
	log   *slog.Logger
	core  corev1client.CoreV1Interface
	snaps snapclient.SnapshotV1Interface
	// apiErr is the last API error logged while waiting, so a repeated
	// one is logged once.
	apiErr string
}

// Take snapshots the selected claims, waits for them, and deletes the
// plan's VolumeSnapshots whose retention has ended. Under onError fail
// (Partial false) any failed snapshot fails Take, and Take deletes every
// snapshot it created; the error then holds a *ClaimError per failure.
func Take(ctx context.Context, opts Options) (Result, error) {
	if opts.Config == nil || opts.Plan == "" || opts.Backup == "" || opts.RetainUntil.IsZero() || opts.Retention <= 0 || opts.Committed == nil {
		return Result{}, errors.New("volumes: config, plan, backup, retain-until and the catalog lookup are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := &taker{opts: opts, log: opts.Logger}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("source", catalog.SourceVolumes)
	var err error
	if t.core, err = corev1client.NewForConfig(opts.Config); err != nil {
		return Result{}, fmt.Errorf("volumes: core client: %w", err)
	}
	if t.snaps, err = snapclient.NewForConfig(opts.Config); err != nil {
		return Result{}, fmt.Errorf("volumes: snapshot client: %w", err)
	}
	return t.take(ctx)
}

func (t *taker) take(ctx context.Context) (Result, error) {
	claims, err := t.claims(ctx)
	if err != nil {
		return Result{}, err
	}
	t.log.Info("volume snapshots starting", "claims", len(claims), "snapshotClass", t.opts.SnapshotClass,
		"timeout", t.opts.Timeout)
	snaps := make([]*snap, len(claims))
	for i, c := range claims {
		snaps[i] = &snap{rec: catalog.VolumeSnapshot{
			Namespace: c.ns, Claim: c.name, Snapshot: SnapshotName(t.opts.Backup, c.name),
		}}
	}
	for _, s := range snaps {
		if err := ctx.Err(); err != nil {
			t.cleanup(ctx, snaps, false)
			return Result{}, fmt.Errorf("volumes: %w", err)
		}
		t.create(ctx, s)
	}
	if err := t.wait(ctx, snaps); err != nil {
		t.cleanup(ctx, snaps, false)
		return Result{}, err
	}

	var failed []*ClaimError
	for _, s := range snaps {
		if s.err != nil {
			failed = append(failed, &ClaimError{Namespace: s.rec.Namespace, Claim: s.rec.Claim, Snapshot: s.rec.Snapshot, Err: s.err})
		}
	}
	if len(failed) > 0 && !t.opts.Partial {
		t.cleanup(ctx, snaps, false)
		return Result{}, failure(failed, len(snaps))
	}
	res := Result{Volumes: catalog.Volumes{SnapshotClass: t.opts.SnapshotClass, Snapshots: []catalog.VolumeSnapshot{}}}
	for _, s := range snaps {
		if s.err != nil {
			s.rec = catalog.VolumeSnapshot{Namespace: s.rec.Namespace, Claim: s.rec.Claim, Snapshot: s.rec.Snapshot, Error: s.err.Error()}
			res.Skipped = append(res.Skipped, catalog.Skip{Source: catalog.SourceVolumes, Reason: s.key() + ": " + s.err.Error()})
		}
		res.Volumes.Snapshots = append(res.Volumes.Snapshots, s.rec)
	}
	if len(failed) > 0 {
		// Partial: a failed snapshot is in no manifest's data; do not let
		// it linger (or turn ready later) for the whole retention.
		t.cleanup(ctx, snaps, true)
	}
	res.Volumes.Expired = t.expire(ctx)
	t.log.Info("volume snapshots done", "snapshots", len(snaps)-len(failed), "failed", len(failed),
		"expired", len(res.Volumes.Expired))
	return res, nil
}

// failure is the error of a source whose snapshots failed under onError
// fail: it names every failed claim and wraps the first ClaimError.
func failure(failed []*ClaimError, total int) error {
	names := make([]string, len(failed))
	for i, f := range failed {
		names[i] = f.Namespace + "/" + f.Claim
	}
	err := fmt.Errorf("volumes: %d of %d snapshots failed (%s): %w", len(failed), total, strings.Join(names, ", "), failed[0])
	if len(failed) == 1 {
		return err
	}
	rest := make([]string, len(failed)-1)
	for i, f := range failed[1:] {
		rest[i] = f.Error()
	}
	return fmt.Errorf("%w; and %s", err, strings.Join(rest, "; "))
}

type claimRef struct{ ns, name string }

// claims lists the selected claims, sorted by namespace and name.
func (t *taker) claims(ctx context.Context) ([]claimRef, error) {
	if t.opts.LabelSelector != "" {
		if _, err := labels.Parse(t.opts.LabelSelector); err != nil {
			return nil, fmt.Errorf("volumes: label selector %q: %w", t.opts.LabelSelector, err)
		}
	}
	namespaces := t.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var out []claimRef
	for _, ns := range namespaces {
		opts := metav1.ListOptions{LabelSelector: t.opts.LabelSelector, Limit: 500}
		for {
			list, err := t.core.PersistentVolumeClaims(ns).List(ctx, opts)
			if err != nil {
				where := "all namespaces"
				if ns != "" {
					where = "namespace " + ns
				}
				return nil, fmt.Errorf("volumes: list persistent volume claims in %s: %w", where, err)
			}
			for _, c := range list.Items {
				out = append(out, claimRef{c.Namespace, c.Name})
			}
			if list.Continue == "" {
				break
			}
			opts.Continue = list.Continue
		}
	}
	slices.SortFunc(out, func(a, b claimRef) int { return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.name, b.name)) })
	return slices.Compact(out), nil
}

// create creates s's VolumeSnapshot; a failure is recorded in s.err.
func (t *taker) create(ctx context.Context, s *snap) {
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.rec.Snapshot, Namespace: s.rec.Namespace,
			Labels: map[string]string{LabelPlan: LabelValue(t.opts.Plan), LabelBackup: LabelValue(t.opts.Backup)},
			Annotations: map[string]string{
				AnnotationBackup:      t.opts.Backup,
				AnnotationRetainUntil: t.opts.RetainUntil.UTC().Format(time.RFC3339),
			},
		},
		Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &s.rec.Claim}},
	}
	if t.opts.SnapshotClass != "" {
		vs.Spec.VolumeSnapshotClassName = &t.opts.SnapshotClass
	}
	got, err := t.snaps.VolumeSnapshots(s.rec.Namespace).Create(ctx, vs, metav1.CreateOptions{})
	log := t.log.With("namespace", s.rec.Namespace, "claim", s.rec.Claim, "snapshot", s.rec.Snapshot)
	if err != nil {
		s.err = fmt.Errorf("create: %w", err)
		log.Error("volume snapshot failed", "err", s.err)
		return
	}
	s.created, s.uid = true, got.UID
	s.state = "created"
	log.Info("volume snapshot created")
}

// wait polls the snapshots until each is ready or failed, or the timeout
// runs out (which fails the ones still pending). It returns an error only
// when ctx itself is done. Each API call gets callTimeout, and each round
// of calls ends by the deadline (or lastLook after it, for the last look);
// a call cut short by either never becomes a snapshot's state.
func (t *taker) wait(ctx context.Context, snaps []*snap) error {
	deadline := time.Now().Add(t.opts.Timeout)
	interval := pollFirst
	for {
		// A round of calls ends by the deadline (or shortly after, for the
		// last look), however many namespaces and snapshots it visits.
		rctx, cancel := context.WithDeadline(ctx, later(deadline, time.Now().Add(lastLook)))
		pending := 0
		for _, ns := range namespacesOf(snaps) {
			pending += t.poll(rctx, ns, snaps)
		}
		cancel()
		if pending == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("volumes: waiting for snapshots: %w", err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			for _, s := range snaps {
				if !s.done && s.err == nil {
					s.err = fmt.Errorf("%w (%s; last state: %s)", ErrNotReady, t.opts.Timeout, s.state)
					t.log.Error("volume snapshot failed", "namespace", s.rec.Namespace, "claim", s.rec.Claim,
						"snapshot", s.rec.Snapshot, "err", s.err)
				}
			}
			return nil
		}
		// The last look is at the deadline, not an interval after it.
		timer := time.NewTimer(min(interval, left))
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("volumes: waiting for snapshots: %w", ctx.Err())
		}
		interval = min(interval*3/2, pollMax)
	}
}

// lastLook is how long the look at the deadline may take.
const lastLook = 5 * time.Second

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// namespacesOf returns the namespaces of the snapshots still pending.
func namespacesOf(snaps []*snap) []string {
	var out []string
	for _, s := range snaps {
		if !s.done && s.err == nil && !slices.Contains(out, s.rec.Namespace) {
			out = append(out, s.rec.Namespace)
		}
	}
	return out
}

// cutShort reports whether err is that of a call whose context (cctx)
// ended: the call's own timeout or the run being cancelled. Such an error
// says nothing about the snapshot, so it never becomes its state.
func (t *taker) cutShort(cctx context.Context, what string, err error) bool {
	if cctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return false
	}
	if msg := what + ": " + err.Error(); msg != t.apiErr {
		t.apiErr = msg
		t.log.Warn("volume snapshots: API call did not finish; retrying", "call", what, "err", err)
	}
	return true
}

// poll looks once at the pending snapshots in ns and returns how many are
// still pending.
func (t *taker) poll(ctx context.Context, ns string, snaps []*snap) int {
	sel := labels.Set{LabelBackup: LabelValue(t.opts.Backup)}.String()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	list, err := t.snaps.VolumeSnapshots(ns).List(cctx, metav1.ListOptions{LabelSelector: sel})
	cut := err != nil && t.cutShort(cctx, "list volume snapshots in namespace "+ns, err)
	cancel()
	pending := 0
	for _, s := range snaps {
		if s.done || s.err != nil || s.rec.Namespace != ns {
			continue
		}
		if err != nil {
			if !cut {
				t.observe(s, "listing volume snapshots failed: "+err.Error())
			}
			pending++
			continue
		}
		i := slices.IndexFunc(list.Items, func(vs snapv1.VolumeSnapshot) bool { return vs.Name == s.rec.Snapshot })
		if i < 0 || list.Items[i].UID != s.uid {
			s.err = errors.New("the volume snapshot disappeared while lifeboat waited for it")
			t.failed(s)
			continue
		}
		t.check(ctx, s, &list.Items[i])
		if !s.done && s.err == nil {
			pending++
		}
	}
	return pending
}

// check updates s from its VolumeSnapshot vs.
func (t *taker) check(ctx context.Context, s *snap, vs *snapv1.VolumeSnapshot) {
	st := vs.Status
	switch {
	case st == nil:
		t.observe(s, "waiting for the snapshot controller")
		return
	case st.Error != nil:
		s.err = reported("the snapshot controller", st.Error)
		t.failed(s)
		return
	case st.BoundVolumeSnapshotContentName == nil || *st.BoundVolumeSnapshotContentName == "":
		t.observe(s, "not bound to a content yet")
		return
	}
	content := *st.BoundVolumeSnapshotContentName
	ready := st.ReadyToUse != nil && *st.ReadyToUse
	if !ready {
		t.observe(s, "bound to content "+content+", not ready to use")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	vsc, err := t.snaps.VolumeSnapshotContents().Get(cctx, content, metav1.GetOptions{})
	cut := err != nil && t.cutShort(cctx, "get volume snapshot content "+content, err)
	cancel()
	if err != nil {
		if !cut {
			t.observe(s, "ready; get volume snapshot content "+content+": "+err.Error())
		}
		return
	}
	if ref := vsc.Spec.VolumeSnapshotRef; ref.Name != vs.Name || ref.Namespace != vs.Namespace || (ref.UID != "" && ref.UID != vs.UID) {
		s.err = fmt.Errorf("bound content %s refers to volume snapshot %s/%s, not to this one", content, ref.Namespace, ref.Name)
		t.failed(s)
		return
	}
	cst := vsc.Status
	switch {
	case cst != nil && cst.Error != nil:
		s.err = reported("volume snapshot content "+content, cst.Error)
		t.failed(s)
		return
	case cst == nil || cst.SnapshotHandle == nil || *cst.SnapshotHandle == "":
		t.observe(s, "ready; content "+content+" has no snapshot handle yet")
		return
	}
	s.rec.Content, s.rec.Driver, s.rec.Handle = content, vsc.Spec.Driver, *cst.SnapshotHandle
	switch {
	case cst.RestoreSize != nil:
		s.rec.RestoreSize = *cst.RestoreSize
	case st.RestoreSize != nil:
		s.rec.RestoreSize = st.RestoreSize.Value()
	}
	s.rec.ReadyAt = t.opts.Now().UTC()
	s.done, s.state = true, "ready"
	t.log.Info("volume snapshot ready", "namespace", s.rec.Namespace, "claim", s.rec.Claim, "snapshot", s.rec.Snapshot,
		"content", s.rec.Content, "driver", s.rec.Driver, "handle", s.rec.Handle, "restoreSize", s.rec.RestoreSize)
}

// reported is the error a snapshot controller reported in a status.
func reported(who string, e *snapv1.VolumeSnapshotError) error {
	msg := "(no message)"
	if e.Message != nil && *e.Message != "" {
		msg = *e.Message
	}
	if e.Time != nil {
		return fmt.Errorf("%s reported an error at %s: %s", who, e.Time.UTC().Format(time.RFC3339), msg)
	}
	return fmt.Errorf("%s reported an error: %s", who, msg)
}

// observe records and logs s's state when it changed.
func (t *taker) observe(s *snap, state string) {
	if state == s.state {
		return
	}
	s.state = state
	t.log.Info("volume snapshot waiting", "namespace", s.rec.Namespace, "claim", s.rec.Claim,
		"snapshot", s.rec.Snapshot, "state", state)
}

func (t *taker) failed(s *snap) {
	s.state = "failed"
	t.log.Error("volume snapshot failed", "namespace", s.rec.Namespace, "claim", s.rec.Claim,
		"snapshot", s.rec.Snapshot, "err", s.err)
}

// cleanup deletes the snapshots this run created: all of them, or, with
// onlyFailed, those that failed. It runs even when ctx is done, bounded
// by cleanupTimeout, and only logs what it could not delete.
func (t *taker) cleanup(ctx context.Context, snaps []*snap, onlyFailed bool) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for _, s := range snaps {
		if !s.created || (onlyFailed && s.err == nil) {
			continue
		}
		log := t.log.With("namespace", s.rec.Namespace, "claim", s.rec.Claim, "snapshot", s.rec.Snapshot)
		uid := s.uid
		err := t.snaps.VolumeSnapshots(s.rec.Namespace).Delete(cctx, s.rec.Snapshot,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		switch {
		case err == nil || apierrors.IsNotFound(err):
			log.Info("volume snapshot of this run deleted")
		default:
			log.Error("delete volume snapshot of this run", "err", err)
		}
	}
}

// expire deletes the plan's VolumeSnapshots, of earlier backups, whose
// retention has ended, and returns them as "namespace/name", sorted.
//
// The retain-until annotation alone is not trusted: it can be edited by
// anyone who may update VolumeSnapshots. A snapshot is deleted only when
// its name is the one lifeboat gives the snapshot of its claim by the
// backup its lifeboat.dev/backup annotation names (names and sources are
// immutable, so the annotation cannot be pointed at another backup), and
//   - that backup's manifest is in the catalog, lists the snapshot, and
//     both its retainUntil and the annotation have passed; or
//   - that backup has no manifest (it was never committed to this store)
//     and the annotation has passed; this is logged.
//
// Anything else (no or an unparseable annotation, a name that does not
// match, a lookup that failed, a manifest that does not list the snapshot
// or whose retention has not ended) keeps the snapshot.
func (t *taker) expire(ctx context.Context) []string {
	now := t.opts.Now()
	namespaces := t.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	sel := labels.Set{LabelPlan: LabelValue(t.opts.Plan)}.String()
	ours := LabelValue(t.opts.Backup)
	lookups := map[string]lookup{}
	var expired []string
	for _, ns := range namespaces {
		list, err := t.snaps.VolumeSnapshots(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			t.log.Warn("list volume snapshots of the plan for retention; none expired", "namespace", ns, "err", err)
			continue
		}
		for _, vs := range list.Items {
			if vs.Labels[LabelBackup] == ours || vs.DeletionTimestamp != nil {
				continue
			}
			backup := vs.Annotations[AnnotationBackup]
			// The caller's logger already has "backup": this run's.
			log := t.log.With("namespace", vs.Namespace, "snapshot", vs.Name, "snapshotBackup", backup)
			until, ok := t.expired(ctx, &vs, backup, now, lookups, log)
			if !ok {
				continue
			}
			uid := vs.UID
			err = t.snaps.VolumeSnapshots(vs.Namespace).Delete(ctx, vs.Name,
				metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			switch {
			case err == nil:
				log.Info("expired volume snapshot deleted", "retainUntil", until)
				expired = append(expired, vs.Namespace+"/"+vs.Name)
			case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
				log.Info("expired volume snapshot already gone", "retainUntil", until)
			default:
				log.Warn("delete expired volume snapshot; kept for the next run", "retainUntil", until, "err", err)
			}
		}
	}
	slices.Sort(expired)
	return expired
}

// lookup is the outcome of Options.Committed for one backup.
type lookup struct {
	commit Commit
	found  bool
	err    error
}

// expired reports whether vs, of backup, may be deleted under the
// retention rule of expire, and the retain-until time that ended; it logs
// why a snapshot whose annotation has passed is kept.
func (t *taker) expired(ctx context.Context, vs *snapv1.VolumeSnapshot, backup string, now time.Time,
	lookups map[string]lookup, log *slog.Logger) (time.Time, bool) {
	v, ok := vs.Annotations[AnnotationRetainUntil]
	if !ok {
		log.Warn("volume snapshot of the plan has no retain-until annotation; kept")
		return time.Time{}, false
	}
	until, err := time.Parse(time.RFC3339, v)
	if err != nil {
		log.Warn("volume snapshot of the plan has an unparseable retain-until annotation; kept", "retainUntil", v)
		return time.Time{}, false
	}
	if !now.After(until) {
		return time.Time{}, false
	}
	claim := vs.Spec.Source.PersistentVolumeClaimName
	if plan, _, err := catalog.ParseID(backup); err != nil || plan != t.opts.Plan {
		// Only this plan's backups are looked up in this store; an
		// annotation edited to another plan's backup, or to a variant of
		// an ID, would not be found and must not reach the branch below.
		log.Warn("volume snapshot's backup annotation does not name a backup of this plan; kept", "retainUntil", until)
		return time.Time{}, false
	}
	if backup == "" || claim == nil || vs.Name != SnapshotName(backup, *claim) {
		log.Warn("volume snapshot of the plan is not named for the backup its annotation names; kept",
			"retainUntil", until)
		return time.Time{}, false
	}
	l, ok := lookups[backup]
	if !ok {
		l.commit, l.found, l.err = t.opts.Committed(ctx, backup)
		lookups[backup] = l
	}
	switch {
	case l.err != nil:
		log.Warn("look up the backup of an expired volume snapshot in the catalog; kept", "retainUntil", until, "err", l.err)
		return time.Time{}, false
	case !l.found:
		// Never committed: nothing refers to it. Its annotation can be
		// edited; its creation time, set by the API server, cannot. Keep
		// it a whole retention from then, as if it had been committed.
		if floor := vs.CreationTimestamp.Add(t.opts.Retention); !now.After(floor) {
			log.Warn("volume snapshot of a backup that was never committed to this store: kept a full retention from its creation",
				"retainUntil", until, "createdPlusRetention", floor)
			return time.Time{}, false
		} else if floor.After(until) {
			until = floor
		}
		log.Warn("volume snapshot of a backup that was never committed to this store: expired, a full retention after its creation",
			"retainUntil", until)
		return until, true
	case !slices.Contains(l.commit.Snapshots, vs.Namespace+"/"+vs.Name):
		log.Warn("volume snapshot is not in its backup's manifest; kept", "retainUntil", until)
		return time.Time{}, false
	case !now.After(l.commit.RetainUntil):
		if !until.Equal(l.commit.RetainUntil) {
			log.Warn("volume snapshot's retain-until annotation differs from its backup's manifest; kept until the manifest's",
				"annotation", until, "retainUntil", l.commit.RetainUntil)
		}
		return time.Time{}, false
	}
	// The manifest is read without its signed record, so someone who can
	// write to the store could have put one there with an early
	// retainUntil. The snapshot's creation time, set by the API server,
	// bounds that too: a committed backup is locked for at least the
	// plan's retention from its start, which is about when its snapshots
	// were created.
	if floor := vs.CreationTimestamp.Add(t.opts.Retention); !now.After(floor) {
		log.Warn("volume snapshot's backup manifest says it expired, but it was created less than the plan's retention ago; kept",
			"retainUntil", l.commit.RetainUntil, "createdPlusRetention", floor)
		return time.Time{}, false
	}
	// The later of the two has passed.
	if l.commit.RetainUntil.After(until) {
		until = l.commit.RetainUntil
	}
	return until, true
}

// Discard deletes the VolumeSnapshots listed in v that backup created
// (their lifeboat.dev/backup annotation is backup), for a backup that
// failed after its volumes source succeeded: the backup is not committed,
// so nothing refers to them. A snapshot already gone is not an error; one
// created by another backup is never deleted.
func Discard(ctx context.Context, cfg *rest.Config, backup string, v catalog.Volumes, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	snaps, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("volumes: snapshot client: %w", err)
	}
	var errs []error
	for _, s := range v.Snapshots {
		client := snaps.VolumeSnapshots(s.Namespace)
		vs, err := client.Get(ctx, s.Snapshot, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("volumes: discard volume snapshot %s/%s: %w", s.Namespace, s.Snapshot, err))
			continue
		case vs.Annotations[AnnotationBackup] != backup:
			logger.Warn("volume snapshot is not of this backup; kept", "namespace", s.Namespace, "snapshot", s.Snapshot,
				"snapshotBackup", vs.Annotations[AnnotationBackup])
			continue
		}
		uid := vs.UID
		err = client.Delete(ctx, s.Snapshot, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("volumes: discard volume snapshot %s/%s: %w", s.Namespace, s.Snapshot, err))
			continue
		}
		logger.Info("volume snapshot of the failed backup deleted", "namespace", s.Namespace, "snapshot", s.Snapshot)
	}
	return errors.Join(errs...)
}

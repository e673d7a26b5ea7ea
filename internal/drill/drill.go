package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/memwatch"
	"github.com/lifeboat-dr/lifeboat/internal/plainfile"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/source/volumes"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Phase names, in the order a drill runs them.
const (
	PhaseSelect            = "select"
	PhaseFetch             = "fetch"
	PhaseDecrypt           = "decrypt"
	PhaseRestoreEtcd       = scratch.PhaseRestoreEtcd
	PhaseStartEtcd         = scratch.PhaseStartEtcd
	PhaseStartControlPlane = scratch.PhaseStartControlPlane
	PhaseVerify            = "verify"
)

// PhaseOrder lists every phase of a drill in order; a report lists each,
// those not reached as skipped.
var PhaseOrder = []string{PhaseSelect, PhaseFetch, PhaseDecrypt, PhaseRestoreEtcd, PhaseStartEtcd, PhaseStartControlPlane, PhaseVerify}

// sourcePhases are the phases of the other sources a drill restores, run
// after the control plane starts and before verify, and listed in a
// report only when the Drill's checks call for them.
var sourcePhases = []string{PhaseRestoreManifests, PhaseRestoreVolumes, PhaseRestoreVelero, PhaseRestoreVault, PhaseAppReady}

// ErrFailed is wrapped by Run's error when the drill's verdict is fail: a
// target missed, a check that did not pass, or a phase that failed.
var ErrFailed = errors.New("drill failed")

// Options describe one drill run.
type Options struct {
	// Drill is the drill to run. Required.
	Drill *config.Drill
	// Plan is the backup plan the drill restores (Drill.Spec.BackupPlan).
	// Required.
	Plan *config.BackupPlan
	// Store holds the plan's backups; read-only is enough. Required.
	Store store.Store
	// Keys unwraps the backup's data key (keys.Provider satisfies it).
	// Required.
	Keys envelope.Unwrapper
	// KeyProviders name the KeyProviders behind Keys, for the record
	// (a break-glass drill names one).
	KeyProviders []string
	// Scratch starts the scratch cluster. Required.
	Scratch scratch.Provider
	// CheckManifest, when set, judges the selected backup's stored
	// manifest by its SHA-256 before anything else of it is used (the
	// caller compares it with the backup's signed evidence record). With
	// select latest or before, a backup it refuses is passed over (named
	// in the select phase's events and logged) for the newest it accepts,
	// and the drill fails when it accepts none; with an ID, an error fails
	// the drill.
	CheckManifest func(ctx context.Context, backupID, manifestSHA256 string) error
	// GapPoints, when set, gives the points in time of the plan's complete
	// backups appended in [from, to] from a source an attacker cannot
	// write (the signed evidence records), for the worst gap; otherwise
	// the catalog's manifests are used.
	GapPoints func(ctx context.Context, plan string, from, to time.Time) ([]time.Time, error)
	// RunID names the run (reports/<run-id>/); empty means
	// <drill>-<UTC time>-<4 hex digits>.
	RunID string
	// Keep leaves the scratch cluster serving after the drill (also when
	// the Drill says scratch.keep); Result.Cluster is then set and the
	// caller must Stop it.
	Keep bool
	// TempDir is where the run's private temporary directory (decrypted
	// artifacts, the scratch cluster's files) is made; empty means the
	// system's. It holds PHI in plaintext while the drill runs: it should
	// be on encrypted or tmpfs storage. Run removes stale lifeboat-drill-*
	// directories older than StaleTempAge there (left by a crashed run).
	TempDir string
	// EtcdPrefix is the source kube-apiserver's --etcd-prefix; empty means
	// "/registry".
	EtcdPrefix string
	// VaultBinary is the vault binary the canary check starts a scratch
	// Vault with; empty means $LIFEBOAT_VAULT, else vault beside lifeboat
	// (internal/scratch/vault.Locate).
	VaultBinary string
	// Start is when the drill (and the simulated incident, and the RTO
	// clock) started: the caller takes it first thing, before its own
	// setup, so that setup counts towards the RTO. Zero means Now() when
	// Run is called.
	Start time.Time
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Progress, when set, is told what the drill is doing.
	Progress func(Event)
}

// Event is a progress report.
type Event struct {
	// Elapsed is the time since the drill started.
	Elapsed time.Duration
	// Phase is the phase it belongs to.
	Phase string
	// Message says what happened, for a person.
	Message string
}

// Phase is one timed phase of a run.
type Phase struct {
	Name string
	// Offset is when the phase began, from the drill's start.
	Offset   time.Duration
	Duration time.Duration
	// PeakMemoryBytes is the most memory the drill held during the phase:
	// the resident sets of lifeboat and the processes it started, and the
	// decrypted snapshot while held in memory (docs/format.md §5.6); 0
	// for a skipped phase, or where it could not be measured.
	PeakMemoryBytes int64
	// Outcome is evidence.PhaseSuccess, PhaseFailure or PhaseSkipped.
	Outcome string
	// Detail says why a phase failed; empty otherwise.
	Detail string
}

// Result is what a drill did and found.
type Result struct {
	Drill string
	RunID string
	// BackupID is the backup restored; empty when none was selected.
	BackupID string
	// Started and Finished bound the run; Incident is the simulated
	// incident (the start).
	Started, Finished, Incident time.Time
	// PointInTime is the time the restored data reflects (the etcd
	// snapshot's takenAt); zero when no backup was selected.
	PointInTime time.Time
	// Revision is the etcd revision of the backup's inventory.
	Revision int64
	Targets  evidence.Targets
	Measured evidence.Measured
	Phases   []Phase
	Checks   []evidence.Check
	// Verdict is evidence.VerdictPass or VerdictFail; Reasons say why it
	// failed.
	Verdict string
	Reasons []string
	// Manifest is the selected backup's manifest.
	Manifest *catalog.Manifest
	// KeyObject is the KEK version whose key object unwrapped the data
	// key.
	KeyObject string
	// KeyProviders are the KeyProviders the drill could unwrap with
	// (Options.KeyProviders).
	KeyProviders []string
	// Artifacts are the artifacts fetched, decrypted and checked.
	Artifacts []string
	// Cluster is the scratch cluster when it was kept (Options.Keep);
	// Stop it to tear it down and remove the restored data.
	Cluster scratch.Cluster
	// ScheduleMisses are the plan's scheduled backups in the gap window
	// that did not deliver (ScheduleMisses); set by the caller that can
	// read the evidence log, and carried in the drill's record.
	ScheduleMisses []ScheduleMiss
	// Trend holds earlier runs of this Drill, oldest first, from the signed
	// evidence log; set by the caller that can read it, and carried in the
	// report (at most evidence.MaxTrend, the newest).
	Trend []evidence.TrendPoint
	// Err is the failure that ended the drill early, if any.
	Err error
}

// RTO returns the measured recovery time, if it was measured.
func (r *Result) RTO() (time.Duration, bool) { return msDuration(r.Measured.RTOMs) }

// RPO returns the measured recovery point, if it was measured.
func (r *Result) RPO() (time.Duration, bool) { return msDuration(r.Measured.RPOMs) }

func msDuration(ms *int64) (time.Duration, bool) {
	if ms == nil {
		return 0, false
	}
	return time.Duration(*ms) * time.Millisecond, true
}

// Judge decides a drill's verdict from its targets, what it measured and
// its checks: evidence.Judge's rule (docs/format.md §5.6) over the Drill's
// targets. rto and rpo are nil when not measured.
func Judge(targets config.Targets, rto, rpo *time.Duration, checks []evidence.Check) (verdict string, reasons []string) {
	var m evidence.Measured
	if rto != nil {
		m.RTOMs = evidence.Ms(*rto)
	}
	if rpo != nil {
		m.RPOMs = evidence.Ms(*rpo)
	}
	return evidence.Judge(targetsOf(targets), m, checks)
}

func targetsOf(t config.Targets) evidence.Targets {
	return evidence.Targets{RTOMs: t.RTO.Std().Milliseconds(), RPOMs: t.RPO.Std().Milliseconds()}
}

// NewRunID returns a run ID for drill at t: <drill>-<20060102T150405Z>-<4
// hex digits>.
func NewRunID(drill string, t time.Time) (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new drill run ID: %w", err)
	}
	return drill + "-" + t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:]), nil
}

// Run runs the drill. It returns the Result in every case in which the
// drill started; the error is nil exactly when the verdict is pass. A fail
// verdict's error wraps ErrFailed and, when a phase failed, that phase's
// error (so errors.Is finds catalog.ErrVerification, store.ErrIntegrity,
// context.Canceled, ...).
//
// When ctx is cancelled the drill stops, tears the scratch cluster down
// and returns an error wrapping context.Canceled. The Drill's timeout
// bounds the run; running out of it fails the drill.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Drill == nil || opts.Plan == nil || opts.Store == nil || opts.Keys == nil || opts.Scratch == nil {
		return Result{}, errors.New("drill: drill, plan, store, keys and scratch provider are required")
	}
	if opts.Drill.Spec.BackupPlan != opts.Plan.Metadata.Name {
		return Result{}, fmt.Errorf("drill %s: restores plan %q, not %q", opts.Drill.Metadata.Name, opts.Drill.Spec.BackupPlan, opts.Plan.Metadata.Name)
	}
	r := &runner{opts: opts, now: opts.Now, log: opts.Logger}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	name := opts.Drill.Metadata.Name
	r.log = r.log.With("drill", name)
	r.start = opts.Start
	if r.start.IsZero() {
		r.start = r.now()
	}
	runID := opts.RunID
	if runID == "" {
		id, err := NewRunID(name, r.start)
		if err != nil {
			return Result{}, err
		}
		runID = id
	}
	r.log = r.log.With("run", runID)
	r.res = Result{
		Drill: name, RunID: runID, Started: r.start, Incident: r.start,
		Targets:      targetsOf(opts.Drill.Spec.Targets),
		KeyProviders: opts.KeyProviders,
	}
	runCtx := ctx
	if t := opts.Drill.Spec.Timeout.Std(); t > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	// Memory is sampled through the run; finish stops the watch and reads
	// each phase's peak from the samples.
	r.mem = memwatch.Start(memwatch.Options{Now: r.now, Extra: r.heldSnapshot.Load})
	r.event("", "drill %s started (run %s); incident simulated now; targets RTO %s, RPO %s",
		name, runID, opts.Drill.Spec.Targets.RTO, opts.Drill.Spec.Targets.RPO)

	err := r.run(runCtx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (the drill's timeout is %s)", err, opts.Drill.Spec.Timeout)
	}
	r.res.Err = err
	r.finish(err)
	r.teardown(opts.Keep || opts.Drill.Spec.Scratch.Keep, err)
	r.res.Finished = r.now()
	if r.res.Verdict == evidence.VerdictPass {
		r.log.Info("drill passed")
		return r.res, nil
	}
	r.log.Warn("drill failed", "reasons", strings.Join(r.res.Reasons, "; "))
	if err != nil {
		return r.res, fmt.Errorf("drill %s: %w: %w", name, ErrFailed, err)
	}
	return r.res, fmt.Errorf("drill %s: %w: %s", name, ErrFailed, strings.Join(r.res.Reasons, "; "))
}

// runner holds one run's state.
type runner struct {
	opts    Options
	now     func() time.Time
	log     *slog.Logger
	start   time.Time
	res     Result
	tmp     string
	cluster scratch.Cluster
	// clusterEmpty is set when cluster was started without a snapshot
	// (the backup has no etcd): the export is restored into it.
	clusterEmpty bool
	manifests    *manifestsRestore
	vault        *vaultRestore
	// What a drill into an existing cluster restored besides the export.
	volumes                    []volumes.ClaimRestore
	veleroRestore, veleroPhase string
	veleroOK                   bool
	rtoEnd                     time.Time
	// snapshot holds the decrypted etcd snapshot until the scratch etcd
	// is restored from it.
	snapshot *plainfile.File
	// heldSnapshot is the size of snapshot while it is a memory file,
	// which no resident set shows; 0 otherwise.
	heldSnapshot atomic.Int64
	mem          *memwatch.Watch
}

// dropSnapshot discards the decrypted etcd snapshot, if still held.
func (r *runner) dropSnapshot() {
	if r.snapshot != nil {
		r.snapshot.Close()
		r.snapshot = nil
		r.heldSnapshot.Store(0)
	}
}

func (r *runner) event(phase, format string, args ...any) {
	if r.opts.Progress != nil {
		r.opts.Progress(Event{Elapsed: r.now().Sub(r.start), Phase: phase, Message: fmt.Sprintf(format, args...)})
	}
}

// phase runs fn as the named phase and records its timing and outcome.
func (r *runner) phase(name string, fn func() error) error {
	r.event(name, "%s", name)
	t0 := r.now()
	err := fn()
	p := Phase{Name: name, Offset: t0.Sub(r.start), Duration: r.now().Sub(t0), Outcome: evidence.PhaseSuccess}
	if err != nil {
		p.Outcome, p.Detail = evidence.PhaseFailure, err.Error()
	}
	r.res.Phases = append(r.res.Phases, p)
	r.log.Debug("drill phase", "phase", name, "duration", p.Duration, "outcome", p.Outcome)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (r *runner) run(ctx context.Context) error {
	d := r.opts.Drill
	var m catalog.Manifest
	if err := r.phase(PhaseSelect, func() error {
		sel := catalog.Selector{Plan: d.Spec.BackupPlan, Latest: d.Spec.Select.Latest, ID: d.Spec.Select.ID}
		if d.Spec.Select.Before != nil {
			sel.Before = d.Spec.Select.Before.Time
		}
		var err error
		if r.opts.CheckManifest == nil {
			if m, err = catalog.Select(ctx, r.opts.Store, sel); err != nil {
				return err
			}
		} else {
			// With latest or before, the newest backup that passes the
			// check: one no signed record vouches for (planted by someone
			// who can write to the store, perhaps locked for a century)
			// is passed over and named, not drilled, and does not stop
			// every later drill. The copy used from here on is the one
			// read again for its stored bytes' digest and checked.
			var sum string
			accept := func(ctx context.Context, c catalog.Manifest) error {
				got, s, err := catalog.ReadDigest(ctx, r.opts.Store, c.Backup)
				if err != nil {
					return err
				}
				if err := r.opts.CheckManifest(ctx, c.Backup, s); err != nil {
					return err
				}
				m, sum = got, s
				return nil
			}
			_, refused, err := catalog.SelectAccepted(ctx, r.opts.Store, sel, accept)
			for _, e := range refused {
				r.event(PhaseSelect, "passed over: %v", e)
				r.log.Warn("backup passed over: it does not match a signed evidence record", "err", e)
			}
			if err != nil {
				return err
			}
			r.event(PhaseSelect, "manifest of backup %s matches its signed evidence record (SHA-256 %s)", m.Backup, sum)
		}
		if m.Etcd != nil {
			if _, ok := m.Artifact(catalog.ArtifactEtcdSnapshot); !ok {
				return fmt.Errorf("backup %s: manifest has etcd facts but no %s artifact: %w", m.Backup, catalog.ArtifactEtcdSnapshot, catalog.ErrVerification)
			}
			return nil
		}
		// Without an etcd snapshot the drill restores what its checks
		// name (the export, Vault), or nothing it could judge.
		if _, ok := r.drillCheck(config.CheckManifests); ok {
			return nil
		}
		if _, ok := r.drillCheck(config.CheckVaultData); ok {
			return nil
		}
		if _, ok := r.drillCheck(config.CheckCanary); ok {
			return nil
		}
		return fmt.Errorf("backup %s holds no etcd snapshot to restore, and the drill has no manifests, vaultData or canary check to restore anything else with", m.Backup)
	}); err != nil {
		return err
	}
	r.res.Manifest, r.res.BackupID = &m, m.Backup
	r.res.PointInTime = m.PointInTime()
	if m.Etcd != nil {
		r.res.Revision = m.Etcd.Revision
	}
	r.res.Checks = append(r.res.Checks, completeCheck(m))
	rpo := r.res.Incident.Sub(r.res.PointInTime)
	if rpo < 0 {
		// The snapshot cannot have been taken after the incident: one of
		// the clocks is wrong, and no RPO can be claimed from them.
		r.log.Warn("the backup's snapshot time is after the incident: clocks disagree; RPO not measured", "takenAt", r.res.PointInTime)
		r.res.Checks = append(r.res.Checks, evidence.Check{Name: CheckClockSkew, Outcome: evidence.CheckFail,
			Detail: fmt.Sprintf("clock skew: snapshot taken after the incident: etcd snapshot takenAt %s is %s after the incident %s; RPO not measured",
				r.res.PointInTime.UTC().Format(time.RFC3339Nano), (-rpo).Round(time.Millisecond), r.res.Incident.UTC().Format(time.RFC3339Nano))})
	} else {
		r.res.Measured.RPOMs = msUp(rpo)
	}
	r.worstGap(ctx, d.Spec.BackupPlan)
	for _, c := range r.res.Checks {
		r.event(PhaseSelect, "%s %s: %s", strings.ToUpper(c.Outcome), c.Name, c.Detail)
	}
	r.log = r.log.With("backup", m.Backup)
	what := "no etcd snapshot"
	if m.Etcd != nil {
		what = fmt.Sprintf("etcd revision %d", m.Etcd.Revision)
	}
	r.event(PhaseSelect, "selected backup %s: %s, taken %s (%s before the incident), %d artifacts, %s",
		m.Backup, what, r.res.PointInTime.UTC().Format(time.RFC3339), rpo.Round(time.Millisecond), len(m.Artifacts), byteSize(m.StoredSize()))

	r.removeStaleTemp()
	tmp, err := os.MkdirTemp(r.opts.TempDir, tempPattern)
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	r.tmp = tmp
	artDir := filepath.Join(tmp, "artifacts")
	if err := os.Mkdir(artDir, 0o700); err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}

	// Only the artifacts the drill restores are fetched: the control
	// plane's, and those its checks name (the canary check fetches its
	// own).
	_, wantManifests := r.drillCheck(config.CheckManifests)
	_, wantVault := r.drillCheck(config.CheckVaultData)
	if r.existing() && m.Manifests != nil {
		// Into an existing cluster the export is the restore.
		wantManifests = true
	}
	var arts []catalog.Artifact
	for _, a := range m.Artifacts {
		switch {
		case (a.Source == catalog.SourceEtcd || a.Source == catalog.SourceEncryptionConfig) && !r.existing(),
			a.Name == catalog.ArtifactManifests && wantManifests,
			a.Name == catalog.ArtifactVaultKV && wantVault:
			arts = append(arts, a)
		default:
			r.log.Info("artifact not used by this drill", "artifact", a.Name, "source", a.Source)
		}
	}
	// The key object is fetched and the data key unwrapped first; then
	// each artifact is read from the store and decrypted in one stream
	// (the store read ahead of the decryption, docs/performance.md), so a
	// drill takes as long as a restore does.
	var dk envelope.DataKey
	if err := r.phase(PhaseFetch, func() error {
		k, ko, err := catalog.OpenKey(ctx, r.opts.Store, m.Backup, m.DataKeyID, r.opts.Keys)
		if err != nil {
			return err
		}
		if k.ID() != m.DataKeyID {
			k.Destroy()
			return fmt.Errorf("backup %s: key object for %s holds data key %s, manifest says %s: %w: %w",
				m.Backup, ko.KEK, k.ID(), m.DataKeyID, envelope.ErrWrongKey, catalog.ErrVerification)
		}
		// The manifest (its point in time, its digests) is trusted only
		// once its MAC holds under the data key.
		if err := m.CheckMAC(k); err != nil {
			k.Destroy()
			return err
		}
		dk = k
		r.res.KeyObject = ko.KEK.String()
		r.event(PhaseFetch, "key object fetched, data key %s unwrapped with %s; the manifest's MAC holds", dk.ID(), ko.KEK)
		return nil
	}); err != nil {
		return err
	}

	plain := make(map[string]string)
	err = r.phase(PhaseDecrypt, func() error {
		for _, a := range arts {
			p, err := r.fetchDecrypt(ctx, m, a, dk, artDir)
			if err != nil {
				return err
			}
			plain[a.Name] = p
			r.res.Artifacts = append(r.res.Artifacts, a.Name)
			held := ""
			if a.Name == catalog.ArtifactEtcdSnapshot && r.snapshot != nil {
				held = ", held " + r.snapshot.Where()
			}
			r.event(PhaseDecrypt, "read %s (%s stored, %s plaintext) from the store and decrypted it in one stream: ciphertext SHA-256, every AEAD tag and plaintext SHA-256 match the manifest%s",
				a.Name, byteSize(a.CiphertextSize), byteSize(a.PlaintextSize), held)
		}
		if m.Etcd == nil || r.existing() {
			return nil
		}
		return checkSnapshotDigest(plain[catalog.ArtifactEtcdSnapshot], m)
	})
	// Nothing after the decrypt phase needs the data key (the canary
	// check unwraps its own).
	dk.Destroy()
	if err != nil {
		return err
	}
	if err := r.startCluster(ctx, m, plain, tmp, wantManifests); err != nil {
		return err
	}
	if r.existing() {
		r.sweepStale(ctx)
	}
	if wantManifests {
		c, _ := r.drillCheck(config.CheckManifests)
		mc := c.Manifests
		if mc == nil {
			mc = &config.ManifestsCheck{}
		}
		if err := r.phase(PhaseRestoreManifests, func() error {
			p, ok := plain[catalog.ArtifactManifests]
			if !ok {
				return fmt.Errorf("backup %s has no %s artifact to restore", m.Backup, catalog.ArtifactManifests)
			}
			return r.restoreManifests(ctx, m, p, mc)
		}); err != nil {
			return err
		}
	}
	if r.existing() && m.Volumes != nil && len(m.Volumes.Snapshots) > 0 {
		if err := r.phase(PhaseRestoreVolumes, func() error { return r.restoreVolumes(ctx, m) }); err != nil {
			return err
		}
	}
	if r.existing() && m.Velero != nil {
		if err := r.phase(PhaseRestoreVelero, func() error { return r.restoreVelero(ctx, m) }); err != nil {
			return err
		}
	}
	if wantVault {
		if err := r.phase(PhaseRestoreVault, func() error {
			p, ok := plain[catalog.ArtifactVaultKV]
			if !ok {
				return fmt.Errorf("backup %s has no %s artifact to restore", m.Backup, catalog.ArtifactVaultKV)
			}
			return r.restoreVault(ctx, m, p)
		}); err != nil {
			return err
		}
	}
	if r.existing() && r.manifests != nil {
		if err := r.phase(PhaseAppReady, func() error { return r.appReady(ctx) }); err != nil {
			return err
		}
	}
	return r.verify(ctx, m)
}

// startCluster starts the scratch cluster: from the etcd snapshot when the
// backup has one, else empty when the export is to be restored into it,
// else none (a drill of Vault alone).
func (r *runner) startCluster(ctx context.Context, m catalog.Manifest, plain map[string]string, tmp string, wantManifests bool) error {
	if m.Etcd == nil && !wantManifests && !r.existing() {
		r.event(PhaseRestoreEtcd, "the backup holds no etcd snapshot: no scratch control plane is started")
		return nil
	}

	req := scratch.Request{
		SnapshotPath:   plain[catalog.ArtifactEtcdSnapshot],
		SnapshotSealed: r.snapshot != nil && r.snapshot.Sealed(),
		// The decrypted snapshot is released as soon as the scratch etcd
		// holds its copy, not after the control plane's start.
		SnapshotRestored:     r.dropSnapshot,
		EncryptionConfigPath: plain[catalog.ArtifactEncryptionConfig],
		EtcdPrefix:           r.opts.EtcdPrefix,
		WorkDir:              filepath.Join(tmp, "scratch"),
		Now:                  r.now,
		Progress:             func(p string) { r.event(p, "%s", p) },
	}
	if r.existing() {
		req.SnapshotPath, req.EncryptionConfigPath = "", ""
		r.event(PhaseRestoreEtcd, "scratch type kubeconfig: an existing cluster; its etcd is never restored into, the export is restored into namespaces of this run")
	} else if m.Etcd == nil {
		r.event(PhaseRestoreEtcd, "the backup holds no etcd snapshot: starting an empty scratch control plane for the export")
		r.clusterEmpty = true
	} else if req.EncryptionConfigPath == "" {
		r.event(PhaseRestoreEtcd, "the backup holds no encryption-at-rest configuration: Secrets are read as stored")
	}
	cluster, err := r.opts.Scratch.Start(ctx, req)
	var se *scratch.StartError
	switch {
	case err == nil:
		r.addScratchPhases(cluster.StartPhases())
	case errors.As(err, &se):
		r.addScratchPhases(se.Phases)
	}
	if err != nil {
		return err
	}
	r.cluster = cluster
	// The snapshot's plaintext is in the scratch etcd now; the
	// encryption config stays while the apiserver runs.
	r.dropSnapshot()
	r.event(PhaseStartControlPlane, "scratch control plane serving at %s", cluster.Access().Server)
	return nil
}

// verify runs the Drill's checks; the RTO ends when they pass.
func (r *runner) verify(ctx context.Context, m catalog.Manifest) error {
	d := r.opts.Drill
	var acc scratch.Access
	if r.cluster != nil {
		acc = r.cluster.Access()
	}
	var checks []evidence.Check
	verr := r.phase(PhaseVerify, func() error {
		v, err := newVerifier(ctx, acc, m, r.opts.EtcdPrefix, r.log)
		if err != nil {
			return err
		}
		defer v.close()
		v.canary = func(ctx context.Context) evidence.Check { return r.canaryCheck(ctx, m) }
		v.manifests = r.manifestsCheck
		v.vaultData = func(ctx context.Context) evidence.Check { return r.vaultDataCheck(ctx, m) }
		v.existing = r.existing()
		v.http = func(ctx context.Context, c *config.HTTPCheck) evidence.Check { return r.httpCheck(ctx, c) }
		v.job = func(ctx context.Context, c *config.JobCheck) evidence.Check { return r.jobCheck(ctx, c) }
		if r.existing() && r.volumes != nil {
			v.extra = append(v.extra, r.volumesCheck())
		}
		if r.veleroRestore != "" {
			v.extra = append(v.extra, r.veleroCheck())
		}
		checks = v.run(ctx, d.Spec.Checks, func(c evidence.Check) {
			r.event(PhaseVerify, "%s %s: %s", strings.ToUpper(c.Outcome), c.Name, c.Detail)
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		all := append(append([]evidence.Check{}, r.res.Checks...), checks...)
		if n := failed(all); n > 0 {
			return fmt.Errorf("%d of %d checks did not pass", n, len(all))
		}
		return nil
	})
	r.res.Checks = append(r.res.Checks, checks...)
	if verr != nil {
		if ctx.Err() != nil {
			return verr
		}
		// Failed checks are reported as checks, not as a drill error.
		return nil
	}
	r.rtoEnd = r.now()
	return nil
}

// Check names of the checks every drill makes besides the Drill's own.
const (
	CheckBackupComplete = "backup complete"
	CheckClockSkew      = "clock skew"
)

// completeCheck passes when the backup took every source of its plan and
// fails, listing the skipped sources, when it is partial.
func completeCheck(m catalog.Manifest) evidence.Check {
	if m.Status == catalog.StatusComplete && len(m.Skipped) == 0 {
		return evidence.Check{Name: CheckBackupComplete, Outcome: evidence.CheckPass,
			Detail: fmt.Sprintf("backup %s status %s: no source skipped", m.Backup, m.Status)}
	}
	return evidence.Check{Name: CheckBackupComplete, Outcome: evidence.CheckFail,
		Detail: fmt.Sprintf("backup %s status %s: skipped %s", m.Backup, m.Status, skippedList(m.Skipped))}
}

func skippedList(sk []catalog.Skip) string {
	if len(sk) == 0 {
		return "none listed"
	}
	var parts []string
	for _, s := range sk {
		parts = append(parts, s.Source+" ("+s.Reason+")")
	}
	return strings.Join(parts, ", ")
}

const tempPattern = "lifeboat-drill-"

// StaleTempAge is how old a lifeboat-drill-* directory in the temporary
// directory's parent must be for a new drill to remove it as left by a
// crashed run: it may hold decrypted backup data.
const StaleTempAge = time.Hour

// removeStaleTemp removes lifeboat-drill-* directories older than
// StaleTempAge from the directory the run's own is made in.
func (r *runner) removeStaleTemp() {
	parent := r.opts.TempDir
	if parent == "" {
		parent = os.TempDir()
	}
	ents, err := os.ReadDir(parent)
	if err != nil {
		r.log.Warn("look for stale drill temporary directories", "dir", parent, "err", err)
		return
	}
	cutoff := time.Now().Add(-StaleTempAge)
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tempPattern) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if err := os.RemoveAll(p); err != nil {
			r.log.Warn("remove stale drill temporary directory", "dir", p, "err", err)
			continue
		}
		r.log.Warn("removed stale drill temporary directory (left by an earlier run; it may have held decrypted data)", "dir", p, "modified", info.ModTime().UTC())
	}
}

// addScratchPhases records the provider's phases, timed from the drill's
// start.
func (r *runner) addScratchPhases(ps []scratch.Phase) {
	for _, p := range ps {
		ph := Phase{Name: p.Name, Offset: p.Started.Sub(r.start), Duration: p.Duration, Outcome: evidence.PhaseSuccess}
		if p.Err != nil {
			ph.Outcome, ph.Detail = evidence.PhaseFailure, p.Err.Error()
		}
		r.res.Phases = append(r.res.Phases, ph)
	}
}

func failed(checks []evidence.Check) int {
	n := 0
	for _, c := range checks {
		if c.Outcome != evidence.CheckPass {
			n++
		}
	}
	return n
}

// finish measures RTO, fills in phases not reached and judges.
func (r *runner) finish(err error) {
	if err == nil && !r.rtoEnd.IsZero() {
		r.res.Measured.RTOMs = msUp(r.rtoEnd.Sub(r.start))
	}
	end := r.now().Sub(r.start)
	ran := make(map[string]bool)
	for _, p := range r.res.Phases {
		ran[p.Name] = true
	}
	r.mem.Stop()
	for i := range r.res.Phases {
		p := &r.res.Phases[i]
		from := r.start.Add(p.Offset)
		p.PeakMemoryBytes = r.mem.Peak(from, from.Add(p.Duration))
	}
	for _, name := range PhaseOrder {
		if !ran[name] {
			r.res.Phases = append(r.res.Phases, Phase{Name: name, Offset: end, Outcome: evidence.PhaseSkipped})
		}
	}
	// Order by PhaseOrder; a provider's own phases keep their place.
	order := make(map[string]int, len(PhaseOrder))
	for i, n := range PhaseOrder {
		order[n] = i
	}
	for i, n := range sourcePhases {
		order[n] = order[PhaseStartControlPlane] + 1 + i
	}
	order[PhaseVerify] = order[PhaseStartControlPlane] + 1 + len(sourcePhases)
	sortPhases(r.res.Phases, order)
	r.res.Verdict, r.res.Reasons = evidence.Judge(r.res.Targets, r.res.Measured, r.res.Checks)
	if err != nil {
		r.res.Verdict = evidence.VerdictFail
		r.res.Reasons = append([]string{"the drill stopped: " + err.Error()}, r.res.Reasons...)
	}
}

func sortPhases(ps []Phase, order map[string]int) {
	rank := func(p Phase) int {
		if i, ok := order[p.Name]; ok {
			return i
		}
		return order[PhaseStartControlPlane]
	}
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && rank(ps[j]) < rank(ps[j-1]); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// teardown stops the scratch cluster and removes the temporary directory,
// or hands both to the caller when keep is set and the cluster is up.
func (r *runner) teardown(keep bool, err error) {
	if r.cluster != nil && r.existing() && (!keep || errors.Is(err, context.Canceled)) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		r.cleanup(ctx)
		cancel()
	}
	if mr := r.manifests; mr != nil && mr.second != nil {
		if err := mr.second.Stop(); err != nil {
			r.log.Warn("stop the export's scratch cluster", "err", err)
		}
	}
	if vr := r.vault; vr != nil {
		vr.art.Destroy()
		if vr.server != nil {
			if err := vr.server.Stop(); err != nil {
				r.log.Warn("stop scratch vault", "err", err)
			}
		}
	}
	if keep && r.cluster != nil && !errors.Is(err, context.Canceled) {
		r.res.Cluster = &keptCluster{Cluster: r.cluster, dir: r.tmp}
		r.event("", "scratch cluster kept: kubeconfig %s", r.cluster.Access().Kubeconfig)
		return
	}
	if r.cluster != nil {
		if err := r.cluster.Stop(); err != nil {
			r.log.Warn("stop scratch cluster", "err", err)
		}
	}
	r.dropSnapshot()
	if r.tmp != "" {
		if err := os.RemoveAll(r.tmp); err != nil {
			r.log.Warn("remove temporary directory", "dir", r.tmp, "err", err)
		}
	}
	if r.cluster != nil && !r.existing() {
		r.event("", "scratch cluster stopped and restored data removed")
	}
}

// keptCluster is a scratch cluster left running for the caller; Stop also
// removes the drill's temporary directory.
type keptCluster struct {
	scratch.Cluster
	dir string
}

// Exited is the underlying cluster's, when it has one: closed when its
// control plane exits.
func (k *keptCluster) Exited() <-chan struct{} {
	if e, ok := k.Cluster.(interface{ Exited() <-chan struct{} }); ok {
		return e.Exited()
	}
	return nil
}

func (k *keptCluster) Stop() error {
	err := k.Cluster.Stop()
	if rerr := os.RemoveAll(k.dir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// msUp returns d in whole milliseconds, rounded up, so that a measured RTO
// or RPO is never reported smaller than it was.
func msUp(d time.Duration) *int64 {
	n := int64((d + time.Millisecond - 1) / time.Millisecond)
	return &n
}

// byteSize formats n bytes for people.
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// worstGap measures the RPO the plan's schedule delivered over GapWindow
// before the incident, from the points in time of its complete backups
// (docs/format.md §5.6). A catalog that cannot be listed leaves it
// unmeasured, which the report shows; it does not fail the drill, whose
// verdict does not depend on it.
func (r *runner) worstGap(ctx context.Context, plan string) {
	var points []time.Time
	if r.opts.GapPoints != nil {
		var err error
		if points, err = r.opts.GapPoints(ctx, plan, r.res.Incident.Add(-GapWindow), r.res.Incident); err != nil {
			r.log.Warn("worst gap between backups not measured", "err", err)
			return
		}
	} else {
		ms, err := catalog.List(ctx, r.opts.Store, catalog.ListOptions{Plan: plan})
		if err != nil {
			r.log.Warn("worst gap between backups not measured", "err", err)
			return
		}
		for i := range ms {
			if ms[i].Status == catalog.StatusComplete {
				points = append(points, ms[i].PointInTime())
			}
		}
	}
	gap, ok := WorstGap(points, r.res.Incident, GapWindow)
	if !ok {
		return
	}
	r.res.Measured.WorstGapMs = msUp(gap)
	r.event(PhaseSelect, "worst gap between complete backups of plan %s in the %d days before the incident: %s (%d backups)",
		plan, int(GapWindow/(24*time.Hour)), gap.Round(time.Millisecond), len(points))
}

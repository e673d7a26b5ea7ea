package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/kube"
	"github.com/lifeboat-dr/lifeboat/internal/server"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// Lease timings, as kube-controller-manager's defaults: a leader that
// stops renewing is replaced within LeaseDuration; it gives up (and
// cancels its runs) when it cannot renew within RenewDeadline.
const (
	LeaseDuration = 15 * time.Second
	RenewDeadline = 10 * time.Second
	RetryPeriod   = 2 * time.Second
)

// Defaults of Options.
const (
	DefaultListen     = ":8080"
	DefaultGrace      = 5 * time.Minute
	DefaultLeaseName  = "lifeboat"
	DefaultConfigPoll = 10 * time.Second
	refreshEvery      = time.Minute
)

// Options configure Run.
type Options struct {
	// ConfigDir is the configuration directory (a mounted ConfigMap).
	// Required.
	ConfigDir string
	// Listen is the address of /metrics, /healthz, /readyz and the status
	// page; default ":8080".
	Listen string
	// Identity names this replica (the pod name). Required.
	Identity string
	// LeaderElect takes a Lease so that one replica runs the schedules.
	LeaderElect bool
	// LeaseNamespace and LeaseName name the Lease; the namespace defaults
	// to the pod's own (the service account's namespace file), the name
	// to "lifeboat".
	LeaseNamespace, LeaseName string
	// Kube says how to reach the API server for the Lease.
	Kube kube.Options
	// Grace is how long backups and rotations may run on after SIGTERM
	// (ctx ending) before they are cancelled; default 5m.
	Grace time.Duration
	// Signer signs every evidence record. Required.
	Signer *evidence.Signer
	// Version is recorded in backup manifests.
	Version string
	// Env supplies the environment and the binary's path for wiring; its
	// Set and Logger are set by Run.
	Env wire.Env
	// Logger receives the service's log; nil discards.
	Logger *slog.Logger
	// Reload, when it receives, reloads the configuration (SIGHUP).
	Reload <-chan struct{}
	// ConfigPoll is how often the directory is checked for changes;
	// default 10s (a ConfigMap update reaches the pod within a minute).
	ConfigPoll time.Duration
	// Runner runs the jobs; nil means JobRunner (package job).
	Runner Runner
	// Clock is the scheduler's time source; nil means the real clock.
	Clock clock.WithTicker
	// Listening, if set, is called with the bound address once serving.
	Listening func(net.Addr)
	// AuditListening, if set, is called with the audit webhook's bound
	// address once it listens (only with an AuditLog).
	AuditListening func(net.Addr)
}

// ErrConfig marks a configuration that does not load at start.
var ErrConfig = errors.New("configuration")

// Run is `lifeboat serve`: it loads the configuration, serves health,
// metrics and the status page, and runs the schedules while it leads
// (always, without leader election). When ctx ends (SIGTERM) it stops
// taking ticks, lets backups and rotations finish within Grace (drills are
// cancelled at once), releases the Lease, stops serving and returns nil.
func Run(ctx context.Context, o Options) error {
	if o.ConfigDir == "" || o.Identity == "" || o.Signer == nil {
		return errors.New("serve: a configuration directory, an identity and a signing key are required")
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.ConfigPoll <= 0 {
		o.ConfigPoll = DefaultConfigPoll
	}
	if o.LeaseName == "" {
		o.LeaseName = DefaultLeaseName
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clk := o.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	runner := o.Runner
	if runner == nil {
		runner = JobRunner{Signer: o.Signer, Version: o.Version}
	}

	set, digest, err := load(o.ConfigDir)
	if err != nil {
		return fmt.Errorf("serve: %w: %w", ErrConfig, err)
	}
	for _, w := range set.Warnings {
		log.Warn("configuration warning", "warning", w.String())
	}
	var election *leaseElection
	if o.LeaderElect {
		election, err = newLeaseElection(o)
		if err != nil {
			return fmt.Errorf("serve: leader election: %w", err)
		}
	}

	metrics := server.NewMetrics(clk.Now)
	var bk *book
	sched := NewScheduler(SchedulerOptions{
		Identity: o.Identity, Runner: runner, Signer: o.Signer, Clock: clk, Metrics: metrics,
		Logger: log, LeaderElection: o.LeaderElect, JitterSeed: jitterSeed(set),
		AfterRun: func(_ Target, res RunResult) { bk.ran(res) },
	})
	bk = newBook(sched, o.Identity, log, clk.Now)
	svc := &service{o: o, log: log, metrics: metrics, sched: sched, book: bk, digest: digest, auditLogs: set.AuditLogs}
	if err := svc.apply(set); err != nil {
		return fmt.Errorf("serve: %w: %w", ErrConfig, err)
	}

	auditCtx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAudit()
	auditDone, err := startAudit(auditCtx, o, set, metrics, log, bk.setAudit)
	if err != nil {
		return fmt.Errorf("serve: %w: %w", ErrConfig, err)
	}

	ln, err := server.Listen(ctx, o.Listen)
	if err != nil {
		stopAudit()
		return errors.Join(fmt.Errorf("serve: %w", err), auditDone())
	}
	h := server.New(server.Options{
		Metrics: metrics, Status: bk, Logger: log, Now: clk.Now,
		Ready: func(context.Context) error {
			if err := bk.ready(); err != nil {
				return err
			}
			if election != nil && !election.running.Load() {
				return errors.New("leader election is not running")
			}
			return nil
		},
	})
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- server.Serve(serveCtx, ln, h, log) }()
	log.Info("serving", "listen", ln.Addr().String(), "identity", o.Identity, "leaderElection", o.LeaderElect,
		"schedules", len(set.Schedules), "config", o.ConfigDir)
	if o.Listening != nil {
		o.Listening(ln.Addr())
	}

	// The book and the configuration are kept fresh until ctx ends.
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); svc.watch(ctx) }()

	// Lead gets a context that SIGTERM does not end (leCtx ends after the
	// drain): shutdown goes through stopping, so that a backup is drained,
	// not cancelled as if the Lease were lost.
	stopping := make(chan struct{})
	drained := make(chan struct{})
	leadDone := make(chan struct{})
	leCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	// While leading, failed replica copies are retried (docs/format.md §9);
	// shutting down or losing the Lease stops the copy in progress, which
	// the next leader resumes.
	rep := &replicator{env: svc.currentEnv, signer: o.Signer, metrics: metrics, clock: clk, log: log, catchUp: job.CatchUp}
	replicating := func(lctx context.Context) func() {
		rctx, cancel := context.WithCancel(lctx)
		done := make(chan struct{})
		go func() { defer close(done); rep.run(rctx, stopping) }()
		return func() { cancel(); <-done }
	}
	go func() {
		defer close(leadDone)
		if election == nil {
			bk.setLeader(true)
			defer replicating(leCtx)()
			sched.Lead(leCtx, stopping)
			return
		}
		election.run(leCtx, ctx, log, func(lctx context.Context) {
			bk.setLeader(true)
			defer bk.setLeader(false)
			defer replicating(lctx)()
			sched.Lead(lctx, stopping)
			// Shutting down: the runs drain under the Lease; if it is lost
			// meanwhile, they stop at once, as on any lost Lease.
			select {
			case <-drained:
			case <-lctx.Done():
				if ctx.Err() != nil {
					log.Warn("Lease lost while draining: cancelling the runs still going")
				}
				sched.CancelAll()
			}
		})
	}()

	<-ctx.Done()
	log.Info("shutting down: no new ticks; backups and rotations may finish", "grace", o.Grace)
	close(stopping)
	sched.Drain(o.Grace)
	close(drained)
	stopElection() // releases the Lease (ReleaseOnCancel)
	<-leadDone
	bg.Wait()
	stopAudit()
	if err := auditDone(); err != nil {
		log.Error("audit log did not stop cleanly", "err", err)
	}
	stopServing()
	if err := <-served; err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// service holds what Run keeps between reloads.
type service struct {
	o       Options
	log     *slog.Logger
	metrics *server.Metrics
	sched   *Scheduler
	book    *book

	mu     sync.Mutex
	env    *wire.Env
	digest string
	// auditLogs is the AuditLog configuration serve started with (an
	// AuditLog is not reloaded).
	auditLogs []*config.AuditLog

	refreshing atomic.Bool
	refreshes  sync.WaitGroup
}

// currentEnv returns the wiring of the configuration in force.
func (s *service) currentEnv() *wire.Env {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.env
}

// apply swaps in a loaded configuration.
func (s *service) apply(set *config.Set) error {
	env := s.o.Env
	env.Set, env.Logger = set, s.log
	if err := s.sched.SetConfig(&env); err != nil {
		return err
	}
	s.mu.Lock()
	s.env = &env
	s.mu.Unlock()
	s.book.configure(set, s.metrics)
	s.book.setConfigError("")
	s.metrics.ConfigLoaded(true)
	s.metrics.Retain(namesOf(set))
	return nil
}

// watch reloads the configuration on Reload or when the directory
// changes, and refreshes the book every minute, until ctx ends.
func (s *service) watch(ctx context.Context) {
	defer s.refreshes.Wait()
	s.refresh(ctx)
	poll := time.NewTicker(s.o.ConfigPoll)
	defer poll.Stop()
	refresh := time.NewTicker(refreshEvery)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.o.Reload:
			s.log.Info("reload requested (SIGHUP)")
			s.reload(ctx, true)
		case <-poll.C:
			s.reload(ctx, false)
		case <-refresh.C:
			s.refresh(ctx)
		}
	}
}

// refresh re-reads the stores and key providers for the status page and
// metrics on a goroutine of its own (a slow store must not hold up a
// reload); one at a time, a refresh asked for during another is dropped.
func (s *service) refresh(ctx context.Context) {
	if !s.refreshing.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	env := s.env
	s.mu.Unlock()
	s.refreshes.Add(1)
	go func() {
		defer s.refreshes.Done()
		defer s.refreshing.Store(false)
		rctx, cancel := context.WithTimeout(ctx, refreshEvery)
		defer cancel()
		s.book.refresh(rctx, env, s.metrics, s.o.Signer)
	}()
}

// reload loads the directory again if it changed (or always, when forced).
// An invalid configuration is refused with its file:line:col errors; the
// old one keeps running.
func (s *service) reload(ctx context.Context, force bool) {
	digest, err := dirDigest(s.o.ConfigDir)
	s.mu.Lock()
	same := err == nil && digest == s.digest
	s.mu.Unlock()
	if same && !force {
		return
	}
	set, digest, err := load(s.o.ConfigDir)
	if err == nil {
		err = s.apply(set)
	}
	s.mu.Lock()
	s.digest = digest
	s.mu.Unlock()
	if err != nil {
		s.log.Error("configuration refused; the previous one keeps running", "config", s.o.ConfigDir, "err", err)
		s.metrics.ConfigLoaded(false)
		s.book.setConfigError(publicConfigError(err))
		return
	}
	for _, w := range set.Warnings {
		s.log.Warn("configuration warning", "warning", w.String())
	}
	if !sameAuditLogs(s.auditLogs, set.AuditLogs) {
		s.log.Warn("the AuditLog changed: the audit log keeps its configuration from the start; restart serve to apply the change", "config", s.o.ConfigDir)
	}
	s.log.Info("configuration reloaded", "config", s.o.ConfigDir, "schedules", len(set.Schedules))
	s.refresh(ctx)
}

// publicConfigError is what the status page may show of a configuration
// error: where each problem is, not what it says (a message may quote a
// value, and a value pasted into the wrong field may be a secret). The
// log has the whole text.
func publicConfigError(err error) string {
	var list config.ErrorList
	if !errors.As(err, &list) {
		return "the configuration does not load (see the service log)"
	}
	lines := make([]string, 0, len(list))
	for _, e := range list {
		lines = append(lines, fmt.Sprintf("%s:%d:%d: %s: refused (see the service log)", e.File, e.Line, e.Column, e.Field))
	}
	return strings.Join(lines, "\n")
}

// load reads the configuration directory and its digest.
func load(dir string) (*config.Set, string, error) {
	digest, err := dirDigest(dir)
	if err != nil {
		return nil, "", err
	}
	set, err := config.LoadPaths(dir)
	if err != nil {
		return nil, digest, err
	}
	return set, digest, nil
}

// dirDigest is the SHA-256 over the names and contents of the files
// config.LoadPaths reads in dir, so that a ConfigMap update (an atomic
// swap of its ..data symlink) is noticed.
func dirDigest(dir string) (string, error) {
	h := sha256.New()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read configuration directory %s: %w", dir, err)
	}
	slices.Sort(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", f, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func namesOf(set *config.Set) server.Names {
	var n server.Names
	for _, o := range set.Schedules {
		n.Schedules = append(n.Schedules, o.Metadata.Name)
	}
	for _, o := range set.BackupPlans {
		n.Plans = append(n.Plans, o.Metadata.Name)
	}
	for _, o := range set.Drills {
		n.Drills = append(n.Drills, o.Metadata.Name)
	}
	for _, o := range set.KeyProviders {
		n.KeyProviders = append(n.KeyProviders, o.Metadata.Name)
	}
	for _, o := range set.Stores {
		n.Stores = append(n.Stores, o.Metadata.Name)
	}
	return n
}

// jitterSeed sets one cluster's jitter apart from another's: the names of
// its stores, which differ between clusters sharing a configuration
// template only by their buckets and prefixes.
func jitterSeed(set *config.Set) string {
	var parts []string
	for _, cs := range set.Stores {
		parts = append(parts, cs.Spec.Bucket+"/"+cs.Spec.Prefix+"/"+cs.Spec.Path)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// leaseElection runs client-go's leader election on a Lease.
type leaseElection struct {
	lock *resourcelock.LeaseLock
	// running is true while run takes part in elections.
	running atomic.Bool
}

// serviceAccountNamespace is where a pod finds its own namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func newLeaseElection(o Options) (*leaseElection, error) {
	ns := o.LeaseNamespace
	if ns == "" {
		data, err := os.ReadFile(serviceAccountNamespace)
		if err != nil {
			return nil, fmt.Errorf("no --lease-namespace and not in a pod (%w)", err)
		}
		ns = strings.TrimSpace(string(data))
	}
	cfg, err := kube.Config(o.Kube)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &leaseElection{lock: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: o.LeaseName},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}}, nil
}

// run takes part in elections until stop ends; lead is called each time
// this replica becomes leader, with a context that ends when it stops
// leading. Once ctx ends (shutdown) it stands for no new election.
func (l *leaseElection) run(stop, ctx context.Context, log *slog.Logger, lead func(context.Context)) {
	l.running.Store(true)
	defer l.running.Store(false)
	for stop.Err() == nil && ctx.Err() == nil {
		// client-go starts OnStartedLeading in a goroutine of its own; a
		// term counts only if it registers before Run has returned, and
		// Run's caller waits for every registered term to end.
		var (
			mu     sync.Mutex
			ended  bool
			active sync.WaitGroup
		)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: l.lock, LeaseDuration: LeaseDuration, RenewDeadline: RenewDeadline, RetryPeriod: RetryPeriod,
			ReleaseOnCancel: true, Name: l.lock.LeaseMeta.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					mu.Lock()
					if ended {
						mu.Unlock()
						return
					}
					active.Add(1)
					mu.Unlock()
					defer active.Done()
					lead(lctx)
				},
				OnStoppedLeading: func() {},
				OnNewLeader: func(identity string) {
					log.Info("leader elected", "lease", l.lock.LeaseMeta.Namespace+"/"+l.lock.LeaseMeta.Name, "leader", identity)
				},
			},
		})
		if err != nil {
			log.Error("leader election misconfigured", "err", err)
			return
		}
		runCtx, cancel := context.WithCancel(stop)
		go func() {
			// Stand for no new term once shutdown begins: a replica that
			// is only waiting to acquire stops waiting; a leader keeps the
			// Lease until its runs are drained (stop).
			select {
			case <-ctx.Done():
				if !le.IsLeader() {
					cancel()
				}
			case <-runCtx.Done():
			}
		}()
		le.Run(runCtx)
		cancel()
		mu.Lock()
		ended = true
		mu.Unlock()
		active.Wait()
	}
}

// sameAuditLogs reports whether two configurations' AuditLogs are the same.
func sameAuditLogs(a, b []*config.AuditLog) bool {
	return slices.EqualFunc(a, b, func(x, y *config.AuditLog) bool {
		return x.Metadata.Name == y.Metadata.Name && reflect.DeepEqual(x.Spec, y.Spec)
	})
}

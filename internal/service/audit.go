package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/server"
)

// auditRetry bounds the backoff of an AuditLog that cannot start or whose
// intake fails.
const auditRetryMax = 5 * time.Minute

// startAudit runs the configuration's AuditLog, if any (docs/format.md
// §8), until ctx ends: the webhook listener or the file reader, and the
// sealing loop. The returned wait then lets sealing finish within grace
// and reports how it ended.
//
// Only a name that cannot be a stream fails serve's start. An AuditLog
// that cannot open (its store or key providers do not answer, its WAL is
// damaged, its stream's head does not verify) is retried with backoff
// while the schedules run: a bucket that someone planted an object in must
// not stop the backups. Meanwhile nothing is received, the log says why,
// and lifeboat_audit_receiving is 0 (LifeboatAuditSilent fires).
func startAudit(ctx context.Context, o Options, set *config.Set, metrics *server.Metrics, log *slog.Logger, status func(func() *server.AuditStatus)) (func() error, error) {
	if len(set.AuditLogs) == 0 {
		return func() error { return nil }, nil
	}
	a := set.AuditLogs[0]
	if err := audit.CheckNames(a.Metadata.Name, o.Identity); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	am := audit.NewMetrics(metrics.Registry(), a.Metadata.Name)
	st := &auditState{base: server.AuditStatus{Log: a.Metadata.Name, Stream: o.Identity, Mode: "webhook"}}
	if a.Spec.File != nil {
		st.base.Mode = "file"
	}
	status(st.status)
	done := make(chan error, 1)
	go func() { done <- runAudit(ctx, o, set, a, am, st, log) }()
	return func() error { return <-done }, nil
}

// auditState is what the status page shows of the audit log.
type auditState struct {
	base server.AuditStatus

	mu        sync.Mutex
	r         *audit.Receiver
	receiving bool
	problem   string
}

func (s *auditState) set(r *audit.Receiver, receiving bool, problem string) {
	s.mu.Lock()
	s.r, s.receiving, s.problem = r, receiving, problem
	s.mu.Unlock()
}

func (s *auditState) status() *server.AuditStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.base
	st.Receiving, st.Error = s.receiving, s.problem
	if s.r != nil {
		w := s.r.WALStats()
		st.WALEvents, st.OldestUnsealed = w.Events, w.Oldest
		if h := s.r.HeadRecord(); h != nil {
			st.HeadSeq, st.LastSealed, st.LastEvent = h.Record.Seq, h.Record.SealedAt, h.Record.LastEvent
		}
	}
	return &st
}

func runAudit(ctx context.Context, o Options, set *config.Set, a *config.AuditLog, am *audit.Metrics, st *auditState, log *slog.Logger) error {
	env := o.Env
	env.Set, env.Logger = set, log
	var r *audit.Receiver
	for backoff := 5 * time.Second; ; backoff = min(2*backoff, auditRetryMax) {
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		var err error
		r, err = job.OpenAuditReceiver(octx, &env, a, job.AuditReceiverOptions{Stream: o.Identity, Signer: o.Signer, Metrics: am, Logger: log})
		cancel()
		if err == nil {
			break
		}
		log.Error("audit log cannot start; retrying (the API server's audit events are not received meanwhile)", "auditLog", a.Metadata.Name, "retryIn", backoff, "err", err)
		// The page says that, not the error's text (see the log).
		st.set(nil, false, "cannot start: see the service log")
		select {
		case <-ctx.Done():
			return fmt.Errorf("audit log %s did not start: %w", a.Metadata.Name, err)
		case <-time.After(backoff):
		}
	}

	// Sealing stops only after the intake (listener or file reader) has
	// stopped and its requests have finished, so that nothing is
	// acknowledged after the last seal; it then drains within the grace
	// period.
	intake := make(chan struct{})
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	drain, stopDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDrain()
	go func() {
		<-intake
		stopRun()
		select {
		case <-time.After(o.Grace):
			stopDrain()
		case <-drain.Done():
		}
	}()
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() { defer wg.Done(); runErr = r.Run(runCtx, drain) }()

	intakeOnce := func() error {
		if f := a.Spec.File; f != nil {
			log.Info("audit log: following the API server's log file", "path", f.Path)
			return r.Tail(ctx, f.Path)
		}
		w := a.Spec.Webhook
		files := audit.TLSFiles{CertFile: w.CertFile, KeyFile: w.KeyFile, ClientCAFile: w.ClientCAFile, ClientNames: w.ClientNames}
		return audit.ServeTLS(ctx, w.Listen, files, r, log, func(addr net.Addr) {
			if o.AuditListening != nil {
				o.AuditListening(addr)
			}
		})
	}
	// A failed intake (a certificate that does not load, a port in use, a
	// WAL that cannot be written, a file that cannot be read) is retried,
	// the file from its checkpoint.
	for backoff := time.Second; ; backoff = min(2*backoff, auditRetryMax) {
		am.SetReceiving(true)
		st.set(r, true, "")
		began := time.Now()
		err := intakeOnce()
		am.SetReceiving(false)
		if time.Since(began) > auditRetryMax {
			// It ran a good while: a new failure starts the backoff over.
			backoff = time.Second
		}
		st.set(r, false, "intake stopped: see the service log")
		if ctx.Err() != nil {
			break
		}
		log.Error("audit log intake stopped; retrying", "auditLog", a.Metadata.Name, "retryIn", backoff, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(intake)
	wg.Wait()
	return errors.Join(runErr)
}

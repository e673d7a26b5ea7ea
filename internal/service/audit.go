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

// startAudit runs the configuration's AuditLog, if any (docs/format.md
// §8): the webhook listener and the sealing loop, until ctx ends. The
// returned wait then lets sealing finish within grace and reports how it
// ended. An AuditLog that cannot start (its store or key providers cannot
// be opened, its WAL is damaged, its stream's head does not verify) fails
// serve's start: events the API server sends would otherwise be lost
// without anyone being told.
func startAudit(ctx context.Context, o Options, set *config.Set, metrics *server.Metrics, log *slog.Logger) (func() error, error) {
	if len(set.AuditLogs) == 0 {
		return func() error { return nil }, nil
	}
	a := set.AuditLogs[0]
	env := o.Env
	env.Set, env.Logger = set, log
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r, err := job.OpenAuditReceiver(octx, &env, a, job.AuditReceiverOptions{
		Stream: o.Identity, Signer: o.Signer, Registerer: metrics.Registry(), Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", a.Metadata.Name, err)
	}
	var wg sync.WaitGroup
	var serveErr, runErr error
	wg.Add(2)
	if f := a.Spec.File; f != nil {
		go func() {
			defer wg.Done()
			log.Info("audit log: following the API server's log file", "path", f.Path)
			// A failure (the WAL cannot be written, the file cannot be
			// read) is retried from the checkpoint, with backoff.
			for backoff := time.Second; ; backoff = min(2*backoff, 5*time.Minute) {
				err := r.Tail(ctx, f.Path)
				if ctx.Err() != nil {
					return
				}
				log.Error("audit log: following the file failed; retrying from the checkpoint", "path", f.Path, "retryIn", backoff, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
			}
		}()
	} else {
		w := a.Spec.Webhook
		files := audit.TLSFiles{CertFile: w.CertFile, KeyFile: w.KeyFile, ClientCAFile: w.ClientCAFile, ClientNames: w.ClientNames}
		listening := make(chan error, 1)
		go func() {
			defer wg.Done()
			serveErr = audit.ServeTLS(ctx, w.Listen, files, r, log, func(addr net.Addr) {
				if o.AuditListening != nil {
					o.AuditListening(addr)
				}
				listening <- nil
			})
			select {
			case listening <- serveErr:
			default:
			}
		}()
		if err := <-listening; err != nil {
			wg.Done()
			return nil, err
		}
	}
	// Sealing drains within the grace period after ctx ends.
	drain, stopDrain := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer wg.Done()
		defer stopDrain()
		go func() {
			<-ctx.Done()
			select {
			case <-time.After(o.Grace):
				stopDrain()
			case <-drain.Done():
			}
		}()
		runErr = r.Run(ctx, drain)
	}()
	return func() error {
		wg.Wait()
		return errors.Join(serveErr, runErr)
	}, nil
}

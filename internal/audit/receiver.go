package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// Defaults of Options.
const (
	DefaultMaxBytes = 64 << 20
	DefaultMaxAge   = 5 * time.Minute
	// MaxBatchBytes bounds one request's body.
	MaxBatchBytes = 256 << 20
	maxBackoff    = 5 * time.Minute
)

// Options configure a Receiver.
type Options struct {
	// Log is the AuditLog's name, Stream this replica's identity.
	Log, Stream string
	// WALDir is the write-ahead log's directory, on the replica's volume.
	WALDir string
	Store  Store
	// Wrappers wrap each segment's data key (the AuditLog's key providers).
	Wrappers []envelope.Wrapper
	// Signer signs segment records; Trusted are older keys whose records
	// the stream may hold (the signer's own key is always trusted).
	Signer  *evidence.Signer
	Trusted []evidence.PublicKey
	// Retention locks every object; required.
	Retention time.Duration
	// MaxBytes and MaxAge close a WAL file for sealing; defaults
	// DefaultMaxBytes and DefaultMaxAge.
	MaxBytes int64
	MaxAge   time.Duration
	Metrics  *Metrics
	Logger   *slog.Logger
	Now      func() time.Time
}

// Receiver is the webhook backend's receiving end for one stream: an
// http.Handler that acknowledges a batch once it is in the WAL, and a
// sealing loop (Run).
type Receiver struct {
	o      Options
	log    *slog.Logger
	wal    *WAL
	sealer *Sealer
	m      *Metrics

	stopping atomic.Bool
	kick     chan struct{}

	mu   sync.Mutex // guards head
	head *Head
}

// Open reads the stream's head from the store (checking its signature),
// opens the WAL and removes what the head already covers. It fails when
// the WAL's acknowledged part is damaged (ErrWALDamaged) or the head does
// not verify (ErrTampered).
func Open(ctx context.Context, o Options) (*Receiver, Recovery, error) {
	if err := CheckNames(o.Log, o.Stream); err != nil {
		return nil, Recovery{}, err
	}
	if o.Store == nil || o.Signer == nil || len(o.Wrappers) == 0 || o.WALDir == "" || o.Retention <= 0 {
		return nil, Recovery{}, errors.New("audit: a store, a signer, at least one key provider, a WAL directory and a retention are required")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("auditLog", o.Log, "stream", o.Stream)
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	trusted := append([]evidence.PublicKey{o.Signer.PublicKey()}, o.Trusted...)
	head, err := ReadHead(ctx, o.Store, o.Log, o.Stream, trusted)
	if err != nil {
		return nil, Recovery{}, fmt.Errorf("audit log %s: read the head of stream %s: %w", o.Log, o.Stream, err)
	}
	var headRec *evidence.AuditSegment
	if head != nil {
		headRec = &head.Record
	}
	wal, rec, err := OpenWAL(o.WALDir, headRec, log)
	if err != nil {
		return nil, rec, fmt.Errorf("audit log %s: %w", o.Log, err)
	}
	r := &Receiver{
		o: o, log: log, wal: wal, m: o.Metrics, head: head, kick: make(chan struct{}, 1),
		sealer: &Sealer{Log: o.Log, Stream: o.Stream, WALID: wal.ID(), Store: o.Store, Wrappers: o.Wrappers, Signer: o.Signer, Retention: o.Retention, Now: o.Now, Logger: log},
	}
	log.Info("audit log opened", "headSeq", headSeq(head), "waitingFiles", rec.Files, "waitingEvents", rec.Events,
		"removedSealed", rec.Removed, "tornBytes", rec.TornBytes)
	r.observe()
	return r, rec, nil
}

func headSeq(h *Head) int64 {
	if h == nil {
		return 0
	}
	return h.Record.Seq
}

// ServeHTTP takes one POST of an audit.k8s.io/v1 EventList: 200 once every
// event is durable in the WAL; 400 for a body that is not an EventList; 503
// while stopping or when the WAL cannot be written (the API server retries).
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST an audit.k8s.io/v1 EventList", http.StatusMethodNotAllowed)
		return
	}
	if r.stopping.Load() {
		http.Error(w, "stopping", http.StatusServiceUnavailable)
		return
	}
	received := r.o.Now()
	events, err := parseEventList(http.MaxBytesReader(w, req.Body, MaxBatchBytes), received)
	if err != nil {
		r.m.refused.Inc()
		r.log.Warn("audit batch refused", "remote", req.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.m.received.Add(float64(len(events)))
	if err := r.wal.Append(events, received); err != nil {
		r.m.walFailures.Inc()
		r.log.Error("audit batch not acknowledged: the WAL append failed", "events", len(events), "err", err)
		http.Error(w, "the write-ahead log cannot be written", http.StatusServiceUnavailable)
		return
	}
	r.m.acknowledged.Add(float64(len(events)))
	r.observe()
	w.WriteHeader(http.StatusOK)
}

// observe updates the gauges from the WAL.
func (r *Receiver) observe() {
	st := r.wal.Stats()
	r.m.walBytes.Set(float64(st.Bytes))
	r.m.walEvents.Set(float64(st.Events))
	if st.Oldest.IsZero() {
		r.m.oldestAge.Set(0)
	} else {
		r.m.oldestAge.Set(max(0, r.o.Now().Sub(st.Oldest).Seconds()))
	}
}

// Run seals closed WAL files until ctx ends, retrying failures with
// backoff. It then stops acknowledging (cancel ctx only once the listener
// has stopped and its requests have finished), closes the WAL and seals
// what waits until drain ends (a context the caller cancels after its
// grace period); what is not sealed stays in the WAL for the next start,
// and the error says how many events.
func (r *Receiver) Run(ctx, drain context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	backoff := time.Duration(0)
	var retryAt time.Time
	for {
		select {
		case <-ctx.Done():
			return r.stop(drain)
		case <-tick.C:
		case <-r.kick:
		}
		now := r.o.Now()
		if _, err := r.wal.Rotate(now, r.o.MaxBytes, r.o.MaxAge, false); err != nil {
			r.log.Error("audit WAL rotation failed", "err", err)
		}
		r.observe()
		if now.Before(retryAt) {
			continue
		}
		if err := r.sealAll(ctx); err != nil {
			if ctx.Err() != nil {
				continue
			}
			r.m.segmentFailures.Inc()
			backoff = min(max(2*backoff, time.Second), maxBackoff)
			retryAt = now.Add(backoff)
			r.log.Error("audit segment not sealed; the events stay in the WAL", "retryIn", backoff, "err", err)
			continue
		}
		backoff, retryAt = 0, time.Time{}
	}
}

// Seal closes the open WAL file and seals everything waiting, now.
func (r *Receiver) Seal(ctx context.Context) error {
	if _, err := r.wal.Rotate(r.o.Now(), 0, 0, true); err != nil {
		return err
	}
	return r.sealAll(ctx)
}

func (r *Receiver) stop(drain context.Context) error {
	r.stopping.Store(true)
	// Close first: from here on an append fails (503) instead of landing
	// in a file nobody seals; then seal everything that was acknowledged.
	err := r.wal.Close()
	if serr := r.sealAll(drain); err == nil {
		err = serr
	}
	r.observe()
	if left := r.wal.Stats(); left.Events > 0 {
		err = errors.Join(err, fmt.Errorf("%d acknowledged events are left in the WAL %s for the next start", left.Events, r.o.WALDir))
	}
	if err != nil {
		return fmt.Errorf("audit log %s: seal on shutdown: %w", r.o.Log, err)
	}
	r.log.Info("audit log stopped; every acknowledged event is sealed")
	return nil
}

// sealAll seals every closed WAL file, oldest first.
func (r *Receiver) sealAll(ctx context.Context) error {
	for _, f := range r.wal.closedFiles() {
		r.mu.Lock()
		head := r.head
		r.mu.Unlock()
		if head != nil && f.last <= uint64(head.Record.WALLast) {
			// Sealed already; only its removal failed before.
			if err := r.wal.remove(f); err != nil {
				return err
			}
			continue
		}
		start := time.Now()
		h, err := r.sealer.seal(ctx, f, head)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.head = &h
		r.mu.Unlock()
		r.m.sealed.Add(float64(h.Record.Events))
		r.m.segments.Inc()
		r.m.lastSealed.Set(float64(h.Record.SealedAt.Unix()))
		r.log.Info("audit segment sealed", "seq", h.Record.Seq, "events", h.Record.Events, "bytes", h.Record.CiphertextSize,
			"firstEvent", h.Record.FirstEvent, "lastEvent", h.Record.LastEvent, "took", time.Since(start).Round(time.Millisecond))
		if err := r.wal.remove(f); err != nil {
			return err
		}
		r.observe()
	}
	return nil
}

// HeadRecord returns the stream's newest committed record (nil for none).
func (r *Receiver) HeadRecord() *Head {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.head == nil {
		return nil
	}
	h := *r.head
	return &h
}

// WALStats returns what waits in the WAL.
func (r *Receiver) WALStats() Stats { return r.wal.Stats() }

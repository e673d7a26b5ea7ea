package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures the handler New returns.
type Options struct {
	// Metrics is served at /metrics; nil serves 404 there.
	Metrics *Metrics
	// Status feeds / and /api/status; nil shows an empty status.
	Status StatusSource
	// Ready says whether the service is ready (configuration loaded,
	// stores probed); nil means always ready. Its error text is served on
	// /readyz, so it must hold no secret.
	Ready func(ctx context.Context) error
	// Logger receives errors the handlers cannot send to the client; nil
	// discards them.
	Logger *slog.Logger
	// Now is the clock the page's relative times and ages are computed
	// with when Status leaves GeneratedAt zero; nil means time.Now.
	Now func() time.Time
}

// New returns the handler of `lifeboat serve`:
//
//	/healthz     200 "ok" while the process serves
//	/readyz      200 "ok", or 503 and the reason Ready gives
//	/metrics     Prometheus text exposition of Options.Metrics
//	/            the status page (HTML, no script, no external resource)
//	/api/status  the same Status as JSON
//
// Only GET and HEAD are served (anything else is 405); every response
// carries a strict Content-Security-Policy, nosniff, no-store and DENY
// framing.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &handler{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", h.ready)
	if o.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Metrics.Registry(), promhttp.HandlerOpts{
			ErrorLog:      slogPrinter{o.Logger},
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	mux.HandleFunc("GET /{$}", h.page)
	mux.HandleFunc("GET /api/status", h.api)
	return secure(onlyRead(mux))
}

type handler struct{ o Options }

func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	if h.o.Ready != nil {
		if err := h.o.Ready(r.Context()); err != nil {
			text(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
	}
	text(w, http.StatusOK, "ok\n")
}

func (h *handler) status(ctx context.Context) Status {
	var s Status
	if h.o.Status != nil {
		s = h.o.Status.Status(ctx)
	}
	s.derive(h.o.Now())
	return s
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	body, err := renderPage(h.status(r.Context()))
	if err != nil {
		h.o.Logger.ErrorContext(r.Context(), "status page", "err", err)
		text(w, http.StatusInternalServerError, "status page unavailable\n")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(body)
}

func (h *handler) api(w http.ResponseWriter, r *http.Request) {
	body, err := json.MarshalIndent(h.status(r.Context()), "", "  ")
	if err != nil {
		h.o.Logger.ErrorContext(r.Context(), "status api", "err", err)
		text(w, http.StatusInternalServerError, "status unavailable\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}

func text(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(s))
}

// onlyRead answers 405 to every method but GET and HEAD, on every path,
// so that no write endpoint can appear by accident.
func onlyRead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			text(w, http.StatusMethodNotAllowed, "method not allowed: the status server is read-only\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// slogPrinter lets promhttp log its errors through slog.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Error("metrics: " + fmt.Sprint(v...)) }

// Listen opens the TCP listener Serve serves on. addr may use port 0; the
// listener's Addr tells the port the system picked.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves h on ln until ctx ends, then shuts down gracefully: it
// stops accepting, lets requests in flight finish for up to ten seconds,
// and returns nil. It returns the error that stopped it otherwise. Serve
// closes ln.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// Requests in flight may finish after ctx ends (Shutdown waits).
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	logger.InfoContext(ctx, "serving", "addr", ln.Addr().String())
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	<-errc
	if err != nil {
		return fmt.Errorf("shut down server on %s: %w", ln.Addr(), err)
	}
	logger.InfoContext(ctx, "server stopped", "addr", ln.Addr().String())
	return nil
}

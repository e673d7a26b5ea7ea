package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// TLSFiles are the webhook listener's certificate, key and client CA
// bundle (PEM files, read again when they change), and the client names
// it accepts.
type TLSFiles struct {
	CertFile, KeyFile, ClientCAFile string
	// ClientNames are the accepted client certificates' subject common
	// names or DNS names.
	ClientNames []string
}

// tlsLoader builds the server's TLS configuration from the files, again
// whenever one of them changes (cert-manager renews them in place).
type tlsLoader struct {
	files TLSFiles
	log   *slog.Logger

	mu     sync.Mutex
	stamp  string
	config *tls.Config
}

func (l *tlsLoader) stampOf() string {
	s := ""
	for _, f := range []string{l.files.CertFile, l.files.KeyFile, l.files.ClientCAFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return ""
		}
		s += fmt.Sprintf("%d.%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return s
}

func (l *tlsLoader) get() (*tls.Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	stamp := l.stampOf()
	if l.config != nil && stamp == l.stamp {
		return l.config, nil
	}
	cert, err := tls.LoadX509KeyPair(l.files.CertFile, l.files.KeyFile)
	if err != nil {
		if l.config != nil {
			l.log.Error("audit webhook: the new certificate does not load; keeping the old one", "certFile", l.files.CertFile, "err", err)
			return l.config, nil
		}
		return nil, fmt.Errorf("audit webhook: load certificate %s and key %s: %w", l.files.CertFile, l.files.KeyFile, err)
	}
	caPEM, err := os.ReadFile(l.files.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("audit webhook: read client CA %s: %w", l.files.ClientCAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("audit webhook: client CA %s holds no PEM certificate", l.files.ClientCAFile)
	}
	names := slices.Clone(l.files.ClientNames)
	l.config = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			leaf := cs.PeerCertificates[0]
			// Go accepts a leaf without extended key usages for client
			// authentication; lifeboat asks for clientAuth explicitly.
			if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
				return fmt.Errorf("client certificate %.64q is not for client authentication (no clientAuth extended key usage)", leaf.Subject.CommonName)
			}
			if slices.Contains(names, leaf.Subject.CommonName) || slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return slices.Contains(names, n) }) {
				return nil
			}
			return fmt.Errorf("client certificate %.64q is not one of spec.webhook.clientNames", leaf.Subject.CommonName)
		},
	}
	l.stamp = stamp
	return l.config, nil
}

// ServeTLS serves h on addr with TLS, accepting only the client
// certificates TLSFiles allow, until ctx ends; then it stops taking
// connections and waits (up to 30s) for requests in flight.
func ServeTLS(ctx context.Context, addr string, files TLSFiles, h http.Handler, log *slog.Logger, listening func(net.Addr)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loader := &tlsLoader{files: files, log: log}
	if _, err := loader.get(); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("audit webhook: listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		TLSConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return loader.get() },
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("audit webhook listening", "listen", ln.Addr().String(), "clientNames", files.ClientNames)
	if listening != nil {
		listening(ln.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-served:
		return fmt.Errorf("audit webhook: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("audit webhook: shut down: %w", err)
	}
	return nil
}

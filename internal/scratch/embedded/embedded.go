package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/lifeboat-dr/lifeboat/internal/scratch"
)

// Defaults of Options.
const (
	// DefaultEtcdPrefix is kube-apiserver's default --etcd-prefix.
	DefaultEtcdPrefix = "/registry"
	// DefaultServiceClusterIPRange is used when the restored data names no
	// service CIDR (kubeadm's default).
	DefaultServiceClusterIPRange = "10.96.0.0/12"
	// DefaultReadyTimeout bounds waiting for the apiserver to be ready.
	DefaultReadyTimeout = 3 * time.Minute
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
)

// Options configure Start.
type Options struct {
	// SnapshotPath is the plaintext etcd snapshot to restore. Empty starts
	// an empty cluster instead (a source cluster, as lifeboat demo uses).
	SnapshotPath string
	// SnapshotSealed and SnapshotRestored: see scratch.Request.
	SnapshotSealed   bool
	SnapshotRestored func()
	// EncryptionConfigPath is the EncryptionConfiguration the apiserver
	// reads Secrets with (--encryption-provider-config); empty: none.
	EncryptionConfigPath string
	// EtcdPrefix is the apiserver's --etcd-prefix; empty means "/registry".
	EtcdPrefix string
	// WorkDir holds everything the cluster writes: the etcd data, the
	// apiserver's certificates, keys and token, the kubeconfig and the
	// logs. It must be absent or empty; Stop removes it. Required.
	WorkDir string
	// KubeAPIServerBinary is the kube-apiserver to run; empty means the one
	// beside the running executable (see LocateKubeAPIServer).
	KubeAPIServerBinary string
	// ServiceClusterIPRange is the apiserver's --service-cluster-ip-range.
	// Empty means the CIDRs of the restored "kubernetes" ServiceCIDR
	// object, so restored Services keep their addresses, or
	// DefaultServiceClusterIPRange when there is none.
	ServiceClusterIPRange string
	// ReadyTimeout bounds waiting for GET /readyz; zero means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Logger receives log lines; nil discards them.
	Logger *slog.Logger
	// Progress, when set, is called as each phase begins.
	Progress func(phase string)
	// Now is the clock phases are timed with; nil means time.Now.
	Now func() time.Time
}

// Cluster is a running scratch cluster: an etcd server in this process and
// a kube-apiserver process on it, both on 127.0.0.1.
type Cluster struct {
	// Server is the API server's URL, https://127.0.0.1:PORT.
	Server string
	// Token is the static bearer token of user admin (group
	// system:masters). It is a credential: never log it.
	Token string
	// CA is the PEM file content Server's certificate verifies against.
	CA []byte
	// CAFile is the path of that PEM file.
	CAFile string
	// Kubeconfig is the path of a kubeconfig file (mode 0600) for kubectl.
	Kubeconfig string
	// Client is an HTTP client for Server that trusts CA and sends Token.
	Client *http.Client
	// EtcdEndpoint is the etcd client URL, https://127.0.0.1:PORT. etcd
	// requires a client certificate: use EtcdTLS, or EtcdCAFile,
	// EtcdCertFile and EtcdKeyFile.
	EtcdEndpoint string
	// EtcdTLS is the TLS client configuration for EtcdEndpoint: it trusts
	// only the cluster's throwaway etcd CA and presents a client
	// certificate. The key is a credential to the restored data.
	EtcdTLS *tls.Config
	// EtcdCAFile is the PEM file of the throwaway CA that signed etcd's
	// serving certificate and the client certificate.
	EtcdCAFile string
	// EtcdCertFile and EtcdKeyFile are the client certificate and its key
	// (mode 0600), as kube-apiserver's --etcd-certfile and --etcd-keyfile.
	EtcdCertFile, EtcdKeyFile string
	// EtcdPrefix is the apiserver's --etcd-prefix.
	EtcdPrefix string
	// EncryptionConfig is the apiserver's --encryption-provider-config, or
	// empty.
	EncryptionConfig string
	// ServiceClusterIPRange is the apiserver's --service-cluster-ip-range.
	ServiceClusterIPRange string
	// Phases are the timed steps of Start: restore etcd (only with a
	// snapshot), start etcd, start control plane.
	Phases []scratch.Phase
	// WorkDir is where the cluster's files are; Stop removes it.
	WorkDir string

	etcd     *embed.Etcd
	api      *apiserver
	logger   *slog.Logger
	stopOnce sync.Once
	stopErr  error
}

var _ scratch.Cluster = (*Cluster)(nil)

// Start restores the snapshot (when given) into a fresh etcd data
// directory, starts etcd on it, starts kube-apiserver on that etcd and
// waits until it is ready. On error nothing is left running and WorkDir is
// removed; the error is a *scratch.StartError naming the failed phase.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{WorkDir: opts.WorkDir, EtcdPrefix: opts.EtcdPrefix, EncryptionConfig: opts.EncryptionConfigPath, logger: logger}
	if c.EtcdPrefix == "" {
		c.EtcdPrefix = DefaultEtcdPrefix
	}
	fail := func(err error) (*Cluster, error) {
		c.Stop()
		return nil, &scratch.StartError{Phases: c.Phases, Err: fmt.Errorf("scratch cluster: %w", err)}
	}
	// phase runs fn as the named phase and records its timing.
	phase := func(name string, fn func() error) error {
		if opts.Progress != nil {
			opts.Progress(name)
		}
		logger.Debug("scratch phase", "phase", name)
		start := now()
		err := fn()
		c.Phases = append(c.Phases, scratch.Phase{Name: name, Started: start, Duration: now().Sub(start), Err: err})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}

	if opts.WorkDir == "" {
		return nil, &scratch.StartError{Err: errors.New("scratch cluster: no work directory")}
	}
	bin := opts.KubeAPIServerBinary
	if bin == "" {
		exe, _ := os.Executable()
		b, err := LocateKubeAPIServer(func(string) string { return "" }, exe)
		if err != nil {
			return nil, &scratch.StartError{Err: fmt.Errorf("scratch cluster: %w", err)}
		}
		bin = b
	} else if err := kubeAPIServer.Check(bin); err != nil {
		return nil, &scratch.StartError{Err: fmt.Errorf("scratch cluster: %w", err)}
	}
	var snapshotSize int64
	if opts.SnapshotPath != "" {
		fi, err := os.Stat(opts.SnapshotPath)
		if err != nil {
			return nil, &scratch.StartError{Err: fmt.Errorf("scratch cluster: snapshot: %w", err)}
		}
		snapshotSize = fi.Size()
	}
	if err := emptyDir(opts.WorkDir); err != nil {
		return nil, &scratch.StartError{Err: fmt.Errorf("scratch cluster: work directory: %w", err)}
	}

	// Certificates are checked against the real clock, not opts.Now.
	pki, err := writeEtcdPKI(filepath.Join(opts.WorkDir, "etcd-pki"), time.Now())
	if err != nil {
		return fail(fmt.Errorf("etcd certificates: %w", err))
	}
	if c.EtcdTLS, err = pki.clientTLS(); err != nil {
		return fail(fmt.Errorf("etcd certificates: %w", err))
	}
	c.EtcdCAFile, c.EtcdCertFile, c.EtcdKeyFile = pki.CAFile, pki.ClientCert, pki.ClientKey

	dataDir := filepath.Join(opts.WorkDir, "etcd")
	etcdLog := filepath.Join(opts.WorkDir, "etcd.log")
	clientPort, err := freePort()
	if err != nil {
		return fail(err)
	}
	peerPort, err := freePort()
	if err != nil {
		return fail(err)
	}
	c.EtcdEndpoint = localURL("https", clientPort)
	peerURL := localURL("https", peerPort)

	if opts.SnapshotPath != "" {
		if err := phase(scratch.PhaseRestoreEtcd, func() error {
			return restoreSnapshot(opts.SnapshotPath, opts.SnapshotSealed, dataDir, peerURL, etcdLog)
		}); err != nil {
			return fail(err)
		}
		if opts.SnapshotRestored != nil {
			opts.SnapshotRestored()
		}
	}
	if err := phase(scratch.PhaseStartEtcd, func() error {
		e, err := startEtcd(ctx, dataDir, c.EtcdEndpoint, peerURL, etcdLog, pki, quotaFor(snapshotSize))
		c.etcd = e
		return err
	}); err != nil {
		return fail(err)
	}
	logger.Debug("scratch etcd serving", "endpoint", c.EtcdEndpoint)

	if err := phase(scratch.PhaseStartControlPlane, func() error {
		return c.startControlPlane(ctx, bin, opts)
	}); err != nil {
		return fail(err)
	}
	logger.Debug("scratch cluster ready", "server", c.Server, "kubeconfig", c.Kubeconfig)
	return c, nil
}

// startControlPlane writes the apiserver's files, starts it and waits
// until it is ready.
func (c *Cluster) startControlPlane(ctx context.Context, bin string, opts Options) error {
	dir := filepath.Join(opts.WorkDir, "kube-apiserver")
	files := apiserverFiles{
		certDir: filepath.Join(dir, "certs"),
		saKey:   filepath.Join(dir, "sa.key"),
		saPub:   filepath.Join(dir, "sa.pub"),
		tokens:  filepath.Join(dir, "tokens.csv"),
	}
	token, err := randomToken()
	if err != nil {
		return err
	}
	c.Token = token
	if err := writeAPIServerFiles(files, token); err != nil {
		return err
	}
	c.ServiceClusterIPRange = opts.ServiceClusterIPRange
	if c.ServiceClusterIPRange == "" {
		c.ServiceClusterIPRange = c.restoredServiceRange(ctx)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	c.Server = localURL("https", port)
	c.CAFile = filepath.Join(files.certDir, "apiserver.crt")
	etcd := etcdClient{url: c.EtcdEndpoint, caFile: c.EtcdCAFile, certFile: c.EtcdCertFile, keyFile: c.EtcdKeyFile}
	args := apiserverArgs(etcd, c.EtcdPrefix, port, files, opts.EncryptionConfigPath, c.ServiceClusterIPRange)
	api, err := startAPIServer(bin, args, dir, filepath.Join(opts.WorkDir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	c.api = api
	timeout := opts.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	client, ca, err := waitReady(ctx, api, c.Server, c.CAFile, token, timeout)
	if err != nil {
		return err
	}
	c.Client, c.CA = client, ca
	c.Kubeconfig = filepath.Join(opts.WorkDir, "kubeconfig")
	return os.WriteFile(c.Kubeconfig, kubeconfig("lifeboat-scratch", c.Server, ca, token), 0o600)
}

// cidrPattern matches IPv4 and IPv6 CIDRs in a stored object's bytes.
var cidrPattern = regexp.MustCompile(`(?:\d{1,3}\.){3}\d{1,3}/\d{1,2}|[0-9a-fA-F:]*:[0-9a-fA-F:]*/\d{1,3}`)

// restoredServiceRange returns the CIDRs of the restored default
// ServiceCIDR object (<prefix>/servicecidrs/kubernetes), or the default
// range. Restored Services keep addresses from that range, and the
// apiserver would otherwise hold a ServiceCIDR that differs from its flag.
func (c *Cluster) restoredServiceRange(ctx context.Context) string {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.EtcdEndpoint}, TLS: c.EtcdTLS, DialTimeout: 5 * time.Second, Logger: zapNop()})
	if err != nil {
		c.logger.Warn("cannot read the restored service CIDR; using the default range", "range", DefaultServiceClusterIPRange, "err", err)
		return DefaultServiceClusterIPRange
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, strings.TrimSuffix(c.EtcdPrefix, "/")+"/servicecidrs/kubernetes")
	if err != nil {
		c.logger.Warn("cannot read the restored service CIDR; using the default range", "range", DefaultServiceClusterIPRange, "err", err)
		return DefaultServiceClusterIPRange
	}
	if len(resp.Kvs) == 0 {
		c.logger.Debug("no ServiceCIDR in the restored data; using the default range", "range", DefaultServiceClusterIPRange)
		return DefaultServiceClusterIPRange
	}
	var cidrs []string
	for _, m := range cidrPattern.FindAllString(string(resp.Kvs[0].Value), -1) {
		if _, _, err := net.ParseCIDR(m); err == nil && !slices.Contains(cidrs, m) && len(cidrs) < 2 {
			cidrs = append(cidrs, m)
		}
	}
	if len(cidrs) == 0 {
		c.logger.Warn("restored ServiceCIDR holds no CIDR lifeboat can read; using the default range", "range", DefaultServiceClusterIPRange)
		return DefaultServiceClusterIPRange
	}
	c.logger.Debug("service CIDR from the restored data", "cidrs", cidrs)
	return strings.Join(cidrs, ",")
}

// Access implements scratch.Cluster.
func (c *Cluster) Access() scratch.Access {
	return scratch.Access{
		Server: c.Server, CA: c.CA, Token: c.Token, Kubeconfig: c.Kubeconfig,
		Client: c.Client, EtcdEndpoints: []string{c.EtcdEndpoint}, EtcdTLS: c.EtcdTLS,
	}
}

// StartPhases implements scratch.Cluster.
func (c *Cluster) StartPhases() []scratch.Phase { return c.Phases }

// Exited is closed when the apiserver process has exited, by Stop or on its
// own.
func (c *Cluster) Exited() <-chan struct{} {
	if c.api == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return c.api.done
}

// Stop stops the apiserver and etcd and removes WorkDir. It is safe to
// call more than once and from several goroutines.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.api != nil {
			c.api.stop(stopGrace)
		}
		if c.etcd != nil {
			c.etcd.Close()
		}
		if c.WorkDir != "" {
			if err := os.RemoveAll(c.WorkDir); err != nil {
				c.stopErr = fmt.Errorf("scratch cluster: remove %s: %w", c.WorkDir, err)
			}
		}
		c.logger.Debug("scratch cluster stopped", "dir", c.WorkDir)
	})
	return c.stopErr
}

// emptyDir creates dir (0700) or checks that it is empty.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return mkdir(dir)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	return nil
}

// Provider is the embedded scratch provider for drills.
type Provider struct {
	// KubeAPIServerBinary is the kube-apiserver to run; empty means the one
	// beside the running executable.
	KubeAPIServerBinary string
	// ReadyTimeout bounds waiting for the apiserver; zero: the default.
	ReadyTimeout time.Duration
	// Logger receives log lines; nil discards them.
	Logger *slog.Logger
}

var _ scratch.Provider = Provider{}

// Name implements scratch.Provider.
func (Provider) Name() string { return "embedded" }

// Start implements scratch.Provider.
func (p Provider) Start(ctx context.Context, req scratch.Request) (scratch.Cluster, error) {
	c, err := Start(ctx, Options{
		SnapshotPath: req.SnapshotPath, SnapshotSealed: req.SnapshotSealed, SnapshotRestored: req.SnapshotRestored,
		EncryptionConfigPath: req.EncryptionConfigPath,
		EtcdPrefix:           req.EtcdPrefix, WorkDir: req.WorkDir, KubeAPIServerBinary: p.KubeAPIServerBinary,
		ReadyTimeout: p.ReadyTimeout, Logger: p.Logger, Progress: req.Progress, Now: req.Now,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

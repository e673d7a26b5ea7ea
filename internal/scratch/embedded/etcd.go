package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lifeboat-dr/lifeboat/internal/plainfile"
)

func zapNop() *zap.Logger { return zap.NewNop() }

// memberName is the name of the scratch etcd's only member.
const memberName = "scratch"

// restoreSnapshot restores the snapshot file into dataDir (which must not
// exist or be empty) as a one-member cluster whose member advertises
// peerURL. etcdutl checks the SHA-256 etcd appends to a snapshot, unless
// sealed says the caller checked every byte against an authenticated
// digest and the file, confirmed here, can no longer change.
func restoreSnapshot(snapshotPath string, sealed bool, dataDir, peerURL, logFile string) error {
	lg, closeLog, err := fileLogger(logFile)
	if err != nil {
		return err
	}
	defer closeLog()
	return snapshot.NewV3(lg).Restore(snapshot.RestoreConfig{
		SnapshotPath:        snapshotPath,
		Name:                memberName,
		OutputDataDir:       dataDir,
		PeerURLs:            []string{peerURL},
		InitialCluster:      memberName + "=" + peerURL,
		InitialClusterToken: "lifeboat-scratch",
		SkipHashCheck:       sealed && plainfile.IsSealed(snapshotPath),
	})
}

// etcd's default backend quota (2 GiB) and its documented maximum (8 GiB).
const (
	defaultQuota = 2 << 30
	maxQuota     = 8 << 30
)

// quotaFor returns the scratch etcd's backend quota for a restored
// snapshot of size bytes. etcd's default (2 GiB) refuses every write to a
// database already past it, and a source cluster may run up to 8 GiB: the
// apiserver's bootstrap writes would fail and the drill with them. The
// scratch etcd is a copy that lives for one drill, so it gets etcd's
// documented maximum, or the snapshot's size and 1 GiB more beyond it.
func quotaFor(size int64) int64 {
	if size == 0 {
		return defaultQuota
	}
	return max(maxQuota, size+1<<30)
}

// fileLogger returns a zap logger appending warnings and errors to path.
func fileLogger(path string) (*zap.Logger, func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.AddSync(f), zapcore.WarnLevel)
	lg := zap.New(core)
	return lg, func() { lg.Sync(); f.Close() }, nil
}

// startEtcd starts an etcd server in this process on dataDir, serving
// clients on clientURL and its (unused) peer port on peerURL, and waits
// until it is ready. A data directory restored from a snapshot restarts as
// the member restoreSnapshot made; an empty one starts a new cluster.
//
// Both ports serve TLS with pki's server certificate and require a client
// certificate signed by pki's CA: the restored data is a copy of a
// production keyspace and 127.0.0.1 is reachable by every local user.
func startEtcd(ctx context.Context, dataDir, clientURL, peerURL, logFile string, pki etcdPKI, quota int64) (*embed.Etcd, error) {
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, err
	}
	pu, err := url.Parse(peerURL)
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = memberName
	cfg.Dir = dataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = memberName + "=" + peerURL
	// (Set field by field: the TLSInfo type's module is only an indirect
	// dependency of lifeboat's.)
	cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = pki.ServerCert, pki.ServerKey
	cfg.ClientTLSInfo.TrustedCAFile, cfg.ClientTLSInfo.ClientCertAuth = pki.CAFile, true
	cfg.PeerTLSInfo = cfg.ClientTLSInfo
	cfg.InitialClusterToken = "lifeboat-scratch"
	// One member on loopback: a short election timeout makes it leader
	// within ~100ms instead of ~1s, which counts toward the drill's RTO.
	cfg.TickMs, cfg.ElectionMs = 10, 100
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{logFile}
	// Revisions stay until the caller compacts: a drill reads the keyspace
	// at the backup's revision after the apiserver has started writing.
	cfg.AutoCompactionRetention = "0"
	cfg.QuotaBackendBytes = quota
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd stopped while starting: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(time.Minute):
		e.Server.Stop()
		e.Close()
		return nil, errors.New("etcd not ready after 1m0s")
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func localURL(scheme string, port int) string {
	return scheme + "://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func mkdir(dir string) error {
	return os.MkdirAll(filepath.Clean(dir), 0o700)
}

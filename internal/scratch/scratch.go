package scratch

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"

	"k8s.io/client-go/rest"
)

// Phase names a provider reports, in the order they happen.
const (
	PhaseRestoreEtcd       = "restore etcd"
	PhaseStartEtcd         = "start etcd"
	PhaseStartControlPlane = "start control plane"
)

// Phase is one timed step of starting a scratch cluster.
type Phase struct {
	// Name is one of the Phase* constants (or a provider's own).
	Name string
	// Started is when the step began, by the provider's clock.
	Started time.Time
	// Duration is how long it took.
	Duration time.Duration
	// Err is why the step failed; nil when it succeeded.
	Err error
}

// Request says what to start a scratch cluster from.
type Request struct {
	// SnapshotPath is a plaintext etcd snapshot file (the output of
	// etcdctl snapshot save or Maintenance.Snapshot, its trailing SHA-256
	// included); empty starts an empty cluster (a drill restores a
	// manifests export into it).
	SnapshotPath string
	// (A drill's SnapshotPath may be /proc/self/fd/N, a memory file of
	// this process: only a provider that restores in this process, as
	// the embedded one does, can open it.)
	//
	// SnapshotSealed says the snapshot's every byte was checked against
	// an authenticated digest (the backup's MAC-checked manifest) and can
	// no longer change (a sealed memory file): the restore then skips
	// etcdutl's second pass over it to check etcd's unkeyed trailer.
	SnapshotSealed bool
	// SnapshotRestored, when set, is called once the scratch etcd's data
	// directory holds its own copy of the snapshot, so the caller can
	// release it before the rest of the cluster starts.
	SnapshotRestored func()
	// EncryptionConfigPath is the source cluster's EncryptionConfiguration
	// file, when one was backed up; empty means Secrets are read as
	// stored (identity).
	EncryptionConfigPath string
	// EtcdPrefix is the source kube-apiserver's --etcd-prefix; empty means
	// "/registry".
	EtcdPrefix string
	// WorkDir is a directory the provider may create files in; it removes
	// them on Stop.
	WorkDir string
	// Progress, when set, is called as each phase begins.
	Progress func(phase string)
	// Now is the clock phases are timed with; nil means time.Now.
	Now func() time.Time
}

// Access is how to reach a started scratch cluster. It holds a bearer
// token and an etcd client key: never log them.
type Access struct {
	// Server is the API server's URL, e.g. https://127.0.0.1:PORT.
	Server string
	// CA is the PEM the server's certificate verifies against.
	CA []byte
	// Token is a bearer token with cluster-admin rights.
	Token string
	// Kubeconfig is the path of a kubeconfig file (mode 0600) for Server,
	// CA and Token, for kubectl.
	Kubeconfig string
	// Client is an HTTP client that trusts CA and sends Token.
	Client *http.Client
	// EtcdEndpoints are client URLs of the cluster's etcd, when the
	// provider can reach it; empty otherwise (then keyspace checks
	// cannot run).
	EtcdEndpoints []string
	// EtcdTLS is the TLS client configuration for EtcdEndpoints (the CA
	// that verifies etcd and a client certificate etcd requires); nil
	// when the endpoints are plain http.
	EtcdTLS *tls.Config
	// RESTConfig, when set, is the client-go configuration for Server
	// (a kubeconfig's, whatever its credentials); otherwise one is made
	// from Server, CA and Token.
	RESTConfig *rest.Config
	// Existing is set for a cluster that was not made for the drill (the
	// kubeconfig provider): the drill restores into namespaces of its
	// own and deletes only what it created.
	Existing bool
}

// Cluster is a started scratch cluster.
type Cluster interface {
	// Access returns how to reach the cluster.
	Access() Access
	// StartPhases returns the timed steps of starting it, in order.
	StartPhases() []Phase
	// Stop shuts the cluster down and removes the restored data. It is
	// safe to call more than once.
	Stop() error
}

// Provider starts scratch clusters.
type Provider interface {
	// Name is the provider's type, as in a Drill's spec.scratch.type.
	Name() string
	// Start restores the snapshot and starts a cluster on it, returning
	// once the API server is ready. On error, nothing is left running; the
	// error names the phase that failed and is a *StartError holding the
	// phases run so far.
	Start(ctx context.Context, req Request) (Cluster, error)
}

// StartError is the error of a failed Start: the phase that failed and the
// phases that ran, so a drill can report their timings.
type StartError struct {
	Phases []Phase
	Err    error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

package testenv

import (
	"context"
	"fmt"
	"net/http"
	"testing"
)

// Etcd is a single-member etcd server on 127.0.0.1 (plain HTTP, no
// authentication).
type Etcd struct {
	*Process
	// Endpoint is the client URL, e.g. http://127.0.0.1:PORT. It serves
	// gRPC, the v3 JSON gateway (/v3/...) and /health.
	Endpoint string
	// DataDir is the server's --data-dir.
	DataDir string
}

// StartEtcd starts a new single-member etcd cluster named "default" with
// its data in a temporary directory. extra flags (e.g.
// "--quota-backend-bytes", "1048576") are appended to the command line.
// It returns once /health answers, and the test fails with etcd's log if
// it never does.
func StartEtcd(t testing.TB, extra ...string) *Etcd {
	t.Helper()
	bin := Binary(t, "etcd")
	client, peer := "http://"+addr(FreePort(t)), "http://"+addr(FreePort(t))
	e := &Etcd{Endpoint: client, DataDir: tempDir(t, "etcd-data")}
	args := []string{
		"--name", "default",
		"--data-dir", e.DataDir,
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default=" + peer,
		"--log-level", "warn",
	}
	args = append(args, extra...)
	e.Process = startProcess(t, "etcd", bin, args, nil, tempDir(t, "etcd-home"), e.Ready)
	return e
}

// Ready reports whether etcd is healthy: GET /health returns 200 with
// {"health":"true"}.
func (e *Etcd) Ready(ctx context.Context) error {
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := doJSON(ctx, http.DefaultClient, http.MethodGet, e.Endpoint+"/health", nil, nil, &h); err != nil {
		return err
	}
	if h.Health != "true" {
		return fmt.Errorf("GET %s/health: health %q (%s)", e.Endpoint, h.Health, h.Reason)
	}
	return nil
}

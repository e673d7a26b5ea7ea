package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Vault is a Vault server on 127.0.0.1, started by StartVault (dev mode,
// in-memory storage) or StartVaultRaft (integrated raft storage).
type Vault struct {
	*Process
	// Address is the server's URL, e.g. http://127.0.0.1:PORT.
	Address string
	// Token is a root token.
	Token string
	// UnsealKey is the one unseal key of a StartVaultRaft server (empty
	// for a dev server, which unseals itself). Ready uses it to unseal the
	// server again after a Restart.
	UnsealKey string
}

// StartVault starts a Vault dev server: unsealed, in-memory storage, a
// random root token and the kv-v2 engine at secret/. Its cluster listener
// takes the port after Address's.
func StartVault(t testing.TB) *Vault {
	t.Helper()
	bin := Binary(t, "vault")
	port := freePortPair(t)
	v := &Vault{Address: "http://" + addr(port), Token: "root-" + randomSecret(t)}
	args := []string{"server", "-dev",
		"-dev-listen-address=" + addr(port),
		"-dev-root-token-id=" + v.Token,
		"-dev-no-store-token",
	}
	v.Process = startProcess(t, "vault", bin, args, nil, tempDir(t, "vault-home"), v.Ready)
	return v
}

// StartVaultRaft starts a Vault server with integrated raft storage in a
// temporary directory, initialises it with one unseal key, unseals it and
// waits until it is the active node. Token is the root token.
func StartVaultRaft(t testing.TB) *Vault {
	t.Helper()
	bin := Binary(t, "vault")
	port, clusterPort := FreePort(t), FreePort(t)
	home, data := tempDir(t, "vault-home"), tempDir(t, "vault-raft")
	v := &Vault{Address: "http://" + addr(port)}
	config := fmt.Sprintf(`disable_mlock = true
ui = false
api_addr = %q
cluster_addr = %q

listener "tcp" {
  address = %q
  cluster_address = %q
  tls_disable = true
}

storage "raft" {
  path = %q
  node_id = "lifeboat-test"
  # Tighter raft timings (the default multiplier is 5): faster elections.
  performance_multiplier = 1
}
`, v.Address, "https://"+addr(clusterPort), addr(port), addr(clusterPort), data)
	cfgPath := filepath.Join(home, "vault.hcl")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatalf("testenv: vault (raft): write config: %v", err)
	}
	// Start-up is done once the API answers; Vault is still uninitialised.
	v.Process = startProcess(t, "vault (raft)", bin, []string{"server", "-config=" + cfgPath}, nil, home, v.health(http.StatusNotImplemented))

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var initResp struct {
		Keys      []string `json:"keys"`
		RootToken string   `json:"root_token"`
	}
	if err := doJSON(ctx, http.DefaultClient, http.MethodPut, v.Address+"/v1/sys/init", nil,
		map[string]int{"secret_shares": 1, "secret_threshold": 1}, &initResp); err != nil {
		t.Fatalf("testenv: vault (raft): initialise: %v\nlog:\n%s", err, v.Log())
	}
	if len(initResp.Keys) != 1 || initResp.RootToken == "" {
		t.Fatalf("testenv: vault (raft): initialise: got %d unseal keys and root token %q", len(initResp.Keys), initResp.RootToken)
	}
	v.Token, v.UnsealKey = initResp.RootToken, initResp.Keys[0]
	if err := poll(ctx, v.Ready); err != nil {
		t.Fatalf("testenv: vault (raft): unseal and become active: %v\nlog:\n%s", err, v.Log())
	}
	return v
}

// Ready reports whether the server is initialised, unsealed and active
// (GET /v1/sys/health returns 200). A sealed server with an UnsealKey is
// unsealed first.
func (v *Vault) Ready(ctx context.Context) error {
	err := v.health(http.StatusOK)(ctx)
	var he *httpError
	if errors.As(err, &he) && he.Status == http.StatusServiceUnavailable && v.UnsealKey != "" {
		var st struct {
			Sealed bool `json:"sealed"`
		}
		if err := doJSON(ctx, http.DefaultClient, http.MethodPut, v.Address+"/v1/sys/unseal", nil,
			map[string]string{"key": v.UnsealKey}, &st); err != nil {
			return fmt.Errorf("unseal: %w", err)
		}
		if st.Sealed {
			return errors.New("unseal: still sealed")
		}
		return v.health(http.StatusOK)(ctx)
	}
	return err
}

// health returns a probe that wants status want from GET /v1/sys/health.
// Vault answers 200 when active, 429 when standby, 501 when not
// initialised and 503 when sealed.
func (v *Vault) health(want int) func(context.Context) error {
	return func(ctx context.Context) error {
		return doJSON(ctx, http.DefaultClient, http.MethodGet, v.Address+"/v1/sys/health", nil, nil, nil, want)
	}
}

// poll calls probe every 100ms until it returns nil or ctx ends.
func poll(ctx context.Context, probe func(context.Context) error) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := probe(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

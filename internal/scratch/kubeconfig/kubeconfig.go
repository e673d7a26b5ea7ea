package kubeconfig

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"k8s.io/client-go/rest"

	"github.com/lifeboat-dr/lifeboat/internal/kube"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
)

// PhaseConnect is the provider's one start phase.
const PhaseConnect = "connect"

// Provider connects to an existing cluster.
type Provider struct {
	// Kubeconfig is the kubeconfig file; Context its context (empty: the
	// file's current context).
	Kubeconfig, Context string
	// Logger receives log lines; nil discards them.
	Logger *slog.Logger
}

var _ scratch.Provider = Provider{}

// Name implements scratch.Provider.
func (Provider) Name() string { return "kubeconfig" }

// Start implements scratch.Provider: it loads the kubeconfig and checks
// that the API server answers /version. req.SnapshotPath is ignored (an
// existing cluster's etcd is never restored into).
func (p Provider) Start(ctx context.Context, req scratch.Request) (scratch.Cluster, error) {
	now := req.Now
	if now == nil {
		now = time.Now
	}
	if req.Progress != nil {
		req.Progress(PhaseConnect)
	}
	t0 := now()
	cfg, client, err := p.connect(ctx)
	ph := scratch.Phase{Name: PhaseConnect, Started: t0, Duration: now().Sub(t0), Err: err}
	if err != nil {
		return nil, &scratch.StartError{Phases: []scratch.Phase{ph}, Err: err}
	}
	return &cluster{acc: scratch.Access{Server: cfg.Host, Client: client, RESTConfig: cfg, Kubeconfig: p.Kubeconfig, Existing: true},
		phases: []scratch.Phase{ph}}, nil
}

func (p Provider) connect(ctx context.Context) (*rest.Config, *http.Client, error) {
	cfg, err := kube.Config(kube.Options{Kubeconfig: p.Kubeconfig, Context: p.Context})
	if err != nil {
		return nil, nil, fmt.Errorf("scratch cluster: %w", err)
	}
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("scratch cluster %s: client: %w", cfg.Host, err)
	}
	acc := scratch.Access{Server: cfg.Host, Client: client}
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := acc.Do(ctx, http.MethodGet, "/version", nil, &v); err != nil {
		return nil, nil, fmt.Errorf("scratch cluster %s (kubeconfig %s): %w", cfg.Host, p.Kubeconfig, err)
	}
	if p.Logger != nil {
		p.Logger.Info("scratch cluster reached", "server", cfg.Host, "version", v.GitVersion)
	}
	return cfg, client, nil
}

// cluster is an existing cluster: Stop leaves it running (the drill
// deletes what it created).
type cluster struct {
	acc    scratch.Access
	phases []scratch.Phase
}

func (c *cluster) Access() scratch.Access       { return c.acc }
func (c *cluster) StartPhases() []scratch.Phase { return c.phases }
func (c *cluster) Stop() error                  { return nil }

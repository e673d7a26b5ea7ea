package kube

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options say how to reach the API server.
type Options struct {
	// Kubeconfig is the path of a kubeconfig file; empty means in-cluster
	// configuration when running in a pod, else the default loading rules
	// ($KUBECONFIG, then ~/.kube/config).
	Kubeconfig string
	// Context is the kubeconfig context; empty means the current context.
	Context string
	// UserAgent is sent with every request; empty means "lifeboat".
	UserAgent string
}

// QPS and Burst are the client-side rate limits of the configs Config
// returns. client-go's defaults (5 and 10) would make paging through tens
// of thousands of objects take minutes for no reason.
const (
	QPS   = 100
	Burst = 200
)

// Config returns a REST config for opts. The error names the kubeconfig
// file or the in-cluster environment at fault; it never contains
// credentials.
func Config(opts Options) (*rest.Config, error) {
	var cfg *rest.Config
	switch {
	case opts.Kubeconfig != "":
		if _, err := os.Stat(opts.Kubeconfig); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", opts.Kubeconfig, err)
		}
		c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: opts.Kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: opts.Context}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", opts.Kubeconfig, err)
		}
		cfg = c
	case opts.Context == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster configuration: %w", err)
		}
		cfg = c
	default:
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
			&clientcmd.ConfigOverrides{CurrentContext: opts.Context}).ClientConfig()
		if err != nil {
			if clientcmd.IsEmptyConfig(err) {
				return nil, errors.New("no Kubernetes API server configured: set spec.cluster.kubeconfig in the BackupPlan, run lifeboat in a pod, or set KUBECONFIG")
			}
			return nil, fmt.Errorf("kubeconfig %s: %w", rules.GetDefaultFilename(), err)
		}
		cfg = c
	}
	cfg.QPS, cfg.Burst = QPS, Burst
	cfg.UserAgent = opts.UserAgent
	if cfg.UserAgent == "" {
		cfg.UserAgent = "lifeboat"
	}
	return cfg, nil
}

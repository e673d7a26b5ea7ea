package backup

import (
	"github.com/lifeboat-dr/lifeboat/internal/kube"
	"k8s.io/client-go/rest"
)

// kube returns the REST config of the plan's cluster, built once per run
// and shared by the Kubernetes sources.
func (r *run) kube() (*rest.Config, error) {
	if r.kubeConfig != nil {
		return rest.CopyConfig(r.kubeConfig), nil
	}
	var opts kube.Options
	if c := r.opts.Plan.Spec.Cluster; c != nil {
		opts = kube.Options{Kubeconfig: c.Kubeconfig, Context: c.Context}
	}
	opts.UserAgent = "lifeboat/" + r.opts.Version
	cfg, err := kube.Config(opts)
	if err != nil {
		return nil, err
	}
	r.kubeConfig = cfg
	return rest.CopyConfig(cfg), nil
}

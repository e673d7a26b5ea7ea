package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/service"
)

func newServeCommand(a *app) *cobra.Command {
	var (
		o          service.Options
		signingKey string
	)
	cmd := &cobra.Command{
		Use:   "serve --config DIR",
		Short: "Run every Schedule: the in-cluster service, with metrics, health and a status page",
		Long: `serve loads every object in the --config directory (a mounted ConfigMap) and
runs each Schedule's backups, key rotations and drills on its cron, through
the same code path as the commands. Each tick is claimed in the store before
it runs (runs/<schedule>/<tick>.json, written once), so it runs exactly once
however many replicas there are; every tick, run or not, ends with a signed
"schedule" evidence record.

With --leader-elect (the default) replicas share a Kubernetes Lease
(coordination.k8s.io) in their namespace and only the holder runs schedules;
a leader that loses the Lease cancels its runs at once, and the next leader
settles them as abandoned. --listen serves /metrics (Prometheus),
/healthz, /readyz and a read-only status page (/, /api/status).

The configuration is reloaded on SIGHUP and when the directory changes; an
invalid configuration is refused with file:line:column errors and the old
one keeps running. On SIGTERM serve takes no new ticks, lets backups and
rotations finish within --grace (drills are cancelled at once), releases
the Lease and exits 0.

The signing key must exist (mount it from a Secret): every replica signs
with the same key, so the evidence log verifies as one chain.`,
		Example: `  # in a pod: config from a ConfigMap, signing key from a Secret
  lifeboat serve --config /etc/lifeboat --signing-key /var/run/lifeboat/signing/key.pem

  # on a workstation, one replica, no Kubernetes Lease
  lifeboat serve --config ./lifeboat.d --leader-elect=false --listen 127.0.0.1:8080 \
      --signing-key ~/.config/lifeboat/evidence-signing.pem`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(a.configPaths) != 1 {
				return usageError{errors.New("serve: name exactly one configuration directory with --config")}
			}
			if signingKey == "" {
				return usageError{errors.New("serve: --signing-key is required (every replica must sign with the same key)")}
			}
			signer, err := a.env(nil).Signer(cmd.Context(), signingKey, false)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			if o.Identity == "" {
				if o.Identity, err = os.Hostname(); err != nil {
					return fmt.Errorf("serve: no --identity and no host name: %w", err)
				}
			}
			o.ConfigDir, o.Signer, o.Logger, o.Version = a.configPaths[0], signer, a.logger, version
			o.Env = *a.env(nil)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			reload := make(chan struct{}, 1)
			go func() {
				for range hup {
					select {
					case reload <- struct{}{}:
					default:
					}
				}
			}()
			o.Reload = reload
			// A SIGTERM is the normal end of a service: exit 0 once drained.
			return service.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", service.DefaultListen, "address of /metrics, /healthz, /readyz and the status page")
	f.BoolVar(&o.LeaderElect, "leader-elect", true, "take a Kubernetes Lease so that one replica runs the schedules")
	f.StringVar(&o.Identity, "identity", "", "this replica's name in claims and the Lease; default: the host name (the pod name)")
	f.StringVar(&o.LeaseNamespace, "lease-namespace", "", "namespace of the Lease; default: the pod's own")
	f.StringVar(&o.LeaseName, "lease-name", service.DefaultLeaseName, "name of the Lease")
	f.StringVar(&o.Kube.Kubeconfig, "kubeconfig", "", "kubeconfig for the Lease; default: in-cluster, else $KUBECONFIG")
	f.DurationVar(&o.Grace, "grace", service.DefaultGrace, "how long backups and rotations may finish after SIGTERM")
	f.DurationVar(&o.ConfigPoll, "config-poll", service.DefaultConfigPoll, "how often the configuration directory is checked for changes")
	f.StringVar(&signingKey, "signing-key", "", "evidence signing key: an Ed25519 PEM file, vault:MOUNT/KEY (Vault transit, type ed25519) or awskms:KEY (AWS KMS, ECC_NIST_P256); required, and the same for every replica")
	return cmd
}

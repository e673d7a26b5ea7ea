package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	"github.com/lifeboat-dr/lifeboat/internal/scratch/embedded"
)

func newDemoCommand(a *app) *cobra.Command {
	var (
		dir, kubeAPIServer string
		keep               bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Back up a demo cluster and drill the restore, end to end, on this machine",
		Long: `demo shows lifeboat end to end on this machine, with nothing but the
kube-apiserver binary that make testbin builds:

  1. starts a source cluster: etcd (in this process) and a real kube-apiserver
     on 127.0.0.1, with Secrets encrypted at rest (aescbc);
  2. seeds it through the Kubernetes API with namespaces (Pod Security
     labels), deployments, services, RBAC roles and bindings,
     NetworkPolicies and Secrets (made-up values, no PHI);
  3. creates a write-once fs store and a local keyring in the work
     directory, and writes the Store, KeyProvider, BackupPlan and Drill
     objects to lifeboat.yaml there;
  4. backs the cluster up (etcd snapshot + encryption config, encrypted
     client-side), then stops the source cluster: the incident;
  5. runs the drill: restores the backup into a scratch cluster, verifies it
     and prints the RTO/RPO table with PASS or FAIL and the signed report.

The work directory (--dir, default a new temporary directory) is kept and
printed at the end, so the report, the evidence log and the configuration
can be inspected, and the drill re-run with lifeboat --config.`,
		Example: `  make demo
  bin/lifeboat demo --dir /tmp/lifeboat-demo --keep`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), a, cmd.OutOrStdout(), demoOptions{dir: dir, kubeAPIServer: kubeAPIServer, keep: keep})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "work directory (absent or empty); default: a new temporary directory")
	cmd.Flags().StringVar(&kubeAPIServer, "kube-apiserver", "", "kube-apiserver binary (default: $"+embedded.EnvKubeAPIServer+", else kube-apiserver beside lifeboat, as make testbin builds it)")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the scratch cluster serving after the drill; Ctrl-C tears it down")
	return cmd
}

type demoOptions struct {
	dir, kubeAPIServer string
	keep               bool
}

// demoStep prints what the demo is doing on stderr.
type demoStep struct {
	w     io.Writer
	start time.Time
}

func (s demoStep) say(format string, args ...any) {
	fmt.Fprintf(s.w, "[%7.2fs] %-19s %s\n", time.Since(s.start).Seconds(), "demo", fmt.Sprintf(format, args...))
}

func runDemo(ctx context.Context, a *app, stdout io.Writer, o demoOptions) (err error) {
	step := demoStep{w: a.stderr, start: time.Now()}
	env := a.env(nil)
	bin, err := embedded.LocateKubeAPIServer(func(k string) string {
		if k == embedded.EnvKubeAPIServer && o.kubeAPIServer != "" {
			return o.kubeAPIServer
		}
		return env.Getenv(k)
	}, env.Executable)
	if err != nil {
		return fmt.Errorf("demo: %w\n(run `make testbin` at the repository root: it builds bin/kube-apiserver, about 4 minutes on 2 cores; or run `make demo`, which does it for you)", err)
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "lifeboat-demo-"); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	} else if err := demoDir(dir); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	step.say("work directory %s", dir)
	defer func() {
		fmt.Fprintf(a.stderr, "\nWork directory: %s\n  configuration %s, store %s, keyring %s\n  (remove it with rm -rf %s)\n",
			dir, filepath.Join(dir, "lifeboat.yaml"), filepath.Join(dir, "store"), filepath.Join(dir, "keyring.json"), dir)
	}()

	// 1. The source cluster, Secrets encrypted at rest.
	encCfg := filepath.Join(dir, "encryption-config.yaml")
	if err := writeDemoEncryptionConfig(encCfg); err != nil {
		return fmt.Errorf("demo: encryption config: %w", err)
	}
	step.say("starting the source cluster: etcd + kube-apiserver (%s) on 127.0.0.1, Secrets encrypted at rest with aescbc", bin)
	src, err := embedded.Start(ctx, embedded.Options{
		EncryptionConfigPath: encCfg, WorkDir: filepath.Join(dir, "source-cluster"),
		KubeAPIServerBinary: bin, Logger: a.logger,
		Progress: func(p string) { step.say("source cluster: %s", p) },
	})
	if err != nil {
		return fmt.Errorf("demo: source cluster: %w", err)
	}
	srcStopped := false
	stopSource := func() {
		if !srcStopped {
			srcStopped = true
			if err := src.Stop(); err != nil {
				a.logger.Warn("stop source cluster", "err", err)
			}
		}
	}
	defer stopSource()
	step.say("source cluster serving at %s (etcd %s)", src.Server, src.EtcdEndpoint)

	// 2. Seed it through the Kubernetes API.
	n, err := seedDemoCluster(ctx, src.Access())
	if err != nil {
		return fmt.Errorf("demo: seed the source cluster: %w", err)
	}
	step.say("seeded %d objects through the Kubernetes API: 3 namespaces, deployments, services, RBAC, NetworkPolicies, Secrets", n)

	// 3. Store, keyring, configuration.
	if _, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "keyring.json")}, "demo-kek"); err != nil {
		return fmt.Errorf("demo: keyring: %w", err)
	}
	cfgPath := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(cfgPath, demoConfig(dir, src, encCfg), 0o600); err != nil {
		return fmt.Errorf("demo: configuration: %w", err)
	}
	set, err := config.LoadPaths(cfgPath)
	if err != nil {
		return fmt.Errorf("demo: configuration: %w", err)
	}
	d, _ := set.Drill("control-plane")
	cs, _ := set.Store("demo-store")
	signer, err := evidence.LoadOrCreateSigner(filepath.Join(dir, "evidence-signing.pem"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	step.say("created the write-once store %s, the local keyring (KEK demo-kek v1) and %s", cs.Spec.Path, cfgPath)

	// 4. Back up, then lose the source cluster: the same code path as
	// `lifeboat backup run` and the scheduler.
	step.say("backing up plan control-plane: etcd snapshot + encryption config + manifests, compressed and encrypted client-side")
	br, err := job.Backup(ctx, a.env(set), "control-plane", job.BackupOptions{Signer: signer, Version: version})
	if err != nil {
		return fmt.Errorf("demo: backup: %w", err)
	}
	m, rec := br.Manifest, br.Record
	step.say("backup %s committed: %d artifacts, %s stored, etcd revision %d, %d keys inventoried",
		m.Backup, len(m.Artifacts), byteSize(m.StoredSize()), m.Etcd.Revision, m.Etcd.Inventory.Keys)
	if x := m.Manifests; x != nil {
		step.say("manifests: %d objects exported as YAML, %d policy objects recorded, %d resources skipped", x.Objects, len(x.Policies), len(x.Skipped))
	}
	step.say("evidence record %d written: %s", rec.Seq, rec.Key())
	serveDir := ""
	if o.keep {
		// The source keeps serving so that `lifeboat serve` has a cluster
		// to back up; the drill restores without it all the same.
		if serveDir, err = writeServeDir(dir, cfgPath); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		step.say("incident (simulated): the drill restores into a new scratch cluster without reading the source, which --keep leaves serving")
	} else {
		stopSource()
		step.say("incident: the source cluster is gone (stopped, its etcd data deleted)")
	}

	if serveDir != "" {
		step.say("after the drill, while the demo keeps its clusters, schedule them from another terminal:\n  lifeboat --config %s serve --leader-elect=false --listen 127.0.0.1:8080 --signing-key %s\n  then open http://127.0.0.1:8080/ (status page) and http://127.0.0.1:8080/metrics",
			serveDir, filepath.Join(dir, "evidence-signing.pem"))
	}

	// 5. Drill.
	step.say("drill control-plane: restore the latest backup into a scratch cluster and verify it (targets RTO %s, RPO %s)", d.Spec.Targets.RTO, d.Spec.Targets.RPO)
	reportKey, derr := runDrill(ctx, a, stdout, set, d, job.DrillOptions{
		Signer: signer, Keep: o.keep, TempDir: dir, KubeAPIServer: bin,
	}, false)
	if reportKey != "" {
		fmt.Fprintf(stdout, "\nVerify it offline:  lifeboat evidence public-key %s > signer.pub\n", filepath.Join(dir, "evidence-signing.pem"))
		fmt.Fprintf(stdout, "                    lifeboat report verify %s --key signer.pub\n", filepath.Join(dir, "store", "objects", reportKey))
		fmt.Fprintf(stdout, "                    lifeboat evidence verify --store-path %s --key signer.pub\n", filepath.Join(dir, "store"))
		fmt.Fprintf(stdout, "Drill it again:     lifeboat --config %s drill run control-plane --signing-key %s\n", cfgPath, filepath.Join(dir, "evidence-signing.pem"))
	}

	return derr
}

// writeServeDir writes dir/serve.d: the demo's configuration and two
// Schedules (a backup every minute, a drill every ten minutes), for
// `lifeboat serve --config dir/serve.d`.
func writeServeDir(dir, cfgPath string) (string, error) {
	serveDir := filepath.Join(dir, "serve.d")
	if err := os.MkdirAll(serveDir, 0o700); err != nil {
		return "", fmt.Errorf("serve directory: %w", err)
	}
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", fmt.Errorf("serve directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(serveDir, "lifeboat.yaml"), cfg, 0o600); err != nil {
		return "", fmt.Errorf("serve directory: %w", err)
	}
	schedules := `# Written by lifeboat demo --keep, for lifeboat serve.
apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: control-plane-backup}
spec:
  cron: "* * * * *"      # every minute: a demo; production backs up hourly or daily
  backupPlan: control-plane
---
apiVersion: lifeboat.dev/v1alpha1
kind: Schedule
metadata: {name: control-plane-drill}
spec:
  cron: "*/10 * * * *"
  drill: control-plane
  concurrencyPolicy: Forbid
`
	if err := os.WriteFile(filepath.Join(serveDir, "schedules.yaml"), []byte(schedules), 0o600); err != nil {
		return "", fmt.Errorf("serve directory: %w", err)
	}
	return serveDir, nil
}

// demoDir checks that dir is absent or empty, creating it.
func demoDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("--dir %s is not empty; give a new or empty directory", dir)
	}
	return nil
}

// writeDemoEncryptionConfig writes an EncryptionConfiguration that
// encrypts Secrets with aescbc under a new random key.
func writeDemoEncryptionConfig(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	cfg := `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: demo-key-1
              secret: ` + base64.StdEncoding.EncodeToString(key) + `
      - identity: {}
`
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// demoConfig is the demo's Store, KeyProvider, BackupPlan and Drill. The
// Drill checks what drills/control-plane.yaml checks. The etcd source
// uses src's client certificate: its etcd requires one.
func demoConfig(dir string, src *embedded.Cluster, encCfg string) []byte {
	q := strconv.Quote
	return []byte(`# Written by lifeboat demo.
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: demo-store}
spec:
  type: fs
  path: ` + q(filepath.Join(dir, "store")) + `
  objectLock: {mode: COMPLIANCE, retention: 1d}   # a demo; production keeps 2190d
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: demo-keys}
spec:
  type: local
  keyring: ` + q(filepath.Join(dir, "keyring.json")) + `
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: control-plane}
spec:
  store: demo-store
  keyProvider: demo-keys
  retention: 1d
  cluster: {kubeconfig: ` + q(src.Kubeconfig) + `}
  sources:
    - etcd:
        endpoints: [` + q(src.EtcdEndpoint) + `]
        caFile: ` + q(src.EtcdCAFile) + `
        certFile: ` + q(src.EtcdCertFile) + `
        keyFile: ` + q(src.EtcdKeyFile) + `
    - encryptionConfig:
        file: ` + q(encCfg) + `
    - manifests: {}   # every listable resource as YAML, events and leases excluded
---
apiVersion: lifeboat.dev/v1alpha1
kind: Drill
metadata: {name: control-plane}
spec:
  backupPlan: control-plane
  select: {latest: true}
  scratch: {type: embedded}
  checks:
    - inventory:
        excludeResources: [events, events.events.k8s.io]
    - objects:
        items:
          - {apiVersion: v1, kind: Namespace, name: ehr}
          - {apiVersion: apps/v1, kind: Deployment, namespace: ehr, name: ehr-api}
          - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, namespace: ehr, name: default-deny}
          - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, name: ehr-reader}
    - policies: {}
    - secretsReadable: {}
  targets:
    rto: 5m
    rpo: 1h
`)
}

// seedDemoCluster creates the demo's objects through the Kubernetes API
// and returns how many it created. The values are made up: no PHI.
func seedDemoCluster(ctx context.Context, api scratch.Access) (int, error) {
	type obj struct {
		path string
		body map[string]any
	}
	var objs []obj
	add := func(path string, body map[string]any) { objs = append(objs, obj{path, body}) }
	meta := func(ns, name string, labels map[string]string) map[string]any {
		m := map[string]any{"name": name}
		if ns != "" {
			m["namespace"] = ns
		}
		if labels != nil {
			m["labels"] = labels
		}
		return m
	}
	apps := []struct {
		ns, app, image string
		replicas       int
		enforce        string
	}{
		{"ehr", "ehr-api", "registry.example.org/ehr/api:4.2.1", 3, "restricted"},
		{"billing", "billing-api", "registry.example.org/billing/api:2.0.7", 2, "restricted"},
		{"scheduling", "scheduler-web", "registry.example.org/scheduling/web:1.9.0", 2, "baseline"},
	}
	for _, ap := range apps {
		add("/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace",
			"metadata": meta("", ap.ns, map[string]string{
				"pod-security.kubernetes.io/enforce": ap.enforce, "pod-security.kubernetes.io/audit": "restricted",
				"app.kubernetes.io/part-of": "clinic"})})
	}
	for _, ap := range apps {
		labels := map[string]string{"app": ap.app}
		add("/apis/apps/v1/namespaces/"+ap.ns+"/deployments", map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": meta(ap.ns, ap.app, labels),
			"spec": map[string]any{
				"replicas": ap.replicas,
				"selector": map[string]any{"matchLabels": labels},
				"template": map[string]any{
					"metadata": map[string]any{"labels": labels},
					"spec": map[string]any{
						"securityContext": map[string]any{"runAsNonRoot": true, "seccompProfile": map[string]any{"type": "RuntimeDefault"}},
						"containers": []any{map[string]any{
							"name": ap.app, "image": ap.image,
							"ports":           []any{map[string]any{"containerPort": 8443}},
							"envFrom":         []any{map[string]any{"secretRef": map[string]any{"name": ap.app + "-credentials"}}},
							"securityContext": map[string]any{"allowPrivilegeEscalation": false, "capabilities": map[string]any{"drop": []any{"ALL"}}},
						}},
					},
				},
			}})
		add("/api/v1/namespaces/"+ap.ns+"/services", map[string]any{"apiVersion": "v1", "kind": "Service",
			"metadata": meta(ap.ns, ap.app, labels),
			"spec":     map[string]any{"selector": labels, "ports": []any{map[string]any{"port": 443, "targetPort": 8443}}}})
		add("/api/v1/namespaces/"+ap.ns+"/secrets", map[string]any{"apiVersion": "v1", "kind": "Secret",
			"metadata": meta(ap.ns, ap.app+"-credentials", labels), "type": "Opaque",
			"stringData": map[string]string{"DB_USER": ap.app, "DB_PASSWORD": "demo-only-" + ap.app + "-not-a-secret"}})
		add("/api/v1/namespaces/"+ap.ns+"/secrets", map[string]any{"apiVersion": "v1", "kind": "Secret",
			"metadata": meta(ap.ns, ap.app+"-tls", labels), "type": "Opaque",
			"stringData": map[string]string{"tls.crt": "demo certificate", "tls.key": "demo key, not a real one"}})
		add("/apis/networking.k8s.io/v1/namespaces/"+ap.ns+"/networkpolicies", map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
			"metadata": meta(ap.ns, "default-deny", nil),
			"spec":     map[string]any{"podSelector": map[string]any{}, "policyTypes": []any{"Ingress", "Egress"}}})
		add("/apis/networking.k8s.io/v1/namespaces/"+ap.ns+"/networkpolicies", map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
			"metadata": meta(ap.ns, "allow-"+ap.app, nil),
			"spec": map[string]any{
				"podSelector": map[string]any{"matchLabels": labels},
				"policyTypes": []any{"Ingress"},
				"ingress": []any{map[string]any{
					"from":  []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]string{"app.kubernetes.io/part-of": "clinic"}}}},
					"ports": []any{map[string]any{"port": 8443}},
				}},
			}})
		add("/apis/rbac.authorization.k8s.io/v1/namespaces/"+ap.ns+"/roles", map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
			"metadata": meta(ap.ns, ap.app+"-operator", nil),
			"rules":    []any{map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"deployments", "deployments/scale"}, "verbs": []any{"get", "list", "watch", "patch"}}}})
		add("/apis/rbac.authorization.k8s.io/v1/namespaces/"+ap.ns+"/rolebindings", map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
			"metadata": meta(ap.ns, ap.app+"-operators", nil),
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ap.app + "-operator"},
			"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "sre-oncall"}}})
	}
	add("/apis/rbac.authorization.k8s.io/v1/clusterroles", map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
		"metadata": meta("", "ehr-reader", nil),
		"rules":    []any{map[string]any{"apiGroups": []any{"", "apps"}, "resources": []any{"deployments", "services", "configmaps"}, "verbs": []any{"get", "list", "watch"}}}})
	add("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": meta("", "ehr-auditors", nil),
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ehr-reader"},
		"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "compliance-auditors"}}})
	add("/api/v1/namespaces/ehr/configmaps", map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": meta("ehr", "ehr-api-config", nil), "data": map[string]string{"LOG_LEVEL": "info", "FHIR_VERSION": "R4"}})

	for i, o := range objs {
		if err := api.Do(ctx, http.MethodPost, o.path, o.body, nil); err != nil {
			return i, err
		}
	}
	return len(objs), nil
}

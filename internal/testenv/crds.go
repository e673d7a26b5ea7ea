package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/typed/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
)

// The CRDs come from the Go modules lifeboat builds against, so the API
// server validates objects with the schemas (and CEL rules) the real
// controllers install:
//
//   - external-snapshotter client/v8 ships its CRDs as YAML in config/crd
//     (there is no Go package holding them);
//   - Velero ships its CRDs both as YAML (config/crd/v1/bases) and as the Go
//     package config/crd/v1/crds. That package decodes all of Velero's CRDs
//     into client-go's global scheme when it is initialised, in every test
//     binary that imports testenv; the YAML files of the CRDs needed are
//     read instead.
//
// The module directories are found with `go list -m`, which honours
// go.mod's versions and replace directives.
const (
	snapshotterModule = "github.com/kubernetes-csi/external-snapshotter/client/v8"
	veleroModule      = "github.com/vmware-tanzu/velero"
)

// InstallSnapshotCRDs installs the VolumeSnapshot, VolumeSnapshotContent and
// VolumeSnapshotClass CRDs (snapshot.storage.k8s.io/v1, with their status
// subresources) of external-snapshotter into c and waits until they are
// established. No snapshot controller runs: a test sets status itself.
func InstallSnapshotCRDs(t testing.TB, c *Cluster) {
	t.Helper()
	dir := moduleDir(t, snapshotterModule)
	installCRDs(t, c,
		filepath.Join(dir, "config", "crd", "snapshot.storage.k8s.io_volumesnapshotclasses.yaml"),
		filepath.Join(dir, "config", "crd", "snapshot.storage.k8s.io_volumesnapshotcontents.yaml"),
		filepath.Join(dir, "config", "crd", "snapshot.storage.k8s.io_volumesnapshots.yaml"),
	)
}

// InstallVeleroCRDs installs Velero's Backup, DeleteBackupRequest and Restore CRDs
// (velero.io/v1; like Velero's, without a status subresource) into c and
// waits until they are established. No Velero server runs: a test sets
// status itself.
func InstallVeleroCRDs(t testing.TB, c *Cluster) {
	t.Helper()
	dir := filepath.Join(moduleDir(t, veleroModule), "config", "crd", "v1", "bases")
	installCRDs(t, c, filepath.Join(dir, "velero.io_backups.yaml"), filepath.Join(dir, "velero.io_deletebackuprequests.yaml"),
		filepath.Join(dir, "velero.io_restores.yaml"))
}

// PrometheusOperatorVersion is the Prometheus Operator release whose CRDs
// InstallMonitoringCRDs installs (the Makefile's PROMETHEUS_OPERATOR).
const PrometheusOperatorVersion = "v0.85.0"

// InstallMonitoringCRDs installs the Prometheus Operator's ServiceMonitor
// and PrometheusRule CRDs (monitoring.coreos.com/v1) from the operator's
// module in the module cache (`make testbin` downloads it), and waits until
// they are established. No operator runs.
func InstallMonitoringCRDs(t testing.TB, c *Cluster) {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator@"+PrometheusOperatorVersion)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if err == nil {
		err = json.Unmarshal(out, &mod)
	}
	if err != nil || mod.Dir == "" {
		t.Fatalf("testenv: go mod download prometheus-operator@%s: %v %s %s (run make testbin)", PrometheusOperatorVersion, err, mod.Error, stderr.String())
	}
	dir := filepath.Join(mod.Dir, "example", "prometheus-operator-crd")
	installCRDs(t, c, filepath.Join(dir, "monitoring.coreos.com_servicemonitors.yaml"), filepath.Join(dir, "monitoring.coreos.com_prometheusrules.yaml"))
}

// moduleDir returns the directory of module in the module cache.
func moduleDir(t testing.TB, module string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("testenv: go list -m %s: %v %s (run `go mod download %s`)", module, err, stderr.String(), module)
	}
	return dir
}

// crdConfig is an admin client config for c.
func crdConfig(c *Cluster) *rest.Config {
	return &rest.Config{
		Host: c.Server, BearerToken: c.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile},
		QPS:             100, Burst: 200, UserAgent: "lifeboat-testenv",
	}
}

func installCRDs(t testing.TB, c *Cluster, files ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := apiextclient.NewForConfig(crdConfig(c))
	if err != nil {
		t.Fatalf("testenv: CRD client: %v", err)
	}
	var names []string
	for _, f := range files {
		crd, err := readCRD(f)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		if _, err := client.CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("testenv: create CRD %s: %v", crd.Name, err)
		}
		names = append(names, crd.Name)
	}
	for _, name := range names {
		if err := waitEstablished(ctx, client, name); err != nil {
			t.Fatalf("testenv: CRD %s: %v", name, err)
		}
	}
}

func readCRD(path string) (*apiextv1.CustomResourceDefinition, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CRD: %w", err)
	}
	var crd apiextv1.CustomResourceDefinition
	if err := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096).Decode(&crd); err != nil {
		return nil, fmt.Errorf("decode CRD %s: %w", path, err)
	}
	if crd.Kind != "CustomResourceDefinition" || crd.Name == "" {
		return nil, fmt.Errorf("decode CRD %s: not a CustomResourceDefinition", path)
	}
	return &crd, nil
}

// waitEstablished waits until the CRD's Established condition is true and
// its names are accepted.
func waitEstablished(ctx context.Context, client apiextclient.ApiextensionsV1Interface, name string) error {
	for {
		crd, err := client.CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextv1.NamesAccepted && cond.Status == apiextv1.ConditionFalse {
				return errors.New("names not accepted: " + cond.Message)
			}
			if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not established: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

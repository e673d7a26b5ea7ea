package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Cluster is a source cluster for tests: a kube-apiserver on 127.0.0.1
// with its own etcd, encryption at rest for Secrets (aescbc, key "key1")
// and an admin bearer token. There is no controller manager, scheduler or
// kubelet: objects are stored and served, nothing reconciles them (no
// default ServiceAccount, so the ServiceAccount admission plugin is off).
type Cluster struct {
	// Etcd is the cluster's etcd.
	Etcd *Etcd
	// APIServer is the kube-apiserver process. After APIServer.Stop or
	// Kill, restart it with APIServer.Restart(c.Ready).
	APIServer *Process
	// Server is the API server's URL, e.g. https://127.0.0.1:PORT.
	Server string
	// Token is a bearer token for user "admin" in group system:masters.
	Token string
	// CAFile is the PEM file to trust for Server's self-signed serving
	// certificate (the apiserver's cert-dir/apiserver.crt: the serving
	// certificate followed by the CA that signed it).
	CAFile string
	// Kubeconfig is a kubeconfig file (mode 0600) with one context,
	// "lifeboat-test", for Server, CAFile and Token.
	Kubeconfig string
	// RestrictedToken is a bearer token for user "lifeboat-restricted",
	// in no group but system:authenticated: RBAC grants it nothing
	// beyond discovery until a test binds it a role.
	RestrictedToken string
	// RestrictedKubeconfig is like Kubeconfig, for RestrictedToken.
	RestrictedKubeconfig string
	// EncryptionConfig is the apiserver's --encryption-provider-config.
	EncryptionConfig string
	// EtcdPrefix is the prefix of the apiserver's keys in etcd.
	EtcdPrefix string

	client *http.Client
}

// StartCluster starts etcd and a kube-apiserver on it, and waits until
// GET /readyz answers 200 (the bootstrap RBAC policy is in place).
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterOptions{})
}

// ClusterOptions change what StartClusterWith starts.
type ClusterOptions struct {
	// EtcdServers, when set, are the etcd client URLs (comma-separated)
	// the kube-apiserver uses instead of an etcd of its own (Cluster.Etcd
	// is then nil): a restored cluster, say.
	EtcdServers string
	// EncryptionConfig, when set, is the --encryption-provider-config to
	// use instead of a new one (the restored one, say).
	EncryptionConfig string
	// ExtraArgs are added to the kube-apiserver's flags (audit backends,
	// say).
	ExtraArgs []string
}

// StartClusterWith is StartCluster with options.
func StartClusterWith(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	bin := Binary(t, "kube-apiserver")
	dir := tempDir(t, "kube-apiserver")
	certDir := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		t.Fatalf("testenv: kube-apiserver: %v", err)
	}
	c := &Cluster{
		Token:                randomSecret(t),
		CAFile:               filepath.Join(certDir, "apiserver.crt"),
		Kubeconfig:           filepath.Join(dir, "kubeconfig"),
		RestrictedToken:      randomSecret(t),
		RestrictedKubeconfig: filepath.Join(dir, "kubeconfig-restricted"),
		EncryptionConfig:     filepath.Join(dir, "encryption-config.yaml"),
		EtcdPrefix:           "/registry",
	}
	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	tokens := filepath.Join(dir, "tokens.csv")
	if err := writeServiceAccountKeys(saKey, saPub); err != nil {
		t.Fatalf("testenv: kube-apiserver: service-account keys: %v", err)
	}
	if o.EncryptionConfig != "" {
		c.EncryptionConfig = o.EncryptionConfig
	} else if err := writeEncryptionConfig(c.EncryptionConfig); err != nil {
		t.Fatalf("testenv: kube-apiserver: encryption config: %v", err)
	}
	if err := os.WriteFile(tokens, []byte(c.Token+",admin,admin,system:masters\n"+c.RestrictedToken+","+RestrictedUser+","+RestrictedUser+"\n"), 0o600); err != nil {
		t.Fatalf("testenv: kube-apiserver: token file: %v", err)
	}

	etcdServers := o.EtcdServers
	if etcdServers == "" {
		c.Etcd = StartEtcd(t)
		etcdServers = c.Etcd.Endpoint
	}
	port := FreePort(t)
	c.Server = "https://" + addr(port)
	if err := c.writeKubeconfig(c.Kubeconfig, "admin", c.Token); err != nil {
		t.Fatalf("testenv: kube-apiserver: kubeconfig: %v", err)
	}
	if err := c.writeKubeconfig(c.RestrictedKubeconfig, RestrictedUser, c.RestrictedToken); err != nil {
		t.Fatalf("testenv: kube-apiserver: kubeconfig: %v", err)
	}
	args := []string{
		"--etcd-servers=" + etcdServers,
		"--etcd-prefix=" + c.EtcdPrefix,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--token-auth-file=" + tokens,
		"--encryption-provider-config=" + c.EncryptionConfig,
		"--enable-priority-and-fairness=false",
		"--disable-admission-plugins=ServiceAccount",
		// 127.0.0.1 is not a valid endpoint for the "kubernetes" Service;
		// without a reconciler the apiserver does not try to write it.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=1",
	}
	args = append(args, o.ExtraArgs...)
	c.APIServer = startProcess(t, "kube-apiserver", bin, args, nil, dir, c.Ready)
	client, err := c.newClient()
	if err != nil {
		t.Fatalf("testenv: kube-apiserver: client: %v", err)
	}
	c.client = client
	return c
}

// Ready reports whether GET /readyz, with the admin token, returns 200.
func (c *Cluster) Ready(ctx context.Context) error {
	client, err := c.newClient()
	if err != nil {
		return err
	}
	return httpReady(client, c.Server+"/readyz", nil)(ctx)
}

// Client returns an HTTP client for Server: it trusts CAFile and sends
// Token as a bearer token.
func (c *Cluster) Client() *http.Client { return c.client }

func (c *Cluster) newClient() (*http.Client, error) {
	pemCerts, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemCerts) {
		return nil, fmt.Errorf("no certificates in %s", c.CAFile)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &http.Client{Transport: &bearer{token: c.Token, next: tr}}, nil
}

// bearer adds an Authorization: Bearer header to each request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(req)
}

// writeServiceAccountKeys writes a new RSA key pair for signing and
// verifying service-account tokens.
func writeServiceAccountKeys(keyFile, pubFile string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

// writeEncryptionConfig writes an EncryptionConfiguration that encrypts
// Secrets with aescbc under a new random key named key1, and still reads
// unencrypted ones.
func writeEncryptionConfig(path string) error {
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
            - name: key1
              secret: ` + base64.StdEncoding.EncodeToString(key) + `
      - identity: {}
`
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// RestrictedUser is the user name of Cluster.RestrictedToken.
const RestrictedUser = "lifeboat-restricted"

// writeKubeconfig writes a kubeconfig for Server and CAFile with user's
// token to path.
// WriteKubeconfig writes a kubeconfig file (mode 0600) for the cluster
// with user's bearer token, e.g. a ServiceAccount's from the TokenRequest
// API.
func (c *Cluster) WriteKubeconfig(path, user, token string) error {
	return c.writeKubeconfig(path, user, token)
}

func (c *Cluster) writeKubeconfig(path, user, token string) error {
	if c.Server == "" || c.CAFile == "" || token == "" {
		return errors.New("server, CA file and token are needed")
	}
	// strconv.Quote gives a JSON string, which is a YAML string too.
	cfg := `apiVersion: v1
kind: Config
clusters:
  - name: lifeboat-test
    cluster:
      server: ` + strconv.Quote(c.Server) + `
      certificate-authority: ` + strconv.Quote(c.CAFile) + `
users:
  - name: ` + strconv.Quote(user) + `
    user:
      token: ` + strconv.Quote(token) + `
contexts:
  - name: lifeboat-test
    context:
      cluster: lifeboat-test
      user: ` + strconv.Quote(user) + `
current-context: lifeboat-test
`
	return os.WriteFile(path, []byte(cfg), 0o600)
}

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// auditSetup is a configuration with an AuditLog whose webhook the real
// kube-apiserver posts to.
type auditSetup struct {
	dir, cfgDir, storeRoot, signingKey, pubKey string
	webhook                                    string // host:port
	pki                                        *testenv.PKI
	args, flags                                []string
}

func newAuditSetup(t *testing.T) auditSetup {
	t.Helper()
	dir := t.TempDir()
	s := auditSetup{dir: dir, cfgDir: filepath.Join(dir, "config"), storeRoot: filepath.Join(dir, "store"),
		signingKey: filepath.Join(dir, "signing.pem"), pubKey: filepath.Join(dir, "signer.pub"), pki: testenv.NewPKI(t, "audit-ca")}
	keyring := filepath.Join(dir, "keyring.json")
	if _, errs, code := run(t, "keys", "init", "--keyring", keyring, "--key", "audit-kek"); code != ExitOK {
		t.Fatalf("keys init: %s", errs)
	}
	signer, err := evidence.LoadOrCreateSigner(s.signingKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := evidence.MarshalPublicKey(signer.PublicKey())
	os.WriteFile(s.pubKey, pub, 0o600)
	cert, key := s.pki.Issue(t, "lifeboat-audit", true)
	s.webhook = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	head, _ := testConfigHead(t, dir, s.storeRoot, "{type: local, keyring: "+strconv.Quote(keyring)+"}")
	cfg := head + fmt.Sprintf(`---
apiVersion: lifeboat.dev/v1alpha1
kind: AuditLog
metadata: {name: apiserver}
spec:
  store: local
  keyProvider: local
  walDir: %s
  segment: {maxAge: 2s}
  webhook:
    listen: %q
    certFile: %s
    keyFile: %s
    clientCAFile: %s
    clientNames: [kube-apiserver-audit]
`, strconv.Quote(filepath.Join(dir, "wal")), s.webhook, strconv.Quote(cert), strconv.Quote(key), strconv.Quote(s.pki.CAFile))
	os.MkdirAll(s.cfgDir, 0o700)
	if err := os.WriteFile(filepath.Join(s.cfgDir, "lifeboat.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{"--config", s.cfgDir, "--log-level", "info"}
	s.flags = []string{"--leader-elect=false", "--signing-key", s.signingKey, "--grace", "20s"}
	return s
}

// apiServerArgs writes the audit policy and the webhook kubeconfig and
// returns the kube-apiserver flags that send every request's
// ResponseComplete event to the webhook, in batches, retrying a failed
// batch from 1s on.
func (s auditSetup) apiServerArgs(t *testing.T) []string {
	t.Helper()
	cert, key := s.pki.Issue(t, "kube-apiserver-audit", false)
	policy := filepath.Join(s.dir, "audit-policy.yaml")
	os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"), 0o600)
	kubeconfig := filepath.Join(s.dir, "audit-webhook.kubeconfig")
	os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lifeboat
  cluster: {server: "https://%s/", certificate-authority: %s}
users:
- name: apiserver
  user: {client-certificate: %s, client-key: %s}
contexts:
- name: audit
  context: {cluster: lifeboat, user: apiserver}
current-context: audit
`, s.webhook, strconv.Quote(s.pki.CAFile), strconv.Quote(cert), strconv.Quote(key))), 0o600)
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-webhook-config-file=" + kubeconfig,
		"--audit-webhook-mode=batch",
		"--audit-webhook-batch-max-wait=500ms",
		"--audit-webhook-batch-throttle-enable=false",
		"--audit-webhook-initial-backoff=1s",
	}
}

func (s auditSetup) startServe(t *testing.T) *serveReplica {
	t.Helper()
	r := startServeReplica(t, "lifeboat-0", s.args, s.flags)
	waitUntil(t, "the audit webhook to listen", time.Minute, func() bool {
		c, err := net.DialTimeout("tcp", s.webhook, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return r
}

// auditEvent is what the test reads of a found event.
type auditEvent struct {
	AuditID   string `json:"auditID"`
	Verb      string `json:"verb"`
	User      struct{ Username string }
	ObjectRef struct{ Resource, Namespace, Name string }
}

// search runs `audit search` and returns the events it printed.
func (s auditSetup) search(t *testing.T, extra ...string) []auditEvent {
	t.Helper()
	argv := append([]string{"--config", s.cfgDir, "audit", "search", "--key", s.pubKey, "--from", "1h"}, extra...)
	out, errs, code := run(t, argv...)
	if code != ExitOK {
		t.Fatalf("audit search: exit %d\n%s", code, errs)
	}
	var evs []auditEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit search printed a line that is not an event: %v", err)
		}
		evs = append(evs, e)
	}
	return evs
}

// TestAuditWebhookFromAPIServer: a real kube-apiserver sends its audit
// events to `lifeboat serve`. Secrets and RoleBindings created, patched
// and deleted as a named user are found by `audit search`, exactly; then
// lifeboat is SIGKILLed while the API server is sending, restarted, and no
// acknowledged event is missing; `audit verify` passes, and names a
// segment whose byte is flipped.
func TestAuditWebhookFromAPIServer(t *testing.T) {
	s := newAuditSetup(t)
	serve := s.startServe(t)
	c := testenv.StartClusterWith(t, testenv.ClusterOptions{ExtraArgs: s.apiServerArgs(t)})
	cs := adminClient(t, c)
	ctx := context.Background()

	// Only the named client certificate may post.
	for name, cert := range map[string]string{"another name": "intruder", "another CA": ""} {
		tlsConf := &tls.Config{RootCAs: x509.NewCertPool()}
		ca, _ := os.ReadFile(s.pki.CAFile)
		tlsConf.RootCAs.AppendCertsFromPEM(ca)
		if cert != "" {
			cf, kf := s.pki.Issue(t, cert, false)
			pair, _ := tls.LoadX509KeyPair(cf, kf)
			tlsConf.Certificates = []tls.Certificate{pair}
		} else {
			other := testenv.NewPKI(t, "other-ca")
			cf, kf := other.Issue(t, "kube-apiserver-audit", false)
			pair, _ := tls.LoadX509KeyPair(cf, kf)
			tlsConf.Certificates = []tls.Certificate{pair}
		}
		hc := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
		resp, err := hc.Post("https://"+s.webhook+"/", "application/json", strings.NewReader(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: a client certificate outside clientNames posted: %s", name, resp.Status)
		}
	}

	const ns = "ehr"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for i := range 3 {
		name := fmt.Sprintf("chart-%d", i)
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Secrets(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"create", "patch", "delete"} {
			want[v+" secrets "+name]++
		}
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "readers"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "nurse", APIGroup: "rbac.authorization.k8s.io"}}}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Patch(ctx, "readers", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.RbacV1().RoleBindings(ns).Delete(ctx, "readers", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"create", "patch", "delete"} {
		want[v+" rolebindings readers"]++
	}
	count := func(evs []auditEvent) map[string]int {
		got := map[string]int{}
		for _, e := range evs {
			got[e.Verb+" "+e.ObjectRef.Resource+" "+e.ObjectRef.Name]++
		}
		return got
	}
	var got map[string]int
	waitUntil(t, "the events to be sealed and found", time.Minute, func() bool {
		got = count(s.search(t, "--user", "admin", "--namespace", ns))
		return len(got) >= len(want)
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("audit search --user admin --namespace %s found\n%v\nwant exactly\n%v", ns, got, want)
	}
	if evs := s.search(t, "--user", "admin", "--namespace", ns, "--resource", "rolebindings", "--verb", "patch"); len(evs) != 1 || evs[0].ObjectRef.Name != "readers" {
		t.Fatalf("search for the RoleBinding patch: %+v", evs)
	}

	// kill -9 while the API server is sending: a writer creates Secrets
	// without pause; lifeboat is killed and restarted in the middle.
	var (
		mu      sync.Mutex
		created []string
		stop    = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("burst-%04d", i)
			if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err == nil {
				mu.Lock()
				created = append(created, name)
				mu.Unlock()
			}
		}
	}()
	time.Sleep(3 * time.Second)
	if err := serve.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-serve.exited
	time.Sleep(500 * time.Millisecond)
	serve = s.startServe(t)
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	mu.Lock()
	n := len(created)
	mu.Unlock()
	if n < 20 {
		t.Fatalf("only %d Secrets created during the kill", n)
	}
	var burst map[string]int
	waitUntil(t, "every burst event to be found", 2*time.Minute, func() bool {
		burst = map[string]int{}
		for _, e := range s.search(t, "--user", "admin", "--namespace", ns, "--verb", "create", "--resource", "secrets") {
			if strings.HasPrefix(e.ObjectRef.Name, "burst-") {
				burst[e.ObjectRef.Name]++
			}
		}
		return len(burst) >= n
	})
	dups := 0
	for _, name := range created {
		if burst[name] == 0 {
			t.Errorf("the create of Secret %s is not in the audit log", name)
		}
		dups += burst[name] - 1
	}
	// The API server's side: it dropped nothing (a batch it gave up on
	// counts in apiserver_audit_error_total).
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "apiserver_audit_error_total") && !strings.HasSuffix(line, " 0") {
			t.Errorf("the API server dropped audit events: %s", line)
		}
		sent = sent || strings.HasPrefix(line, "apiserver_audit_event_total ")
	}
	if !sent {
		t.Error("the API server's metrics have no apiserver_audit_event_total")
	}
	t.Logf("kill -9 during a burst: %d Secrets created, all %d found; %d events delivered twice (a batch acknowledged as the process died, retried by the API server)", n, len(burst), dups)

	// Stop cleanly: everything acknowledged is sealed.
	serve.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-serve.exited; err != nil {
		t.Fatalf("serve did not exit 0 on SIGTERM: %v\n%s", err, serve.out.String())
	}
	left, _ := filepath.Glob(filepath.Join(s.dir, "wal", "wal-*.log"))
	for _, f := range left {
		t.Errorf("WAL file %s left after a clean stop", filepath.Base(f))
	}

	out, errs, code := run(t, "--config", s.cfgDir, "audit", "verify", "--key", s.pubKey)
	if code != ExitOK || !strings.Contains(out, "VALID") {
		t.Fatalf("audit verify: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("audit verify:\n%s", out)

	// A flipped byte in a segment is named.
	var segment string
	filepath.WalkDir(filepath.Join(s.storeRoot, "objects", "audit"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "events.lbe" && segment == "" {
			segment = p
		}
		return nil
	})
	b, err := os.ReadFile(segment)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	os.Chmod(segment, 0o600)
	os.WriteFile(segment, b, 0o600)
	out, _, code = run(t, "--config", s.cfgDir, "audit", "verify", "--key", s.pubKey)
	rel, _ := filepath.Rel(filepath.Join(s.storeRoot, "objects"), segment)
	if code != ExitVerification || !strings.Contains(out, "INVALID") || !strings.Contains(out, filepath.ToSlash(rel)) {
		t.Fatalf("audit verify after a flipped byte in %s: exit %d\n%s", rel, code, out)
	}
}

// TestAuditLogFileFromAPIServer: the file mode follows a real
// kube-apiserver's audit log file (JSON, rotated at 1 MiB) while lifeboat
// is SIGKILLed and restarted; every Secret created is found by `audit
// search`, across the rotations.
func TestAuditLogFileFromAPIServer(t *testing.T) {
	s := newAuditSetup(t)
	logDir := filepath.Join(s.dir, "apiserver-audit")
	os.MkdirAll(logDir, 0o700)
	cfgFile := filepath.Join(s.cfgDir, "lifeboat.yaml")
	cfg, _ := os.ReadFile(cfgFile)
	head, _, _ := strings.Cut(string(cfg), "  webhook:")
	cfg = []byte(head + "  file: {path: " + strconv.Quote(filepath.Join(logDir, "audit.log")) + "}\n")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(s.dir, "audit-policy.yaml")
	os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"), 0o600)
	serve := startServeReplica(t, "node-a", s.args, s.flags)
	c := testenv.StartClusterWith(t, testenv.ClusterOptions{ExtraArgs: []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + filepath.Join(logDir, "audit.log"),
		"--audit-log-format=json",
		"--audit-log-maxsize=1",
		"--audit-log-maxbackup=100",
	}})
	cfgREST, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfgREST.QPS, cfgREST.Burst = 1000, 1000
	cs := kubernetes.NewForConfigOrDie(cfgREST)
	ctx := context.Background()
	const ns, total = "ehr", 2000
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("chart-%04d", i)}}, metav1.CreateOptions{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range total {
		if i == total/2 {
			serve.cmd.Process.Signal(syscall.SIGKILL)
			<-serve.exited
			serve = startServeReplica(t, "node-a", s.args, s.flags)
		}
		work <- i
	}
	close(work)
	wg.Wait()
	rotated, _ := filepath.Glob(filepath.Join(logDir, "audit-*.log"))
	if len(rotated) == 0 {
		t.Fatal("the API server did not rotate its audit log: the test does not cover rotation")
	}
	var found map[string]int
	waitUntil(t, "every create to be sealed and found", 2*time.Minute, func() bool {
		found = map[string]int{}
		for _, e := range s.search(t, "--user", "admin", "--namespace", ns, "--verb", "create", "--resource", "secrets") {
			found[e.ObjectRef.Name]++
		}
		return len(found) >= total
	})
	dups := 0
	for i := range total {
		n := found[fmt.Sprintf("chart-%04d", i)]
		if n == 0 {
			t.Errorf("the create of Secret chart-%04d is not in the audit log", i)
		}
		dups += max(0, n-1)
	}
	t.Logf("file mode: %d Secrets created across %d rotations and a SIGKILL of lifeboat; all found, %d twice (read again from the checkpoint)", total, len(rotated), dups)
	if out, errs, code := run(t, "--config", s.cfgDir, "audit", "verify", "--key", s.pubKey); code != ExitOK {
		t.Fatalf("audit verify: exit %d\n%s\n%s", code, out, errs)
	}
}

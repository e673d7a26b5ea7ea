package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/server"
	"github.com/lifeboat-dr/lifeboat/internal/service"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveReplica is one `lifeboat serve` process.
type serveReplica struct {
	identity string
	base     string
	cmd      *exec.Cmd
	out      *lockedBuffer
	exited   chan error
}

func startServeReplica(t *testing.T, identity string, global, flags []string) *serveReplica {
	t.Helper()
	port := testenv.FreePort(t)
	r := &serveReplica{identity: identity, base: "http://127.0.0.1:" + strconv.Itoa(port), out: &lockedBuffer{}, exited: make(chan error, 1)}
	argv := append(append(append([]string(nil), global...), "serve", "--identity", identity, "--listen", "127.0.0.1:"+strconv.Itoa(port)), flags...)
	r.cmd = exec.Command(os.Args[0], "-test.run=^TestCLIHelperProcess$", "-test.count=1")
	r.cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(argv, "\x1f"))
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			t.Logf("--- %s ---\n%s", identity, r.out.String())
		}
	})
	return r
}

// status reads the replica's /api/status; ok is false when it does not
// answer.
func (r *serveReplica) status() (server.Status, bool) {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(r.base + "/api/status")
	if err != nil {
		return server.Status{}, false
	}
	defer resp.Body.Close()
	var st server.Status
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return server.Status{}, false
	}
	return st, true
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leaderOf returns the one replica that says it leads, or nil.
func leaderOf(rs ...*serveReplica) *serveReplica {
	var leader *serveReplica
	for _, r := range rs {
		if st, ok := r.status(); ok && st.Leader {
			if leader != nil {
				return nil
			}
			leader = r
		}
	}
	return leader
}

// settledTicks counts the outcomes under runs/<schedule>/.
func settledTicks(t *testing.T, st store.Store, schedule string) (claims, outcomes []string) {
	t.Helper()
	for info, err := range st.List(context.Background(), "runs/"+schedule+"/") {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(info.Key, ".outcome.json") {
			outcomes = append(outcomes, strings.TrimSuffix(info.Key, ".outcome.json"))
		} else {
			claims = append(claims, strings.TrimSuffix(info.Key, ".json"))
		}
	}
	return claims, outcomes
}

// recordedTicks are the ticks (as 20060102T150405Z) with a `schedule`
// record in the log, by the records' names.
func recordedTicks(t *testing.T, st store.Store, schedule string) map[string]bool {
	t.Helper()
	recorded := map[string]bool{}
	for info, err := range st.List(context.Background(), "evidence/") {
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.Index(info.Key, "-schedule-"+schedule+"-"); i >= 0 && !strings.HasPrefix(info.Key, "evidence/seq/") {
			recorded[strings.TrimSuffix(info.Key[i+len("-schedule-"+schedule+"-"):], ".json")] = true
		}
	}
	return recorded
}

// ranTicks counts the ticks that ran and whose `schedule` record is
// appended (an outcome is written just before its record; a kill between
// the two is reconciled a minute later, longer than this test waits).
func ranTicks(t *testing.T, st store.Store, schedule string) int {
	t.Helper()
	_, outcomes := settledTicks(t, st, schedule)
	recorded := recordedTicks(t, st, schedule)
	n := 0
	for _, key := range outcomes {
		if !recorded[path.Base(key)] {
			continue
		}
		rc, err := st.Get(context.Background(), key+".outcome.json", store.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		o, err := service.ParseOutcome(data)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if o.Status == service.StatusRan {
			n++
		}
	}
	return n
}

// TestServeHAKill9: two `lifeboat serve` processes share a Lease on a real
// kube-apiserver, as a user holding only a Role on Leases in its
// namespace. The leader is SIGKILLed twice (a replacement replica joins
// each time); the other takes over within the Lease's duration. Then
// SIGTERM stops both with exit 0 and the Lease is released. Every tick of
// the whole run was claimed once and settled once with one signed
// `schedule` record, and the evidence log verifies.
func TestServeHAKill9(t *testing.T) {
	c := testenv.StartCluster(t)
	grantLeases(t, c)
	s := newRotateSetup(t)
	cfgDir := filepath.Join(s.dir, "config")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("---\napiVersion: lifeboat.dev/v1alpha1\nkind: Schedule\nmetadata: {name: often}\nspec: {cron: \"@every 2s\", backupPlan: clinic}\n")...)
	if err := os.WriteFile(filepath.Join(cfgDir, "lifeboat.yaml"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.LoadOrCreateSigner(s.signingKey); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfgDir, "--log-level", "info"}
	flags := []string{"--kubeconfig", c.RestrictedKubeconfig, "--lease-namespace", "default", "--signing-key", s.signingKey, "--grace", "30s"}
	st := s.store(t, false) // creates the store's directories; the test writes nothing

	replicas := []*serveReplica{
		startServeReplica(t, "replica-1", args, flags),
		startServeReplica(t, "replica-2", args, flags),
	}
	next := 3
	for kill := 1; kill <= 2; kill++ {
		var leader *serveReplica
		waitUntil(t, "exactly one leader", time.Minute, func() bool { leader = leaderOf(replicas...); return leader != nil })
		before := ranTicks(t, st, "often")
		waitUntil(t, fmt.Sprintf("%s to run two ticks", leader.identity), time.Minute, func() bool {
			return ranTicks(t, st, "often") >= before+2
		})
		// Kill at a moment unrelated to the ticks' writes.
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-leader.exited
		t.Logf("kill %d: SIGKILLed leader %s", kill, leader.identity)
		var rest []*serveReplica
		for _, r := range replicas {
			if r != leader {
				rest = append(rest, r)
			}
		}
		rest = append(rest, startServeReplica(t, fmt.Sprintf("replica-%d", next), args, flags))
		next++
		replicas = rest
		// Failover: a new leader within the Lease duration and its retries.
		killed := time.Now()
		waitUntil(t, "a new leader", service.LeaseDuration+service.RenewDeadline+30*time.Second, func() bool {
			l := leaderOf(replicas...)
			return l != nil
		})
		t.Logf("kill %d: new leader after %s", kill, time.Since(killed).Round(100*time.Millisecond))
	}
	var leader *serveReplica
	waitUntil(t, "a leader", time.Minute, func() bool { leader = leaderOf(replicas...); return leader != nil })
	before := ranTicks(t, st, "often")
	waitUntil(t, "two more ticks run", time.Minute, func() bool {
		return ranTicks(t, st, "often") >= before+2
	})

	// A leader killed between a tick's outcome and its record leaves the
	// record to the next leader, a minute after the outcome (§7.2): wait
	// for every outcome but the newest few seconds' to have its record.
	waitUntil(t, "every settled tick recorded", 2*time.Minute, func() bool {
		_, outcomes := settledTicks(t, st, "often")
		recorded := recordedTicks(t, st, "often")
		for _, o := range outcomes {
			tick, err := time.Parse("20060102T150405Z", path.Base(o))
			if err == nil && time.Since(tick) > 10*time.Second && !recorded[path.Base(o)] {
				return false
			}
		}
		return true
	})

	// SIGTERM: both exit 0; the leader releases the Lease.
	for _, r := range replicas {
		if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range replicas {
		select {
		case err := <-r.exited:
			if err != nil {
				t.Fatalf("%s exited with %v after SIGTERM, want 0", r.identity, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s did not exit after SIGTERM", r.identity)
		}
	}
	if holder := leaseHolder(t, c); holder != "" {
		t.Fatalf("Lease held by %q after SIGTERM, want it released", holder)
	}

	// Every claim settled once, every outcome recorded once.
	claims, outcomes := settledTicks(t, st, "often")
	if len(claims) == 0 || len(claims) != len(outcomes) {
		settled := map[string]bool{}
		for _, o := range outcomes {
			settled[o] = true
		}
		for _, c := range claims {
			if !settled[c] {
				rc, err := st.Get(context.Background(), c+".json", store.GetOptions{})
				if err == nil {
					b, _ := io.ReadAll(rc)
					rc.Close()
					t.Logf("unsettled claim %s", b)
				}
			}
		}
		t.Fatalf("%d claims and %d outcomes, want every claim settled", len(claims), len(outcomes))
	}
	if _, err := evidence.NewLog(st, nil, nil).Verify(context.Background()); err != nil {
		t.Fatalf("evidence log does not verify: %v", err)
	}
	recs := map[string]int{}
	statuses := map[string]int{}
	for _, r := range s.records(t, service.KindSchedule) {
		recs[r.ID]++
		statuses[fmt.Sprint(r.Subject["status"])]++
	}
	if len(recs) != len(outcomes) {
		t.Fatalf("%d ticks recorded, %d settled; want one record per settled tick", len(recs), len(outcomes))
	}
	for id, n := range recs {
		if n != 1 {
			t.Fatalf("tick %s has %d schedule records, want 1", id, n)
		}
	}
	t.Logf("%d ticks: %v", len(outcomes), statuses)
	if statuses[service.StatusRan] < 6 {
		t.Fatalf("only %d ticks ran, want at least 6 (two per leader)", statuses[service.StatusRan])
	}
}

// grantLeases gives testenv's restricted user a Role on Leases in
// "default": what `lifeboat serve` needs for leader election, and no more.
func grantLeases(t *testing.T, c *testenv.Cluster) {
	t.Helper()
	cs := adminClient(t, c)
	ctx := context.Background()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "lifeboat-leader-election", Namespace: "default"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
			Verbs: []string{"get", "create", "update"},
		}},
	}
	if _, err := cs.RbacV1().Roles("default").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "lifeboat-leader-election", Namespace: "default"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: testenv.RestrictedUser}},
	}
	if _, err := cs.RbacV1().RoleBindings("default").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func adminClient(t *testing.T, c *testenv.Cluster) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func leaseHolder(t *testing.T, c *testenv.Cluster) string {
	t.Helper()
	l, err := adminClient(t, c).CoordinationV1().Leases("default").Get(context.Background(), service.DefaultLeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

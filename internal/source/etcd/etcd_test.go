package etcd_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/source/etcd"
	"github.com/lifeboat-dr/lifeboat/internal/source/etcd/etcdtest"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// seed writes a small Kubernetes-like keyspace and some bulk data.
func seed(t *testing.T, ctx context.Context, cli *clientv3.Client) {
	t.Helper()
	for _, k := range []string{
		"/registry/namespaces/clinic", "/registry/namespaces/ehr",
		"/registry/secrets/clinic/db", "/registry/secrets/ehr/api-token",
		"/registry/deployments/ehr/api", "/registry/health",
	} {
		if _, err := cli.Put(ctx, k, "value of "+k); err != nil {
			t.Fatal(err)
		}
	}
	etcdtest.Fill(t, ctx, cli, "/registry/configmaps/bulk/", 40, 50<<10)
}

// inventoryOf reads every key at rev in one request and builds the
// inventory independently of ReadInventory's paging.
func inventoryOf(t *testing.T, ctx context.Context, cli *clientv3.Client, rev int64) catalog.Inventory {
	t.Helper()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(rev))
	if err != nil {
		t.Fatal(err)
	}
	b, err := catalog.NewInventoryBuilder(catalog.InventoryVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if err := b.Add(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	return b.Inventory()
}

func TestSnapshot(t *testing.T) {
	ctx := testContext(t)
	e := testenv.StartEtcd(t)
	cli := etcdtest.Client(t, e.Endpoint)
	seed(t, ctx, cli)

	before := time.Now()
	s, err := etcd.Snapshot(ctx, etcd.Options{Endpoints: []string{e.Endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, complete := s.Info()
	if complete || info.Revision <= 0 || info.Endpoint != e.Endpoint || info.TakenAt.Before(before.Add(-time.Second)) {
		t.Fatalf("info before the stream: %+v complete=%v", info, complete)
	}
	// A write after the snapshot's revision: the inventory, read at that
	// revision, must not see it.
	if _, err := cli.Put(ctx, "/registry/late/x", "late"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "snapshot.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(f, s)
	f.Close()
	if err != nil {
		t.Fatalf("read snapshot: %v", err)
	}
	info, complete = s.Info()
	if !complete {
		t.Fatal("stream ended but Info says incomplete")
	}
	if info.ClusterID == "" || info.MemberID == "" || info.DBSize <= 0 {
		t.Fatalf("info %+v", info)
	}
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) != n || n%512 != 32 {
		t.Fatalf("snapshot file: %d bytes, %v", len(data), err)
	}
	sum := sha256.Sum256(data[:n-32])
	if !bytes.Equal(sum[:], data[n-32:]) || info.SnapshotSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("snapshot digest %s, trailer %x, info %s", hex.EncodeToString(sum[:]), data[n-32:], info.SnapshotSHA256)
	}
	want := inventoryOf(t, ctx, cli, info.Revision)
	got := info.Inventory
	if from := s.InventoryFrom(); from != etcd.InventoryFromSnapshot {
		t.Errorf("inventory from %q, want it from the snapshot's bytes", from)
	}
	if got.Keys != 46 || got.Keys != want.Keys || got.Digest != want.Digest || got.Prefixes["/registry/secrets/"] != 2 ||
		got.Prefixes["/registry/configmaps/"] != 40 || got.Prefixes["/registry/health"] != 1 || got.Prefixes["/registry/late/"] != 0 {
		t.Fatalf("inventory %+v, want %+v", got, want)
	}
	status, err := cli.Status(ctx, e.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if strconv.FormatUint(status.Header.ClusterId, 16) != info.ClusterID || strconv.FormatUint(status.Header.MemberId, 16) != info.MemberID {
		t.Fatalf("IDs %s/%s, etcd says %x/%x", info.ClusterID, info.MemberID, status.Header.ClusterId, status.Header.MemberId)
	}

	// The artifact is what etcdctl snapshot save writes: etcdutl restores
	// it, checking the appended digest.
	out, err := exec.CommandContext(ctx, testenv.Binary(t, "etcdutl"), "snapshot", "restore", path,
		"--data-dir", filepath.Join(t.TempDir(), "restored")).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdutl snapshot restore: %v\n%s", err, out)
	}
}

// TestReadInventoryPages: the paged read equals a single read, whatever
// the page boundaries.
func TestReadInventoryPages(t *testing.T) {
	ctx := testContext(t)
	e := testenv.StartEtcd(t)
	cli := etcdtest.Client(t, e.Endpoint)
	etcdtest.Fill(t, ctx, cli, "/registry/pods/many/", 2500, 10)
	resp, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	got, err := etcd.ReadInventory(ctx, cli.KV, resp.Header.Revision, catalog.InventoryVersion)
	if err != nil {
		t.Fatal(err)
	}
	if want := inventoryOf(t, ctx, cli, resp.Header.Revision); got.Keys != 2500 || got.Digest != want.Digest {
		t.Fatalf("inventory %+v, want %+v", got, want)
	}
}

func TestSnapshotCutShort(t *testing.T) {
	ctx := testContext(t)
	e := testenv.StartEtcd(t)
	cli := etcdtest.Client(t, e.Endpoint)
	etcdtest.Fill(t, ctx, cli, "/registry/configmaps/bulk/", 60, 50<<10) // ~3 MB
	p := etcdtest.NewProxy(t, e.Endpoint, etcdtest.ProxyOptions{CutAfter: 1 << 20})
	s, err := etcd.Snapshot(ctx, etcd.Options{Endpoints: []string{p.Endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := io.Copy(io.Discard, s)
	if err == nil {
		t.Fatalf("a stream cut after %d bytes read as complete (%d bytes)", p.Sent(), n)
	}
	if !strings.Contains(err.Error(), p.Endpoint) {
		t.Fatalf("error does not name the endpoint: %v", err)
	}
	if _, complete := s.Info(); complete {
		t.Fatal("Info says complete after a cut stream")
	}
	t.Logf("cut after %d bytes: %v", n, err)
}

func TestSnapshotEndpointDown(t *testing.T) {
	ctx := testContext(t)
	down := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	start := time.Now()
	_, err := etcd.Snapshot(ctx, etcd.Options{Endpoints: []string{down}, DialTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), down) || !strings.Contains(err.Error(), "no answer within 1s") {
		t.Fatalf("Snapshot of a down etcd: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s to give up", d)
	}

	// With a second endpoint that answers, the snapshot comes from it.
	e := testenv.StartEtcd(t)
	s, err := etcd.Snapshot(ctx, etcd.Options{Endpoints: []string{down, e.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := io.Copy(io.Discard, s); err != nil {
		t.Fatal(err)
	}
	if info, complete := s.Info(); !complete || info.Endpoint != e.Endpoint {
		t.Fatalf("info %+v complete=%v", info, complete)
	}
}

// TestSnapshotTLS runs etcd with TLS and client-certificate
// authentication: the snapshot needs the CA and the client certificate.
func TestSnapshotTLS(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	ca, caKey := writeCA(t, dir)
	writeLeaf(t, dir, "server", ca, caKey, x509.ExtKeyUsageServerAuth)
	writeLeaf(t, dir, "client", ca, caKey, x509.ExtKeyUsageClientAuth)
	endpoint := startTLSEtcd(t, dir)

	opts := etcd.Options{
		Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second,
		CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key"),
	}
	s, err := etcd.Snapshot(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := io.Copy(io.Discard, s); err != nil {
		t.Fatal(err)
	}
	if info, complete := s.Info(); !complete || info.Revision <= 0 {
		t.Fatalf("info %+v complete=%v", info, complete)
	}

	noCert := opts
	noCert.CertFile, noCert.KeyFile = "", ""
	if _, err := etcd.Snapshot(ctx, noCert); err == nil || !strings.Contains(err.Error(), endpoint) {
		t.Fatalf("Snapshot without a client certificate: %v", err)
	}
	badCA := opts
	badCA.CAFile = filepath.Join(dir, "client.crt") // not the CA that signed the server
	if _, err := etcd.Snapshot(ctx, badCA); err == nil {
		t.Fatal("Snapshot trusting the wrong CA succeeded")
	}
	missing := opts
	missing.KeyFile = filepath.Join(dir, "nope.key")
	if _, err := etcd.Snapshot(ctx, missing); err == nil || !strings.Contains(err.Error(), "nope.key") {
		t.Fatalf("Snapshot with a missing key file: %v", err)
	}
}

func writeCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lifeboat test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", der)
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func writeLeaf(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", kder)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTLSEtcd starts bin/etcd serving clients over TLS with client
// certificate authentication, and returns its client URL.
func startTLSEtcd(t *testing.T, dir string) string {
	t.Helper()
	bin := testenv.Binary(t, "etcd")
	client := fmt.Sprintf("https://127.0.0.1:%d", testenv.FreePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	var log bytes.Buffer
	cmd := exec.Command(bin,
		"--name", "default", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "default="+peer,
		"--cert-file", filepath.Join(dir, "server.crt"), "--key-file", filepath.Join(dir, "server.key"),
		"--trusted-ca-file", filepath.Join(dir, "ca.crt"), "--client-cert-auth", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("etcd (TLS) log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := etcd.Snapshot(ctx, etcd.Options{Endpoints: []string{client}, DialTimeout: time.Second,
			CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key")})
		if err == nil {
			s.Close()
			cancel()
			return client
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("etcd with TLS did not start: %v\n%s", err, log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSnapshotTakenAtBeforeRevision: takenAt is read before the revision
// the snapshot reflects, so a write made at takenAt is in the snapshot
// (the restored data is never older than takenAt says).
func TestSnapshotTakenAtBeforeRevision(t *testing.T) {
	ctx := testContext(t)
	e := testenv.StartEtcd(t)
	cli := etcdtest.Client(t, e.Endpoint)
	seed(t, ctx, cli)
	var markRev int64
	now := func() time.Time {
		if markRev == 0 {
			resp, err := cli.Put(ctx, "/registry/marker/at-taken-at", "x")
			if err != nil {
				t.Error(err)
			} else {
				markRev = resp.Header.Revision
			}
		}
		return time.Now()
	}
	s, err := etcd.Snapshot(ctx, etcd.Options{Endpoints: []string{e.Endpoint}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, _ := s.Info()
	if markRev == 0 || info.Revision < markRev {
		t.Fatalf("snapshot at revision %d misses the write at takenAt (revision %d)", info.Revision, markRev)
	}
}

// TestSnapshotRefusesAlarmedMember: a member with an active alarm
// (NOSPACE here) is not snapshotted; the error names the alarm.
func TestSnapshotRefusesAlarmedMember(t *testing.T) {
	ctx := testContext(t)
	// An etcd with a 1 MiB backend quota, started and health-checked by
	// testenv (its log is printed if the test fails).
	e := testenv.StartEtcd(t, "--quota-backend-bytes", strconv.Itoa(1<<20))
	cli := etcdtest.Client(t, e.Endpoint)
	val := strings.Repeat("x", 64<<10)
	for i := 0; ; i++ {
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := cli.Put(pctx, "/registry/configmaps/fill/"+strconv.Itoa(i), val)
		cancel()
		if err != nil {
			if !strings.Contains(err.Error(), "space exceeded") {
				t.Fatalf("fill: %v", err)
			}
			break
		}
		if i > 1000 {
			t.Fatal("no NOSPACE alarm after 64 MiB")
		}
	}
	s, err := etcd.Snapshot(ctx, etcd.Options{Endpoints: []string{e.Endpoint}})
	if err == nil {
		s.Close()
		t.Fatal("snapshot of a member with a NOSPACE alarm")
	}
	t.Logf("err: %v", err)
	if !strings.Contains(err.Error(), "alarm:NOSPACE") {
		t.Fatalf("error does not name the alarm: %v", err)
	}
}

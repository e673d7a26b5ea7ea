package testenv

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// vaultTransit proves a Vault serves requests: it enables transit, makes
// a key and round-trips a plaintext through it.
func vaultTransit(t *testing.T, ctx context.Context, v *Vault) {
	t.Helper()
	h := http.Header{"X-Vault-Token": {v.Token}}
	if err := doJSON(ctx, http.DefaultClient, http.MethodPost, v.Address+"/v1/sys/mounts/transit", h,
		map[string]string{"type": "transit"}, nil, http.StatusNoContent, http.StatusOK); err != nil {
		t.Fatalf("enable transit: %v", err)
	}
	if err := doJSON(ctx, http.DefaultClient, http.MethodPost, v.Address+"/v1/transit/keys/lifeboat", h,
		map[string]string{"type": "aes256-gcm96"}, nil, http.StatusNoContent, http.StatusOK); err != nil {
		t.Fatalf("create transit key: %v", err)
	}
	plain := base64.StdEncoding.EncodeToString([]byte("patient record 42"))
	var enc struct {
		Data struct {
			Ciphertext string `json:"ciphertext"`
		} `json:"data"`
	}
	if err := doJSON(ctx, http.DefaultClient, http.MethodPost, v.Address+"/v1/transit/encrypt/lifeboat", h,
		map[string]string{"plaintext": plain}, &enc); err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	if !strings.HasPrefix(enc.Data.Ciphertext, "vault:v1:") {
		t.Fatalf("encrypt: ciphertext %q", enc.Data.Ciphertext)
	}
	var dec struct {
		Data struct {
			Plaintext string `json:"plaintext"`
		} `json:"data"`
	}
	if err := doJSON(ctx, http.DefaultClient, http.MethodPost, v.Address+"/v1/transit/decrypt/lifeboat", h,
		map[string]string{"ciphertext": enc.Data.Ciphertext}, &dec); err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	if dec.Data.Plaintext != plain {
		t.Fatalf("decrypt: got %q, want %q", dec.Data.Plaintext, plain)
	}
}

func TestVault(t *testing.T) {
	start := time.Now()
	v := StartVault(t)
	t.Logf("StartVault took %s", time.Since(start).Round(time.Millisecond))
	vaultTransit(t, testContext(t), v)
}

func TestVaultRaft(t *testing.T) {
	start := time.Now()
	v := StartVaultRaft(t)
	t.Logf("StartVaultRaft took %s", time.Since(start).Round(time.Millisecond))
	ctx := testContext(t)
	vaultTransit(t, ctx, v)

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.Address+"/v1/sys/storage/raft/snapshot", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("raft snapshot: %v", err)
	}
	snap, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(snap) == 0 {
		t.Fatalf("raft snapshot: status %s, %d bytes, %v", resp.Status, len(snap), err)
	}
	t.Logf("raft snapshot: %d bytes", len(snap))

	// A restarted server comes back sealed; Ready unseals it.
	start = time.Now()
	v.Restart(v.Ready)
	t.Logf("restart and unseal took %s", time.Since(start).Round(time.Millisecond))
	h := http.Header{"X-Vault-Token": {v.Token}}
	if err := doJSON(ctx, http.DefaultClient, http.MethodGet, v.Address+"/v1/transit/keys/lifeboat", h, nil, nil); err != nil {
		t.Fatalf("after restart: read transit key: %v", err)
	}
}

func TestKMS(t *testing.T) {
	start := time.Now()
	k := StartKMS(t)
	t.Logf("StartKMS took %s", time.Since(start).Round(time.Millisecond))
	ctx := testContext(t)
	var created struct {
		KeyMetadata struct {
			KeyId string
			Arn   string
		}
	}
	if err := k.call(ctx, "CreateKey", map[string]string{"Description": "lifeboat test"}, &created); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if created.KeyMetadata.KeyId == "" || !strings.HasPrefix(created.KeyMetadata.Arn, "arn:aws:kms:"+k.Region+":"+k.AccountID+":key/") {
		t.Fatalf("CreateKey: metadata %+v", created.KeyMetadata)
	}
	plain := []byte("patient record 42")
	var enc struct{ CiphertextBlob []byte }
	if err := k.call(ctx, "Encrypt", map[string]any{"KeyId": created.KeyMetadata.KeyId, "Plaintext": plain}, &enc); err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	var dec struct{ Plaintext []byte }
	if err := k.call(ctx, "Decrypt", map[string]any{"CiphertextBlob": enc.CiphertextBlob}, &dec); err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if !bytes.Equal(dec.Plaintext, plain) {
		t.Fatalf("Decrypt: got %q, want %q", dec.Plaintext, plain)
	}
}

// etcdPut and etcdGet use etcd's v3 JSON gateway.
func etcdPut(t *testing.T, ctx context.Context, e *Etcd, key string, value []byte) {
	t.Helper()
	if err := doJSON(ctx, http.DefaultClient, http.MethodPost, e.Endpoint+"/v3/kv/put", nil,
		map[string][]byte{"key": []byte(key), "value": value}, nil); err != nil {
		t.Fatalf("etcd put %s: %v", key, err)
	}
}

func etcdGet(t *testing.T, ctx context.Context, e *Etcd, key string) []byte {
	t.Helper()
	var r struct {
		Kvs []struct {
			Key, Value []byte
		} `json:"kvs"`
	}
	if err := doJSON(ctx, http.DefaultClient, http.MethodPost, e.Endpoint+"/v3/kv/range", nil,
		map[string][]byte{"key": []byte(key)}, &r); err != nil {
		t.Fatalf("etcd range %s: %v", key, err)
	}
	if len(r.Kvs) != 1 {
		t.Fatalf("etcd range %s: %d keys", key, len(r.Kvs))
	}
	return r.Kvs[0].Value
}

func TestEtcd(t *testing.T) {
	start := time.Now()
	e := StartEtcd(t)
	t.Logf("StartEtcd took %s", time.Since(start).Round(time.Millisecond))
	ctx := testContext(t)
	etcdPut(t, ctx, e, "/lifeboat/test", []byte("hello"))
	if got := etcdGet(t, ctx, e, "/lifeboat/test"); string(got) != "hello" {
		t.Fatalf("etcd get: %q", got)
	}
}

func TestCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t)
	t.Logf("StartCluster took %s", time.Since(start).Round(time.Millisecond))
	ctx := testContext(t)
	client := c.Client()

	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]string{"name": "clinic"}}
	if err := doJSON(ctx, client, http.MethodPost, c.Server+"/api/v1/namespaces", nil, ns, nil, http.StatusCreated); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	secret := map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]string{"name": "db", "namespace": "clinic"},
		"stringData": map[string]string{"password": "s3cret-health-data"},
	}
	if err := doJSON(ctx, client, http.MethodPost, c.Server+"/api/v1/namespaces/clinic/secrets", nil, secret, nil, http.StatusCreated); err != nil {
		t.Fatalf("create secret: %v", err)
	}
	var got struct {
		Data map[string][]byte `json:"data"`
	}
	if err := doJSON(ctx, client, http.MethodGet, c.Server+"/api/v1/namespaces/clinic/secrets/db", nil, nil, &got); err != nil {
		t.Fatalf("get secret: %v", err)
	}
	if string(got.Data["password"]) != "s3cret-health-data" {
		t.Fatalf("get secret: data %q", got.Data)
	}

	raw := etcdGet(t, ctx, c.Etcd, c.EtcdPrefix+"/secrets/clinic/db")
	if !bytes.HasPrefix(raw, []byte("k8s:enc:aescbc:v1:key1:")) {
		t.Fatalf("secret in etcd is not aescbc-encrypted: %q", raw[:min(len(raw), 64)])
	}
	if bytes.Contains(raw, []byte("s3cret-health-data")) {
		t.Fatal("secret in etcd holds the plaintext")
	}

	kc, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(c.Kubeconfig); st.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v", st.Mode().Perm())
	}
	for _, want := range []string{c.Server, c.CAFile, c.Token} {
		if !strings.Contains(string(kc), want) {
			t.Errorf("kubeconfig lacks %q", want)
		}
	}
}

package awskms_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/awskms"
	"github.com/lifeboat-dr/lifeboat/internal/keys/keystest"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

var aliasSeq atomic.Int64

func creds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider("AKIDLIFEBOATTEST", "secret", "")
}

func opts(k *testenv.KMS) awskms.Options {
	return awskms.Options{Region: k.Region, Endpoint: k.Endpoint, Credentials: creds()}
}

// rawClient is a KMS client for acting out of band, as an operator would.
func rawClient(t *testing.T, k *testenv.KMS) *kms.Client {
	t.Helper()
	return kms.New(kms.Options{Region: k.Region, BaseEndpoint: aws.String(k.Endpoint), Credentials: creds()})
}

// newAlias returns a bootstrapped alias-strategy provider on a fresh alias.
func newAlias(t *testing.T, k *testenv.KMS) *awskms.Provider {
	t.Helper()
	o := opts(k)
	o.Alias = fmt.Sprintf("alias/lifeboat-test-%d", aliasSeq.Add(1))
	p, err := awskms.New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := p.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap %s: %v", o.Alias, err)
	}
	return p
}

func dataKey(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

func TestConformanceAlias(t *testing.T) {
	k := testenv.StartKMS(t)
	keystest.Run(t, keystest.Harness{New: func(t *testing.T) keys.Provider { return newAlias(t, k) }})
}

func TestAliasMissingNeedsBootstrap(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	o := opts(k)
	o.Alias = "alias/lifeboat-not-yet"
	p, err := awskms.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wrap(ctx, dataKey(t), []byte("c")); !errors.Is(err, keys.ErrKeyNotFound) || !strings.Contains(err.Error(), o.Alias) {
		t.Fatalf("Wrap before Bootstrap: got %v, want ErrKeyNotFound naming the alias", err)
	}
	if _, err := p.Versions(ctx); !errors.Is(err, keys.ErrKeyNotFound) {
		t.Fatalf("Versions before Bootstrap: got %v, want ErrKeyNotFound", err)
	}
	v1, err := p.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := p.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Ref != v2.Ref || !v2.Primary {
		t.Fatalf("second Bootstrap returned %+v, want the first's %+v", v2, v1)
	}
	vs, err := p.Versions(ctx)
	if err != nil || len(vs) != 1 {
		t.Fatalf("Versions after two Bootstraps: %v, %v; want one version", vs, err)
	}
}

func TestAliasAdoptsExistingKey(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	c := rawClient(t, k)
	ck, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(ck.KeyMetadata.KeyId)
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/existing"), TargetKeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	o := opts(k)
	o.Alias = "alias/existing"
	p, err := awskms.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Ref.Version != id {
		t.Fatalf("Bootstrap adopted %s, want the alias's key %s", v.Ref.Version, id)
	}
	nv, err := p.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := p.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Ref.Version != id || vs[1].Ref != nv.Ref || !vs[1].Primary || vs[0].Primary {
		t.Fatalf("Versions after adopting and rotating: %+v", vs)
	}
}

func TestWrapRefAndContext(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	p := newAlias(t, k)
	dk := dataKey(t)
	aad := []byte("lifeboat.dev/dek/v1\x00backup-1")
	w, err := p.Wrap(ctx, dk, aad)
	if err != nil {
		t.Fatal(err)
	}
	if w.KEK.Provider != "awskms" || w.KEK.Key != p.Key() || strings.HasPrefix(w.KEK.Version, "arn:") || len(w.KEK.Version) != 36 {
		t.Fatalf("Ref %+v: want awskms, the alias, and the bare KMS key ID", w.KEK)
	}
	// The KMS ciphertext is bound to the encryption context: KMS itself
	// refuses it without the context (not only lifeboat's commitment).
	blob := w.Ciphertext[1 : len(w.Ciphertext)-32]
	c := rawClient(t, k)
	if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, KeyId: aws.String(w.KEK.Version)}); err == nil {
		t.Fatal("KMS Decrypt without the encryption context succeeded")
	}
	out, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, KeyId: aws.String(w.KEK.Version),
		EncryptionContext: map[string]string{awskms.ContextKey: "bGlmZWJvYXQuZGV2L2Rlay92MQBiYWNrdXAtMQ=="}})
	if err != nil || !bytes.Equal(out.Plaintext, dk) {
		t.Fatalf("KMS Decrypt with the documented encryption context: %v", err)
	}
	// A key object copied to another backup does not unwrap.
	_, err = p.Unwrap(ctx, w, []byte("lifeboat.dev/dek/v1\x00backup-2"))
	if !errors.Is(err, keys.ErrUnwrap) || !strings.Contains(err.Error(), w.KEK.String()) {
		t.Fatalf("Unwrap in another backup's context: got %v, want ErrUnwrap naming %s", err, w.KEK)
	}
}

func TestDisabledOutOfBand(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	p := newAlias(t, k)
	dk := dataKey(t)
	w, err := p.Wrap(ctx, dk, []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	c := rawClient(t, k)
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(w.KEK.Version)}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Unwrap(ctx, w, []byte("c"))
	if !errors.Is(err, keys.ErrVersionRetired) {
		t.Fatalf("Unwrap under a key disabled out of band: got %v, want ErrVersionRetired", err)
	}
	t.Logf("disabled: %v", err)
	for _, want := range []string{"awskms", p.Key(), w.KEK.Version} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name %q", err, want)
		}
	}
	vs, err := p.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if vs[0].Ref != w.KEK || vs[0].State != keys.StateRetired {
		t.Fatalf("Versions: first is %+v, want %s retired", vs[0], w.KEK)
	}
	// Pending deletion is retired too.
	if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(w.KEK.Version)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(w.KEK.Version), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Unwrap(ctx, w, []byte("c")); !errors.Is(err, keys.ErrVersionRetired) || !strings.Contains(err.Error(), w.KEK.String()) {
		t.Fatalf("Unwrap under a key pending deletion: got %v, want ErrVersionRetired naming %s", err, w.KEK)
	}
}

func TestPrimaryDisabledOutOfBand(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	p := newAlias(t, k)
	v, err := p.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rawClient(t, k).DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(v[0].Ref.Version)}); err != nil {
		t.Fatal(err)
	}
	dk := dataKey(t)
	_, err = p.Wrap(ctx, dk, []byte("c"))
	if !errors.Is(err, keys.ErrVersionRetired) || !strings.Contains(err.Error(), p.Key()) {
		t.Fatalf("Wrap under a disabled primary: got %v, want ErrVersionRetired naming the alias", err)
	}
}

func TestAliasDeletedOutOfBand(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	p := newAlias(t, k)
	w, err := p.Wrap(ctx, dataKey(t), []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	c := rawClient(t, k)
	if _, err := c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String(p.Key())}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wrap(ctx, dataKey(t), []byte("c")); !errors.Is(err, keys.ErrKeyNotFound) || !strings.Contains(err.Error(), p.Key()) {
		t.Fatalf("Wrap after the alias was deleted: got %v, want ErrKeyNotFound naming the alias", err)
	}
	// The version still unwraps: Unwrap names the key, not the alias.
	if _, err := p.Unwrap(ctx, w, []byte("c")); err != nil {
		t.Fatalf("Unwrap after the alias was deleted: %v", err)
	}
}

func TestManaged(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	c := rawClient(t, k)
	ck, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(ck.KeyMetadata.KeyId)
	if _, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	o := opts(k)
	o.KeyID = id
	p, err := awskms.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if p.Strategy() != awskms.StrategyManaged {
		t.Fatalf("strategy %s, want managed", p.Strategy())
	}
	bv, err := p.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dk := dataKey(t)
	aad := []byte("lifeboat.dev/dek/v1\x00backup-m")
	w, err := p.Wrap(ctx, dk, aad)
	if err != nil {
		t.Fatal(err)
	}
	if w.KEK != (keys.Ref{Provider: "awskms", Key: id, Version: id}) || w.KEK != bv.Ref {
		t.Fatalf("managed Ref %+v, want key and version %s", w.KEK, id)
	}
	got, err := p.Unwrap(ctx, w, aad)
	if err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("Unwrap: %v", err)
	}
	if _, err := p.Unwrap(ctx, w, []byte("lifeboat.dev/dek/v1\x00backup-n")); !errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("Unwrap in another context: got %v, want ErrUnwrap", err)
	}
	vs, err := p.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || !vs[0].Primary || vs[0].State != keys.StateEnabled || vs[0].Ref != w.KEK || vs[0].Created.IsZero() {
		t.Fatalf("managed Versions: %+v, want one enabled primary %s", vs, w.KEK)
	}
	// local-kms reports no CurrentKeyMaterialId, so Rotate refuses before
	// calling RotateKeyOnDemand (which local-kms answers with 501; see
	// TestManagedRotateNotImplemented).
	_, err = p.Rotate(ctx)
	if err == nil {
		t.Fatal("Rotate on local-kms succeeded; local-kms does not implement RotateKeyOnDemand")
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Rotate: %v does not wrap errors.ErrUnsupported", err)
	}
	t.Logf("managed Rotate on local-kms: %v", err)
	for _, want := range []string{"RotateKeyOnDemand", "CurrentKeyMaterialId", id, "alias strategy"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Rotate error %q does not say %q", err, want)
		}
	}
	err = p.Retire(ctx, id)
	t.Logf("managed Retire: %v", err)
	if !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, keys.ErrRetirePrimary) || !strings.Contains(err.Error(), "material") {
		t.Fatalf("managed Retire: got %v, want an explanation wrapping ErrUnsupported and ErrRetirePrimary", err)
	}
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Unwrap(ctx, w, aad)
	if !errors.Is(err, keys.ErrVersionRetired) || !strings.Contains(err.Error(), w.KEK.String()) {
		t.Fatalf("managed Unwrap under a disabled key: got %v, want ErrVersionRetired naming %s", err, w.KEK)
	}
}

func TestManagedMissingKey(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	o := opts(k)
	o.KeyID = "0b7e0c35-1c6e-4b43-9b0f-8a3a4b5c6d7e"
	p, err := awskms.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Bootstrap(ctx); !errors.Is(err, keys.ErrKeyNotFound) || !strings.Contains(err.Error(), o.KeyID) {
		t.Fatalf("Bootstrap of a missing key: got %v, want ErrKeyNotFound naming it", err)
	}
	if _, err := p.Wrap(ctx, dataKey(t), nil); !errors.Is(err, keys.ErrKeyNotFound) || !strings.Contains(err.Error(), o.KeyID) {
		t.Fatalf("Wrap with a missing key: got %v, want ErrKeyNotFound naming it", err)
	}
}

func TestOptions(t *testing.T) {
	ctx := context.Background()
	for _, o := range []awskms.Options{
		{},
		{KeyID: "k", Alias: "alias/a"},
		{Alias: "nope"},
		{Alias: "alias/aws/s3"},
		{KeyID: "k", Strategy: awskms.StrategyAlias},
		{Alias: "alias/a", Strategy: awskms.StrategyManaged},
		{Alias: "alias/a", Strategy: "yearly"},
	} {
		if _, err := awskms.New(ctx, o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// local-kms has no IAM, so it never denies access to a key it holds. This
// test checks the mapping of KMS's AccessDeniedException with a stub that
// answers every call with it, as KMS does for a caller without permission.
func TestAccessDeniedMapping(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"__type":"AccessDeniedException","Message":"User: arn:aws:iam::111122223333:user/x is not authorized to perform: kms:Decrypt"}`)
	}))
	defer srv.Close()
	ctx := context.Background()
	p, err := awskms.New(ctx, awskms.Options{Alias: "alias/denied", Region: "us-east-1", Endpoint: srv.URL, Credentials: creds()})
	if err != nil {
		t.Fatal(err)
	}
	dk := dataKey(t)
	if _, err := p.Wrap(ctx, dk, []byte("c")); !errors.Is(err, keys.ErrAccessDenied) || !strings.Contains(err.Error(), "alias/denied") {
		t.Fatalf("Wrap: got %v, want ErrAccessDenied naming the alias", err)
	}
	ref := keys.Ref{Provider: "awskms", Key: "alias/denied", Version: "1234abcd-12ab-34cd-56ef-1234567890ab"}
	ct := append(append([]byte{1}, make([]byte, 40)...), make([]byte, 32)...)
	_, err = p.Unwrap(ctx, keys.Wrapped{KEK: ref, Ciphertext: ct}, []byte("c"))
	if !errors.Is(err, keys.ErrAccessDenied) || !strings.Contains(err.Error(), ref.String()) {
		t.Fatalf("Unwrap: got %v, want ErrAccessDenied naming %s", err, ref)
	}
	t.Logf("access denied: %v", err)
	if _, err := p.Versions(ctx); !errors.Is(err, keys.ErrAccessDenied) {
		t.Fatalf("Versions: got %v, want ErrAccessDenied", err)
	}
	if err := p.Retire(ctx, ref.Version); !errors.Is(err, keys.ErrAccessDenied) {
		t.Fatalf("Retire: got %v, want ErrAccessDenied", err)
	}
}

// local-kms does not authenticate the key ARN at the head of its
// ciphertext blob when Decrypt names the key, so a changed byte there
// decrypts; the provider's key commitment refuses it.
func TestCommitmentCatchesWhatTheServerMisses(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	p := newAlias(t, k)
	dk := dataKey(t)
	w, err := p.Wrap(ctx, dk, []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	c := bytes.Clone(w.Ciphertext)
	c[10] ^= 0x01 // inside the blob's key ARN
	blob := c[1 : len(c)-32]
	if _, err := rawClient(t, k).Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, KeyId: aws.String(w.KEK.Version),
		EncryptionContext: map[string]string{awskms.ContextKey: "Yw=="}}); err == nil {
		t.Log("local-kms decrypted a blob with a changed key ARN byte")
	}
	if _, err := p.Unwrap(ctx, keys.Wrapped{KEK: w.KEK, Ciphertext: c}, []byte("c")); !errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("Unwrap of a blob with a changed key ARN byte: got %v, want ErrUnwrap", err)
	}
}

// TestPlantedKeyObjectRefused: a key object's reference is not
// authenticated, so Unwrap must refuse a version that is not provably this
// alias's: an ARN (which could name another account's key) or a key in the
// account that is not tagged with the alias, even when the ciphertext and
// its commitment are valid for that key.
func TestPlantedKeyObjectRefused(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	p := newAlias(t, k)
	dk := dataKey(t)
	aad := []byte("lifeboat.dev/dek/v1\x00b1")
	w, err := p.Wrap(ctx, dk, aad)
	if err != nil {
		t.Fatal(err)
	}
	arn := w
	arn.KEK.Version = "arn:aws:kms:" + k.Region + ":" + k.AccountID + ":key/" + w.KEK.Version
	if _, err := p.Unwrap(ctx, arn, aad); !errors.Is(err, keys.ErrVersionNotFound) {
		t.Fatalf("Unwrap with an ARN as version: got %v, want ErrVersionNotFound", err)
	}
	// An attacker's key in the same account, not tagged with the alias:
	// a wrap made under it (through a second provider whose alias points
	// at it) must not unwrap through p.
	other, err := awskms.New(ctx, func() awskms.Options { o := opts(k); o.Alias = "alias/attacker"; return o }())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	planted, err := other.Wrap(ctx, dk, aad)
	if err != nil {
		t.Fatal(err)
	}
	planted.KEK.Key = p.Key()
	if _, err := p.Unwrap(ctx, planted, aad); !errors.Is(err, keys.ErrVersionNotFound) {
		t.Fatalf("Unwrap of a key object planted under another key: got %v, want ErrVersionNotFound", err)
	}
}

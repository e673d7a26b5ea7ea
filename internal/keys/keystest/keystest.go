package keystest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

// Harness tells the suite how to make a provider.
type Harness struct {
	// New returns a provider with one fresh key, used by one subtest only.
	New func(t *testing.T) keys.Provider
}

// Run runs the conformance suite against the provider h makes.
func Run(t *testing.T, h Harness) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, h.New(t)) })
	t.Run("ContextBinding", func(t *testing.T) { testContextBinding(t, h.New(t)) })
	t.Run("Tamper", func(t *testing.T) { testTamper(t, h.New(t)) })
	t.Run("Versions", func(t *testing.T) { testVersions(t, h.New(t)) })
	t.Run("RotateKeepsOldReadable", func(t *testing.T) { testRotate(t, h.New(t)) })
	t.Run("TenRotations", func(t *testing.T) { testTenRotations(t, h.New(t)) })
	t.Run("Retire", func(t *testing.T) { testRetire(t, h.New(t)) })
	t.Run("UnknownVersion", func(t *testing.T) { testUnknownVersion(t, h.New(t)) })
	t.Run("ConcurrentWrap", func(t *testing.T) { testConcurrent(t, h.New(t)) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelled(t, h.New(t)) })
}

func dataKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// noSecret fails the test when s contains the key in raw, hex or base64 form.
func noSecret(t *testing.T, what, s string, key []byte) {
	t.Helper()
	for _, form := range []string{string(key), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), base64.RawStdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key)} {
		if strings.Contains(s, form) {
			t.Fatalf("%s contains the data key", what)
		}
	}
}

func mustWrap(t *testing.T, p keys.Provider, dk, aad []byte) keys.Wrapped {
	t.Helper()
	w, err := p.Wrap(context.Background(), dk, aad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	return w
}

func mustUnwrap(t *testing.T, p keys.Provider, w keys.Wrapped, aad, want []byte) {
	t.Helper()
	got, err := p.Unwrap(context.Background(), w, aad)
	if err != nil {
		t.Fatalf("Unwrap %s: %v", w.KEK, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Unwrap %s returned a different key", w.KEK)
	}
}

func primary(t *testing.T, p keys.Provider) keys.Version {
	t.Helper()
	vs, err := p.Versions(context.Background())
	if err != nil {
		t.Fatalf("Versions: %v", err)
	}
	var out []keys.Version
	for _, v := range vs {
		if v.Primary {
			out = append(out, v)
		}
	}
	if len(out) != 1 {
		t.Fatalf("Versions: %d primary versions, want exactly 1", len(out))
	}
	return out[0]
}

func testRoundTrip(t *testing.T, p keys.Provider) {
	dk := dataKey(t)
	aad := []byte("lifeboat.dev/dek/v1\x00backup-1")
	w := mustWrap(t, p, dk, aad)
	if w.KEK.Provider == "" || w.KEK.Key == "" || w.KEK.Version == "" {
		t.Fatalf("Wrap returned an incomplete reference %+v", w.KEK)
	}
	if w.KEK != primary(t, p).Ref {
		t.Fatalf("Wrap used %s, want the primary %s", w.KEK, primary(t, p).Ref)
	}
	if bytes.Contains(w.Ciphertext, dk) {
		t.Fatal("wrapped key contains the plaintext data key")
	}
	noSecret(t, "wrapped key", string(w.Ciphertext), dk)
	mustUnwrap(t, p, w, aad, dk)
	w2 := mustWrap(t, p, dk, aad)
	if bytes.Equal(w.Ciphertext, w2.Ciphertext) {
		t.Fatal("two wraps of the same key are identical; wrapping must be randomised")
	}
	mustUnwrap(t, p, w2, aad, dk)
}

func testContextBinding(t *testing.T, p keys.Provider) {
	dk := dataKey(t)
	w := mustWrap(t, p, dk, []byte("lifeboat.dev/dek/v1\x00backup-a"))
	_, err := p.Unwrap(context.Background(), w, []byte("lifeboat.dev/dek/v1\x00backup-b"))
	if !errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("Unwrap with another context: got %v, want ErrUnwrap", err)
	}
	noSecret(t, "error", err.Error(), dk)
}

func testTamper(t *testing.T, p keys.Provider) {
	dk := dataKey(t)
	aad := []byte("ctx")
	w := mustWrap(t, p, dk, aad)
	for _, i := range []int{0, len(w.Ciphertext) / 2, len(w.Ciphertext) - 1} {
		c := bytes.Clone(w.Ciphertext)
		c[i] ^= 0x01
		_, err := p.Unwrap(context.Background(), keys.Wrapped{KEK: w.KEK, Ciphertext: c}, aad)
		if !errors.Is(err, keys.ErrUnwrap) {
			t.Fatalf("Unwrap of a key with byte %d flipped: got %v, want ErrUnwrap", i, err)
		}
		noSecret(t, "error", err.Error(), dk)
	}
	_, err := p.Unwrap(context.Background(), keys.Wrapped{KEK: w.KEK, Ciphertext: w.Ciphertext[:len(w.Ciphertext)-1]}, aad)
	if !errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("Unwrap of a truncated wrapped key: got %v, want ErrUnwrap", err)
	}
	if _, err := p.Unwrap(context.Background(), keys.Wrapped{KEK: w.KEK}, aad); !errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("Unwrap of an empty wrapped key: got %v, want ErrUnwrap", err)
	}
	// A valid ciphertext presented as another (existing) version.
	if _, err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	swapped := keys.Wrapped{KEK: primary(t, p).Ref, Ciphertext: w.Ciphertext}
	if _, err := p.Unwrap(context.Background(), swapped, aad); err == nil {
		t.Fatal("Unwrap of a ciphertext under a version that did not wrap it succeeded")
	}
}

func testVersions(t *testing.T, p keys.Provider) {
	vs, err := p.Versions(context.Background())
	if err != nil {
		t.Fatalf("Versions: %v", err)
	}
	if len(vs) == 0 {
		t.Fatal("Versions: none")
	}
	for _, v := range vs {
		if v.State != keys.StateEnabled {
			t.Fatalf("fresh key version %s is %s, want enabled", v.Ref, v.State)
		}
		if v.Created.IsZero() {
			t.Fatalf("version %s has no creation time", v.Ref)
		}
	}
	primary(t, p)
}

func testRotate(t *testing.T, p keys.Provider) {
	ctx := context.Background()
	before, err := p.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := primary(t, p)
	dk := dataKey(t)
	w1 := mustWrap(t, p, dk, []byte("c"))
	nv, err := p.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if !nv.Primary || nv.State != keys.StateEnabled || nv.Ref == old.Ref {
		t.Fatalf("Rotate returned %+v; want a new enabled primary version (old %s)", nv, old.Ref)
	}
	if got := primary(t, p); got.Ref != nv.Ref {
		t.Fatalf("primary after Rotate is %s, want %s", got.Ref, nv.Ref)
	}
	after, err := p.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before)+1 {
		t.Fatalf("Versions after Rotate: %d, want %d", len(after), len(before)+1)
	}
	if after[len(after)-1].Ref != nv.Ref {
		t.Fatalf("Versions not oldest first: last is %s, want %s", after[len(after)-1].Ref, nv.Ref)
	}
	w2 := mustWrap(t, p, dk, []byte("c"))
	if w2.KEK != nv.Ref {
		t.Fatalf("Wrap after Rotate used %s, want %s", w2.KEK, nv.Ref)
	}
	mustUnwrap(t, p, w1, []byte("c"), dk)
	mustUnwrap(t, p, w2, []byte("c"), dk)
}

func testTenRotations(t *testing.T, p keys.Provider) {
	type epoch struct {
		w  keys.Wrapped
		dk []byte
	}
	var epochs []epoch
	for i := 0; i <= 10; i++ {
		dk := dataKey(t)
		epochs = append(epochs, epoch{mustWrap(t, p, dk, []byte("backup")), dk})
		if i < 10 {
			if _, err := p.Rotate(context.Background()); err != nil {
				t.Fatalf("Rotate %d: %v", i+1, err)
			}
		}
	}
	seen := map[keys.Ref]bool{}
	for _, e := range epochs {
		seen[e.w.KEK] = true
		mustUnwrap(t, p, e.w, []byte("backup"), e.dk)
	}
	if len(seen) != 11 {
		t.Fatalf("11 epochs used %d distinct KEK versions, want 11", len(seen))
	}
}

func testRetire(t *testing.T, p keys.Provider) {
	ctx := context.Background()
	dk := dataKey(t)
	w1 := mustWrap(t, p, dk, []byte("c"))
	if _, err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	w2 := mustWrap(t, p, dk, []byte("c"))
	if _, err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	w3 := mustWrap(t, p, dk, []byte("c"))

	err := p.Retire(ctx, primary(t, p).Ref.Version)
	if !errors.Is(err, keys.ErrRetirePrimary) {
		t.Fatalf("Retire primary: got %v, want ErrRetirePrimary", err)
	}
	if err := p.Retire(ctx, w1.KEK.Version); err != nil {
		t.Fatalf("Retire %s: %v", w1.KEK, err)
	}
	_, err = p.Unwrap(ctx, w1, []byte("c"))
	if !errors.Is(err, keys.ErrVersionRetired) {
		t.Fatalf("Unwrap with retired %s: got %v, want ErrVersionRetired", w1.KEK, err)
	}
	if !strings.Contains(err.Error(), w1.KEK.String()) {
		t.Fatalf("error %q does not name the key and version %s", err, w1.KEK)
	}
	noSecret(t, "error", err.Error(), dk)
	mustUnwrap(t, p, w2, []byte("c"), dk)
	mustUnwrap(t, p, w3, []byte("c"), dk)
	vs, err := p.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		want := keys.StateEnabled
		if v.Ref == w1.KEK {
			want = keys.StateRetired
		}
		if v.State != want {
			t.Fatalf("version %s is %s, want %s", v.Ref, v.State, want)
		}
	}
}

func testUnknownVersion(t *testing.T, p keys.Provider) {
	ctx := context.Background()
	w := mustWrap(t, p, dataKey(t), []byte("c"))
	w.KEK.Version = "999999"
	_, err := p.Unwrap(ctx, w, []byte("c"))
	if !errors.Is(err, keys.ErrVersionNotFound) {
		t.Fatalf("Unwrap with unknown version: got %v, want ErrVersionNotFound", err)
	}
	if !strings.Contains(err.Error(), "999999") {
		t.Fatalf("error %q does not name the version", err)
	}
	if err := p.Retire(ctx, "999999"); !errors.Is(err, keys.ErrVersionNotFound) {
		t.Fatalf("Retire unknown version: got %v, want ErrVersionNotFound", err)
	}
}

func testConcurrent(t *testing.T, p keys.Provider) {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dk := make([]byte, 32)
			rand.Read(dk) // crypto/rand.Read never fails (Go 1.24+)
			w, err := p.Wrap(context.Background(), dk, []byte("c"))
			if err != nil {
				errs <- err
				return
			}
			got, err := p.Unwrap(context.Background(), w, []byte("c"))
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, dk) {
				errs <- errors.New("concurrent unwrap returned a different key")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testCancelled(t *testing.T, p keys.Provider) {
	w := mustWrap(t, p, dataKey(t), []byte("c"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Wrap(ctx, dataKey(t), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wrap with a cancelled context: got %v, want context.Canceled", err)
	}
	if _, err := p.Unwrap(ctx, w, []byte("c")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Unwrap with a cancelled context: got %v, want context.Canceled", err)
	}
	if _, err := p.Rotate(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Rotate with a cancelled context: got %v, want context.Canceled", err)
	}
}

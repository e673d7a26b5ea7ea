package rotation_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// managed is a provider that rotates key material under one unchanged
// version, as AWS KMS does with the managed strategy: its only version is
// "k1", and each rotation gives it a new generation. Underneath, each
// generation is a version of a local keyring, named inside the ciphertext
// (as KMS names its material inside its blob).
type managed struct {
	inner *local.Keyring
}

var managedRef = keys.Ref{Provider: "managedfake", Key: "clinic-kek", Version: "k1"}

func (m *managed) generation(ctx context.Context) (keys.Version, error) {
	vs, err := m.inner.Versions(ctx)
	if err != nil {
		return keys.Version{}, err
	}
	for _, v := range vs {
		if v.Primary {
			return keys.Version{Ref: managedRef, Created: vs[0].Created, State: keys.StateEnabled, Primary: true,
				Generation: "material-" + v.Ref.Version}, nil
		}
	}
	return keys.Version{}, errors.New("no primary")
}

func (m *managed) Wrap(ctx context.Context, dk, aad []byte) (keys.Wrapped, error) {
	w, err := m.inner.Wrap(ctx, dk, aad)
	if err != nil {
		return keys.Wrapped{}, err
	}
	return keys.Wrapped{KEK: managedRef, Ciphertext: append([]byte(w.KEK.Version+":"), w.Ciphertext...)}, nil
}

func (m *managed) Unwrap(ctx context.Context, w keys.Wrapped, aad []byte) ([]byte, error) {
	if w.KEK != managedRef {
		return nil, fmt.Errorf("unwrap with %s: %w", w.KEK, keys.ErrVersionNotFound)
	}
	gen, ct, ok := bytes.Cut(w.Ciphertext, []byte(":"))
	if !ok {
		return nil, keys.ErrUnwrap
	}
	in := keys.Ref{Provider: local.ProviderType, Key: "test-kek", Version: string(gen)}
	return m.inner.Unwrap(ctx, keys.Wrapped{KEK: in, Ciphertext: ct}, aad)
}

func (m *managed) Rotate(ctx context.Context) (keys.Version, error) {
	if _, err := m.inner.Rotate(ctx); err != nil {
		return keys.Version{}, err
	}
	return m.generation(ctx)
}

func (m *managed) Versions(ctx context.Context) ([]keys.Version, error) {
	v, err := m.generation(ctx)
	if err != nil {
		return nil, err
	}
	return []keys.Version{v}, nil
}

func (m *managed) Retire(context.Context, string) error { return keys.ErrRetirePrimary }

// innerVersion returns the local version (material) a stored key object
// was wrapped with.
func innerVersion(t *testing.T, st store.Store, key string) string {
	t.Helper()
	rc, err := st.Get(context.Background(), key, store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ko, err := envelope.ReadKeyObject(rc)
	if err != nil {
		t.Fatal(err)
	}
	gen, _, _ := bytes.Cut(ko.Wrapped, []byte(":"))
	return string(gen)
}

// TestManagedRotationDoesNotCollide: a rotation that keeps the version
// (new material under "k1") rewraps every backup into a new key object
// at the generation's name, next to the original one (same KEK reference,
// plain name) that stays as it was; a rerun finds the new objects; every
// backup opens, and the restore path picks a wrap under the new material.
func TestManagedRotationDoesNotCollide(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p := &managed{inner: e.keyring}
	e.keyring = nil
	var ids []string
	for range 3 {
		ids = append(ids, e.backupWith(t, p))
	}
	plain := envelope.KeyObjectName(managedRef)
	before := e.objects(t)

	res, err := rotation.Run(ctx, rotation.Options{Store: e.st, Provider: p, Rotate: true, Policy: rotation.RetireAfterVerifiedRewrap})
	if err != nil {
		t.Fatalf("rotation: %v", err)
	}
	if res.Rotated == nil || res.Rotated.Ref != managedRef || res.From == nil || res.From.Ref != managedRef {
		t.Fatalf("rotated %+v from %+v: want the same reference before and after", res.Rotated, res.From)
	}
	if res.From.Generation != "material-1" || res.PrimaryGeneration != "material-2" {
		t.Fatalf("generations: from %q, primary %q", res.From.Generation, res.PrimaryGeneration)
	}
	genName := envelope.KeyObjectNameAt(managedRef, "material-2")
	if genName == plain {
		t.Fatal("generation name equals the plain name")
	}
	if got := sorted(res.Rewrapped()); !slices.Equal(got, sorted(ids)) {
		t.Fatalf("rewrapped %v, want all of %v (an existing object under the same reference is not a rewrap)", got, ids)
	}
	after := e.objects(t)
	for k, sum := range before {
		if after[k] != sum {
			t.Fatalf("existing object %s changed", k)
		}
	}
	for _, id := range ids {
		if got := innerVersion(t, e.st, catalog.KeysPrefix(id)+plain); got != "1" {
			t.Fatalf("backup %s: plain-name object holds material %s, want the original 1", id, got)
		}
		if got := innerVersion(t, e.st, catalog.KeysPrefix(id)+genName); got != "2" {
			t.Fatalf("backup %s: generation-name object holds material %s, want 2", id, got)
		}
		m, err := catalog.Read(ctx, e.st, id)
		if err != nil {
			t.Fatal(err)
		}
		dk, ko, err := catalog.OpenKey(ctx, e.st, id, m.DataKeyID, p)
		if err != nil {
			t.Fatalf("backup %s after managed rotation: %v", id, err)
		}
		dk.Destroy()
		if ko.KEK != managedRef {
			t.Fatalf("opened with %s", ko.KEK)
		}
	}
	// Nothing to retire: the only version is the primary.
	if len(res.Retired) != 0 || len(res.Blocked) != 0 {
		t.Fatalf("retired %v blocked %+v", res.Retired, res.Blocked)
	}

	// Rerun: the generation objects are found, nothing is written.
	res, err = rotation.Run(ctx, rotation.Options{Store: e.st, Provider: p})
	if err != nil || len(res.Skipped()) != 3 || len(res.Rewrapped()) != 0 {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
	if n := len(e.objects(t)); n != len(after) {
		t.Fatalf("rerun wrote objects: %d, was %d", n, len(after))
	}
	// A second managed rotation: a third object per backup.
	res, err = rotation.Run(ctx, rotation.Options{Store: e.st, Provider: p, Rotate: true})
	if err != nil || len(res.Rewrapped()) != 3 || res.PrimaryGeneration != "material-3" {
		t.Fatalf("second rotation: %+v, %v", res, err)
	}
	for _, id := range ids {
		if got := innerVersion(t, e.st, catalog.KeysPrefix(id)+envelope.KeyObjectNameAt(managedRef, "material-3")); got != "3" {
			t.Fatalf("backup %s: material %s, want 3", id, got)
		}
	}
}

// TestEveryDefersRotation: with MinAge longer than the primary's age no
// version is created, the reason says so, and backups are still verified
// under the current primary.
func TestEveryDefersRotation(t *testing.T) {
	e := newEnv(t)
	e.backup(t)
	e.backup(t)
	res, err := rotation.Run(context.Background(), rotation.Options{Store: e.st, Provider: e.keyring, Rotate: true, MinAge: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rotated != nil || !strings.Contains(res.NotRotated, "younger than every") || res.Primary != ref("1") || len(res.Skipped()) != 2 {
		t.Fatalf("result %+v", res)
	}
	if vs, _ := e.keyring.Versions(context.Background()); len(vs) != 1 {
		t.Fatalf("rotated although the primary is younger than every: %v", vs)
	}
	// Old enough: rotates.
	res, err = rotation.Run(context.Background(), rotation.Options{Store: e.st, Provider: e.keyring, Rotate: true, MinAge: time.Hour,
		Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	if err != nil || res.Rotated == nil || res.Rotated.Ref != ref("2") || len(res.Rewrapped()) != 2 {
		t.Fatalf("old enough: %+v, %v", res, err)
	}
}

// stuck is a managed provider whose Rotate returns before any new
// material is current (as KMS's asynchronous on-demand rotation could).
type stuck struct{ *managed }

func (s stuck) Rotate(ctx context.Context) (keys.Version, error) { return s.generation(ctx) }

// TestManagedRotationUnchangedGeneration: a rotation that leaves the
// version and its generation as they were fails the run before any
// rewrap, and reports no rotation.
func TestManagedRotationUnchangedGeneration(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p := stuck{&managed{inner: e.keyring}}
	e.keyring = nil
	e.backupWith(t, p.managed)
	before := e.objects(t)
	res, err := rotation.Run(ctx, rotation.Options{Store: e.st, Provider: p, Rotate: true})
	if err == nil || !strings.Contains(err.Error(), "unchanged") || !strings.Contains(err.Error(), managedRef.String()) {
		t.Fatalf("rotation with an unchanged generation: %v", err)
	}
	if res.Rotated != nil || len(res.Backups) != 0 || res.PrimaryGeneration != "" {
		t.Fatalf("result %+v", res)
	}
	if after := e.objects(t); len(after) != len(before) {
		t.Fatalf("objects written: %d, was %d", len(after), len(before))
	}
}

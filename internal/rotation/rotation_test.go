package rotation_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

type env struct {
	root    string
	st      store.Store
	keyring *local.Keyring
	ids     []string
	n       int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{root: filepath.Join(dir, "store")}
	var err error
	if e.st, err = fs.Open(ctx, fs.Options{Root: e.root}); err != nil {
		t.Fatal(err)
	}
	if e.keyring, err = local.Create(ctx, local.Options{Path: filepath.Join(dir, "keyring.json")}, "test-kek"); err != nil {
		t.Fatal(err)
	}
	return e
}

// backup commits a backup the cheap way: a key object wrapped under the
// keyring's primary and a minimal valid manifest, no artifact bytes
// (rotation never reads them).
func (e *env) backup(t *testing.T) string {
	t.Helper()
	id := e.backupWith(t, e.keyring)
	e.ids = append(e.ids, id)
	return id
}

// backupWith commits a backup as backup does, its data key wrapped by w.
func (e *env) backupWith(t *testing.T, w envelope.Wrapper) string {
	t.Helper()
	ctx := context.Background()
	e.n++
	started := time.Now().UTC().Truncate(time.Second).Add(-time.Duration(1000-e.n) * time.Minute)
	id, err := catalog.NewID("clinic", started)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := envelope.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	ko, err := envelope.SealKey(ctx, w, id, dk, started)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ko.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	retain := time.Now().Add(24 * time.Hour).UTC()
	if _, err := e.st.Put(ctx, catalog.KeysPrefix(id)+ko.Name(), bytes.NewReader(b), store.PutOptions{RetainUntil: retain}); err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	m := catalog.Manifest{
		Format: catalog.ManifestFormat, Backup: id, Plan: "clinic", Status: catalog.StatusComplete,
		Started: started, Completed: started.Add(time.Second), RetainUntil: retain,
		KEK: ko.KEK, DataKeyID: dk.ID(),
		Artifacts: []catalog.Artifact{{
			Name: catalog.ArtifactEncryptionConfig, Source: catalog.SourceEncryptionConfig, Compression: "none",
			PlaintextSize: 1, PlaintextSHA256: sum, CiphertextSize: 1, CiphertextSHA256: sum,
		}},
		Lifeboat: catalog.Lifeboat{Version: "test"},
	}
	if err := m.Seal(dk); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Write(ctx, e.st, m); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) run(t *testing.T, policy rotation.Policy, rotate bool) (rotation.Result, error) {
	t.Helper()
	return rotation.Run(context.Background(), rotation.Options{Store: e.st, Provider: e.keyring, Policy: policy, Rotate: rotate})
}

// objects returns every stored object's key and digest.
func (e *env) objects(t *testing.T) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for info, err := range e.st.List(context.Background(), "backups/") {
		if err != nil {
			t.Fatal(err)
		}
		out[info.Key] = info.SHA256
	}
	return out
}

func (e *env) versionStates(t *testing.T) map[string]keys.VersionState {
	t.Helper()
	vs, err := e.keyring.Versions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]keys.VersionState)
	for _, v := range vs {
		out[v.Ref.Version] = v.State
	}
	return out
}

func ref(v string) keys.Ref {
	return keys.Ref{Provider: local.ProviderType, Key: "test-kek", Version: v}
}

// openUnder reads backup id's key object under version v and unwraps it.
func (e *env) openUnder(t *testing.T, id, v string) {
	t.Helper()
	ctx := context.Background()
	m, err := catalog.Read(ctx, e.st, id)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := e.st.Get(ctx, catalog.KeysPrefix(id)+envelope.KeyObjectName(ref(v)), store.GetOptions{})
	if err != nil {
		t.Fatalf("backup %s: no key object under version %s: %v", id, v, err)
	}
	defer rc.Close()
	ko, err := envelope.ReadKeyObject(rc)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := envelope.OpenKey(ctx, e.keyring, id, ko)
	if err != nil {
		t.Fatalf("backup %s: key object under version %s: %v", id, v, err)
	}
	defer dk.Destroy()
	if dk.ID() != m.DataKeyID {
		t.Fatalf("backup %s: unwraps to %s, manifest says %s", id, dk.ID(), m.DataKeyID)
	}
}

// openAll checks that every backup's data key opens the way a restore
// opens it.
func (e *env) openAll(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, id := range e.ids {
		m, err := catalog.Read(ctx, e.st, id)
		if err != nil {
			t.Fatal(err)
		}
		dk, _, err := catalog.OpenKey(ctx, e.st, id, m.DataKeyID, e.keyring)
		if err != nil {
			t.Fatalf("backup %s: %v", id, err)
		}
		dk.Destroy()
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestRotateRewrapsAllAndRerunIsIdempotent(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.backup(t)
	}
	before := e.objects(t)

	var progress []string
	res, err := rotation.Run(context.Background(), rotation.Options{
		Store: e.st, Provider: e.keyring, Policy: rotation.RetireNever, Rotate: true,
		Progress: func(b rotation.BackupResult) { progress = append(progress, b.Backup) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rotated == nil || res.Rotated.Ref != ref("2") || res.Primary != ref("2") {
		t.Fatalf("rotated %v, primary %v; want version 2", res.Rotated, res.Primary)
	}
	if got, want := sorted(res.Rewrapped()), sorted(e.ids); !slices.Equal(got, want) {
		t.Fatalf("rewrapped %v, want %v", got, want)
	}
	if len(res.Skipped()) != 0 || len(res.Failed()) != 0 || len(res.Retired) != 0 {
		t.Fatalf("skipped %v failed %v retired %v; want none", res.Skipped(), res.Failed(), res.Retired)
	}
	if !slices.Equal(sorted(progress), sorted(e.ids)) {
		t.Fatalf("progress reported %v", progress)
	}
	if len(res.Blocked) != 1 || res.Blocked[0].Version != ref("1") || !strings.Contains(res.Blocked[0].Reason, "never") {
		t.Fatalf("blocked %+v; want version 1 kept by policy never", res.Blocked)
	}
	for _, id := range e.ids {
		e.openUnder(t, id, "2")
		e.openUnder(t, id, "1")
	}
	// Only the new key objects were added; nothing existing changed.
	after := e.objects(t)
	for k, sum := range before {
		if after[k] != sum {
			t.Fatalf("object %s changed or vanished", k)
		}
	}
	if len(after) != len(before)+len(e.ids) {
		t.Fatalf("%d objects after, %d before; want one new key object per backup", len(after), len(before))
	}
	if e.versionStates(t)["1"] != keys.StateEnabled {
		t.Fatal("policy never retired version 1")
	}

	// Rerun without rotating: nothing to do.
	res, err = e.run(t, rotation.RetireNever, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(res.Skipped()), sorted(e.ids); !slices.Equal(got, want) || len(res.Rewrapped()) != 0 {
		t.Fatalf("rerun: skipped %v rewrapped %v; want all skipped", got, res.Rewrapped())
	}
	if again := e.objects(t); len(again) != len(after) {
		t.Fatalf("rerun wrote %d objects", len(again)-len(after))
	}
}

// hideStat makes every Stat miss, as if an earlier run had been
// interrupted after its Put but this run could not see it until Put
// answered ErrExists (a race with the earlier run).
type hideStat struct{ store.Store }

func (hideStat) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	return store.ObjectInfo{}, fmt.Errorf("%s: %w", key, store.ErrNotFound)
}

func TestResumeAfterInterruptedRun(t *testing.T) {
	e := newEnv(t)
	for range 4 {
		e.backup(t)
	}
	ctx := context.Background()
	// An earlier run rotated and rewrapped every backup, then died before
	// retiring anything.
	if _, err := rotation.Run(ctx, rotation.Options{Store: e.st, Provider: e.keyring, Rotate: true}); err != nil {
		t.Fatal(err)
	}
	// This run's Stat sees nothing, so every backup takes the Put path and
	// meets ErrExists, which must count as done once verified.
	res, err := rotation.Run(ctx, rotation.Options{
		Store: hideStat{e.st}, Provider: e.keyring, Policy: rotation.RetireAfterVerifiedRewrap,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(res.Skipped()), sorted(e.ids); !slices.Equal(got, want) {
		t.Fatalf("skipped %v, want %v (ErrExists means already done)", got, want)
	}
	if !slices.Equal(res.Retired, []keys.Ref{ref("1")}) {
		t.Fatalf("retired %v, want version 1", res.Retired)
	}
	e.openAll(t)
}

func TestPartialEarlierRunIsFinished(t *testing.T) {
	e := newEnv(t)
	for range 4 {
		e.backup(t)
	}
	ctx := context.Background()
	if _, err := e.keyring.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	// An earlier run got as far as two backups: write their v2 objects by
	// hand, as it would have.
	done := e.ids[:2]
	for _, id := range done {
		m, err := catalog.Read(ctx, e.st, id)
		if err != nil {
			t.Fatal(err)
		}
		dk, _, err := catalog.OpenKey(ctx, e.st, id, m.DataKeyID, e.keyring)
		if err != nil {
			t.Fatal(err)
		}
		ko, err := envelope.SealKey(ctx, e.keyring, id, dk, time.Now())
		dk.Destroy()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ko.Marshal()
		if _, err := e.st.Put(ctx, catalog.KeysPrefix(id)+ko.Name(), bytes.NewReader(b), store.PutOptions{RetainUntil: m.RetainUntil}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := e.run(t, rotation.RetireAfterVerifiedRewrap, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(res.Skipped()); !slices.Equal(got, sorted(done)) {
		t.Fatalf("skipped %v, want %v", got, sorted(done))
	}
	if got := sorted(res.Rewrapped()); !slices.Equal(got, sorted(e.ids[2:])) {
		t.Fatalf("rewrapped %v, want %v", got, sorted(e.ids[2:]))
	}
	if !slices.Equal(res.Retired, []keys.Ref{ref("1")}) {
		t.Fatalf("retired %v, want version 1", res.Retired)
	}
}

func TestTenRotations(t *testing.T) {
	for _, policy := range []rotation.Policy{rotation.RetireNever, rotation.RetireAfterVerifiedRewrap} {
		t.Run(string(policy), func(t *testing.T) {
			e := newEnv(t)
			e.backup(t)
			for i := range 10 {
				e.backup(t) // a backup from every epoch
				res, err := e.run(t, policy, true)
				if err != nil {
					t.Fatalf("rotation %d: %v", i+1, err)
				}
				primary := fmt.Sprint(i + 2)
				if res.Primary != ref(primary) {
					t.Fatalf("rotation %d: primary %v", i+1, res.Primary)
				}
				if len(res.Rewrapped()) != len(e.ids) {
					t.Fatalf("rotation %d: rewrapped %d of %d backups", i+1, len(res.Rewrapped()), len(e.ids))
				}
				wantRetired := 0
				if policy == rotation.RetireAfterVerifiedRewrap {
					wantRetired = 1 // the previous primary; earlier ones are retired already
				}
				if len(res.Retired) != wantRetired {
					t.Fatalf("rotation %d: retired %v", i+1, res.Retired)
				}
				e.openAll(t)
			}
			states := e.versionStates(t)
			for v := 1; v <= 10; v++ {
				want := keys.StateEnabled
				if policy == rotation.RetireAfterVerifiedRewrap {
					want = keys.StateRetired
				}
				if got := states[fmt.Sprint(v)]; got != want {
					t.Fatalf("version %d is %s, want %s", v, got, want)
				}
			}
			if states["11"] != keys.StateEnabled {
				t.Fatal("primary 11 not enabled")
			}
			for _, id := range e.ids {
				e.openUnder(t, id, "11")
			}
		})
	}
}

func TestAfterVerifiedRewrapRetiresOldVersions(t *testing.T) {
	e := newEnv(t)
	e.backup(t)
	// Two old versions in use: backups made under 1 and under 2.
	if _, err := e.keyring.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.backup(t)
	res, err := e.run(t, rotation.RetireAfterVerifiedRewrap, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Retired, []keys.Ref{ref("1"), ref("2")}) || len(res.Blocked) != 0 {
		t.Fatalf("retired %v blocked %+v; want 1 and 2 retired", res.Retired, res.Blocked)
	}
	// The old key objects no longer unwrap, but every backup still opens.
	e.openAll(t)
	res, err = e.run(t, rotation.RetireAfterVerifiedRewrap, false)
	if err != nil || len(res.Retired) != 0 || len(res.Skipped()) != 2 {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
}

func TestUnreadableKeyObjectBlocksRetirement(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.backup(t)
	}
	bad := e.ids[1]
	corrupt(t, e.root, catalog.KeysPrefix(bad)+envelope.KeyObjectName(ref("1")))

	res, err := e.run(t, rotation.RetireAfterVerifiedRewrap, true)
	if !errors.Is(err, rotation.ErrIncomplete) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("err %v; want ErrIncomplete naming %s", err, bad)
	}
	if got := res.Failed(); !slices.Equal(got, []string{bad}) {
		t.Fatalf("failed %v, want [%s]", got, bad)
	}
	if len(res.Rewrapped()) != 2 {
		t.Fatalf("rewrapped %v, want the two others", res.Rewrapped())
	}
	if len(res.Retired) != 0 {
		t.Fatalf("retired %v with a backup unverified", res.Retired)
	}
	if len(res.Blocked) != 1 || res.Blocked[0].Version != ref("1") || !slices.Equal(res.Blocked[0].Backups, []string{bad}) {
		t.Fatalf("blocked %+v; want version 1 blocked by %s", res.Blocked, bad)
	}
	if e.versionStates(t)["1"] != keys.StateEnabled {
		t.Fatal("version 1 retired")
	}
	for _, b := range res.Backups {
		if b.Backup == bad && (b.Err == nil || !strings.Contains(b.Err.Error(), bad)) {
			t.Fatalf("failure of %s: %v", bad, b.Err)
		}
	}
	// A rerun still blocks; the good backups are skipped.
	res, err = e.run(t, rotation.RetireAfterVerifiedRewrap, false)
	if !errors.Is(err, rotation.ErrIncomplete) || len(res.Retired) != 0 || len(res.Skipped()) != 2 {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
}

func TestCorruptNewKeyObjectFailsVerification(t *testing.T) {
	e := newEnv(t)
	e.backup(t)
	id := e.backup(t)
	if _, err := e.run(t, rotation.RetireNever, true); err != nil {
		t.Fatal(err)
	}
	corrupt(t, e.root, catalog.KeysPrefix(id)+envelope.KeyObjectName(ref("2")))
	res, err := e.run(t, rotation.RetireAfterVerifiedRewrap, false)
	if !errors.Is(err, rotation.ErrIncomplete) || !slices.Equal(res.Failed(), []string{id}) || len(res.Retired) != 0 {
		t.Fatalf("res %+v err %v; want %s failed and nothing retired", res, err, id)
	}
}

func TestRunRejectsUnknownPolicy(t *testing.T) {
	e := newEnv(t)
	if _, err := e.run(t, "sometimes", true); err == nil {
		t.Fatal("unknown policy accepted")
	}
	if vs, _ := e.keyring.Versions(context.Background()); len(vs) != 1 {
		t.Fatal("rotated despite a bad policy")
	}
}

// corrupt flips one byte in the middle of an object in the fs store.
func corrupt(t *testing.T, root, key string) {
	t.Helper()
	p := filepath.Join(root, "objects", filepath.FromSlash(key))
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// rewrapping is a provider with Rewrap, as keys/vault has: here the local
// keyring unwrapping and wrapping again, counting calls.
type rewrapping struct {
	*local.Keyring
	rewraps atomic.Int64 // rotation rewraps concurrently
}

func (r *rewrapping) Rewrap(ctx context.Context, w keys.Wrapped, aad []byte) (keys.Wrapped, error) {
	r.rewraps.Add(1)
	dk, err := r.Unwrap(ctx, w, aad)
	if err != nil {
		return keys.Wrapped{}, err
	}
	defer clear(dk)
	return r.Wrap(ctx, dk, aad)
}

func TestRewrapperIsUsed(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.backup(t)
	}
	p := &rewrapping{Keyring: e.keyring}
	res, err := rotation.Run(context.Background(), rotation.Options{Store: e.st, Provider: p, Rotate: true, Policy: rotation.RetireAfterVerifiedRewrap})
	if err != nil {
		t.Fatal(err)
	}
	if p.rewraps.Load() != 3 || len(res.Rewrapped()) != 3 || !slices.Equal(res.Retired, []keys.Ref{ref("1")}) {
		t.Fatalf("rewraps %d, result %+v", p.rewraps.Load(), res)
	}
	for _, id := range e.ids {
		e.openUnder(t, id, "2")
	}
	e.openAll(t)
}

func TestCancelledRunRetiresNothing(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.backup(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := rotation.Run(ctx, rotation.Options{
		Store: e.st, Provider: e.keyring, Rotate: true, Policy: rotation.RetireAfterVerifiedRewrap,
		Progress:    func(rotation.BackupResult) { cancel() },
		Concurrency: 1, // one backup at a time, so exactly one finishes
	})
	if !errors.Is(err, context.Canceled) || len(res.Retired) != 0 || len(res.Backups) != 1 {
		t.Fatalf("res %+v err %v; want cancelled after one backup, nothing retired", res, err)
	}
	if e.versionStates(t)["1"] != keys.StateEnabled {
		t.Fatal("version 1 retired by a cancelled run")
	}
	// The rerun finishes the job.
	res, err = e.run(t, rotation.RetireAfterVerifiedRewrap, false)
	if err != nil || len(res.Skipped()) != 1 || len(res.Rewrapped()) != 2 || len(res.Retired) != 1 {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
	e.openAll(t)
}

// TestOtherProvidersBackupsLeftAlone: a store that also holds backups
// wrapped only under another key provider (another plan's, or taken before
// this provider was listed) is rotated and retired as if they were not
// there: they are counted as not wrapped, get no key object, do not block
// retirement, and still open under their own provider.
func TestOtherProvidersBackupsLeftAlone(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	other, err := local.Create(ctx, local.Options{Path: filepath.Join(t.TempDir(), "other.json")}, "other-kek")
	if err != nil {
		t.Fatal(err)
	}
	mine := e.backup(t)
	foreign := e.backupWith(t, other)
	before := e.objects(t)
	res, err := e.run(t, rotation.RetireAfterVerifiedRewrap, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.NotWrapped, []string{foreign}) || !slices.Equal(res.Rewrapped(), []string{mine}) || !slices.Equal(res.Retired, []keys.Ref{ref("1")}) {
		t.Fatalf("not wrapped %v, rewrapped %v, retired %v; want %s left alone, %s rewrapped, version 1 retired", res.NotWrapped, res.Rewrapped(), res.Retired, foreign, mine)
	}
	for k := range e.objects(t) {
		if strings.HasPrefix(k, catalog.KeysPrefix(foreign)) && before[k] == "" {
			t.Fatalf("a key object was written for the other provider's backup: %s", k)
		}
	}
	m, err := catalog.Read(ctx, e.st, foreign)
	if err != nil {
		t.Fatal(err)
	}
	dk, _, err := catalog.OpenKey(ctx, e.st, foreign, m.DataKeyID, other)
	if err != nil {
		t.Fatalf("the other provider's backup no longer opens: %v", err)
	}
	dk.Destroy()
}

package evidence

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

// memStore is a write-once in-memory StoreLike whose objects a test can
// change behind its back.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func newMemStore() *memStore { return &memStore{objs: map[string][]byte{}} }

func (m *memStore) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.ObjectInfo, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.ObjectInfo{}, err
	}
	if opts.RetainUntil.IsZero() {
		return store.ObjectInfo{}, errors.New("mem: RetainUntil is required")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	sum := sha256.Sum256(data)
	if opts.SHA256 != "" && opts.SHA256 != hex.EncodeToString(sum[:]) {
		return store.ObjectInfo{}, store.ErrIntegrity
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[key]; ok {
		return store.ObjectInfo{}, fmt.Errorf("mem: put %q: %w", key, store.ErrExists)
	}
	m.objs[key] = data
	return store.ObjectInfo{Key: key, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

func (m *memStore) Get(ctx context.Context, key string, opts store.GetOptions) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("mem: get %q: %w", key, store.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(bytes.Clone(data))), nil
}

func (m *memStore) List(ctx context.Context, prefix string) iter.Seq2[store.ObjectInfo, error] {
	return func(yield func(store.ObjectInfo, error) bool) {
		m.mu.Lock()
		var keys []string
		for k := range m.objs {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
		}
		m.mu.Unlock()
		slices.Sort(keys)
		for _, k := range keys {
			if !yield(store.ObjectInfo{Key: k}, nil) {
				return
			}
		}
	}
}

func (m *memStore) set(key string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = data
}

func (m *memStore) get(key string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.objs[key])
}

func (m *memStore) remove(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
}

// testClock starts at a fixed time and moves a minute per reading.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 1, 2, 0, 0, 123456789, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Minute)
	return c.t
}

func newTestSigner(t testing.TB) *Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openFS(t testing.TB, root string) *fs.Store {
	t.Helper()
	st, err := fs.Open(context.Background(), fs.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// sampleRecord returns the i-th record of a test chain.
func sampleRecord(i int) Record {
	kinds := []string{KindBackup, KindRotation, KindDrill}
	outcomes := []string{OutcomeSuccess, OutcomeFailure, OutcomePartial}
	return Record{
		Kind:    kinds[i%3],
		ID:      fmt.Sprintf("run-%03d", i),
		Outcome: outcomes[i%3],
		Subject: map[string]any{
			"plan":       "nightly",
			"artifacts":  []any{map[string]any{"name": "etcd.db", "size": 1 << 20, "sha256": strings.Repeat("ab", 32)}},
			"note":       "<&> \"quoted\" é \n",
			"durationMs": int64(1234 + i),
			"ok":         i%2 == 0,
		},
		HIPAA: []string{"§164.308(a)(7)(ii)(A)", "§164.312(b)"},
	}
}

func appendN(t testing.TB, l *Log, from, n int) []Record {
	t.Helper()
	var out []Record
	for i := from; i < from+n; i++ {
		r, err := l.Append(context.Background(), sampleRecord(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, r)
	}
	return out
}

func TestChainRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := openFS(t, t.TempDir())
	signer := newTestSigner(t)
	l := NewLog(st, signer, newTestClock().Now)
	recs := appendN(t, l, 0, 20)

	res, err := l.Verify(ctx, signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 20 || res.Head.Seq != 20 || !res.TrustedKeys || len(res.Warnings) != 0 ||
		!reflect.DeepEqual(res.Signers, []string{signer.KeyID()}) || res.Kinds[KindBackup] != 7 {
		t.Fatalf("result %+v", res)
	}
	// Without trusted keys: the key of record 1 must sign all.
	if res, err := l.Verify(ctx); err != nil || res.Records != 20 || res.TrustedKeys {
		t.Fatalf("verify without keys: %+v, %v", res, err)
	}

	// The named copies list in chain order, and each holds the record
	// Append returned, byte for byte the chain object.
	var named []string
	for info, err := range st.List(ctx, "evidence/") {
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(info.Key, chainPrefix) {
			named = append(named, info.Key)
		}
	}
	if len(named) != 20 {
		t.Fatalf("named copies: %v", named)
	}
	prev := ""
	for i, r := range recs {
		if named[i] != r.Key() || r.Seq != int64(i+1) {
			t.Fatalf("record %d: key %s, listed %s", i, r.Key(), named[i])
		}
		want := fmt.Sprintf("evidence/%010d-%s-run-%03d.json", i+1, sampleRecord(i).Kind, i)
		if r.Key() != want {
			t.Fatalf("key %s, want %s", r.Key(), want)
		}
		data, err := readObject(ctx, st, r.Key(), maxRecordSize)
		if err != nil {
			t.Fatal(err)
		}
		chain, _ := readObject(ctx, st, chainKey(r.Seq), maxRecordSize)
		if !bytes.Equal(data, chain) {
			t.Fatalf("record %d: named copy differs from chain object", i)
		}
		got, err := ParseRecord(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("record %d read back differs:\n got %+v\nwant %+v", i, got, r)
		}
		if r.Prev != prev {
			t.Fatalf("record %d: prev %q, want %q", i, r.Prev, prev)
		}
		prev = Hash(data)
		if bytes.ContainsAny(data, " \n") && !bytes.Contains(data, []byte(`é \n`)) {
			t.Fatalf("record %d has whitespace outside strings: %s", i, data)
		}
	}
	if res.Head.SHA256 != prev || res.Head.Key != recs[19].Key() {
		t.Fatalf("head %+v", res.Head)
	}
	// The first record looks as docs/format.md §5.3 says.
	first, _ := readObject(ctx, st, recs[0].Key(), maxRecordSize)
	for _, want := range []string{`{"format":"lifeboat.dev/evidence/v1","hipaa":["§164.308(a)(7)(ii)(A)","§164.312(b)"],"id":"run-000","kind":"backup","outcome":"success","prev":"",`, `"seq":1,`, `"time":"2026-03-01T02:01:00.123456789Z"}`, `"note":"<&> \"quoted\" é \n"`} {
		if !bytes.Contains(first, []byte(want)) {
			t.Fatalf("record 1 lacks %s:\n%s", want, first)
		}
	}
}

// TestEveryByteChangeDetected changes each byte of every stored object of
// a chain, one at a time, and checks that Verify names that object.
func TestEveryByteChangeDetected(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	signer := newTestSigner(t)
	l := NewLog(st, signer, newTestClock().Now)
	appendN(t, l, 0, 3)
	if _, err := l.Verify(ctx, signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for info := range st.List(ctx, "evidence/") {
		keys = append(keys, info.Key)
	}
	for _, key := range keys {
		orig := st.get(key)
		masks := []byte{0x01}
		if key == chainKey(2) {
			masks = append(masks, 0x80) // invalid UTF-8, out-of-range bytes
		}
		for i := range orig {
			for _, mask := range masks {
				changed := bytes.Clone(orig)
				changed[i] ^= mask
				st.set(key, changed)
				_, err := l.Verify(ctx, signer.PublicKey())
				if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), key) {
					t.Fatalf("%s byte %d ^ %#x (%q): error %v, want one naming the object", key, i, mask, orig[i], err)
				}
			}
		}
		st.set(key, orig)
	}
	if _, err := l.Verify(ctx, signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
}

// rewriteFS replaces an object's bytes in an fs store the way an attacker
// with file system access would: the file and its retention record's
// digest and size, so the store's own check passes and only the
// evidence's checks remain.
func rewriteFS(t testing.TB, root, key string, data []byte, fixDigest bool) {
	t.Helper()
	obj := filepath.Join(root, "objects", filepath.FromSlash(key))
	writeReadOnly(t, obj, data)
	if !fixDigest {
		return
	}
	rec := filepath.Join(root, "retention", filepath.FromSlash(key)+".json")
	raw, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	m["sha256"] = hex.EncodeToString(sum[:])
	m["size"] = len(data)
	raw, _ = json.Marshal(m)
	writeReadOnly(t, rec, raw)
}

func writeReadOnly(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o440); err != nil {
		t.Fatal(err)
	}
}

func readFS(t testing.TB, root, key string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "objects", filepath.FromSlash(key)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func removeFS(t testing.TB, root, key string) {
	t.Helper()
	for _, p := range []string{
		filepath.Join(root, "objects", filepath.FromSlash(key)),
		filepath.Join(root, "retention", filepath.FromSlash(key)+".json"),
	} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFlipBytesOnDisk flips each byte of a record's files in an fs store,
// fixing the store's digest so that only the evidence checks can tell.
func TestFlipBytesOnDisk(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st := openFS(t, root)
	signer := newTestSigner(t)
	l := NewLog(st, signer, newTestClock().Now)
	recs := appendN(t, l, 0, 3)
	for _, key := range []string{recs[1].Key(), chainKey(2)} {
		orig := readFS(t, root, key)
		for i := range orig {
			changed := bytes.Clone(orig)
			changed[i] ^= 0x01
			rewriteFS(t, root, key, changed, true)
			_, err := l.Verify(ctx, signer.PublicKey())
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), key) {
				t.Fatalf("%s byte %d: error %v, want one naming the object", key, i, err)
			}
		}
		rewriteFS(t, root, key, orig, true)
	}
	if _, err := l.Verify(ctx, signer.PublicKey()); err != nil {
		t.Fatal(err)
	}

	// Without fixing the digest, the store's own check reports it, and
	// the error still names the record and matches both sentinels.
	orig := readFS(t, root, recs[2].Key())
	changed := bytes.Clone(orig)
	changed[len(changed)/2] ^= 0x01
	rewriteFS(t, root, recs[2].Key(), changed, false)
	_, err := l.Verify(ctx, signer.PublicKey())
	if !errors.Is(err, ErrTampered) || !errors.Is(err, store.ErrIntegrity) || !strings.Contains(err.Error(), recs[2].Key()) {
		t.Fatalf("error %v", err)
	}
}

func TestVerifyNamesProblem(t *testing.T) {
	ctx := context.Background()
	signer := newTestSigner(t)
	setup := func(t *testing.T) (string, *Log, []Record) {
		root := t.TempDir()
		l := NewLog(openFS(t, root), signer, newTestClock().Now)
		return root, l, appendN(t, l, 0, 20)
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, root string, recs []Record)
		want   []string
	}{
		{"gap: record removed from the middle", func(t *testing.T, root string, recs []Record) {
			removeFS(t, root, recs[9].Key())
			removeFS(t, root, chainKey(10))
		}, []string{namedKey(10), "evidence/seq/0000000010.json", "is missing"}},
		{"chain object removed", func(t *testing.T, root string, recs []Record) {
			removeFS(t, root, chainKey(10))
		}, []string{"evidence/seq/0000000010.json", "is missing"}},
		{"named copy removed", func(t *testing.T, root string, recs []Record) {
			removeFS(t, root, recs[9].Key())
		}, []string{namedKey(9), "missing"}},
		{"reordered", func(t *testing.T, root string, recs []Record) {
			a, b := readFS(t, root, chainKey(5)), readFS(t, root, chainKey(6))
			rewriteFS(t, root, chainKey(5), b, true)
			rewriteFS(t, root, chainKey(6), a, true)
		}, []string{"evidence/seq/0000000005.json", "field seq", "reordered"}},
		{"named copies swapped", func(t *testing.T, root string, recs []Record) {
			a, b := readFS(t, root, recs[4].Key()), readFS(t, root, recs[5].Key())
			rewriteFS(t, root, recs[4].Key(), b, true)
			rewriteFS(t, root, recs[5].Key(), a, true)
		}, []string{namedKey(4), "differs from its chain object"}},
		{"foreign object", func(t *testing.T, root string, recs []Record) {
			st := openFS(t, root)
			if _, err := st.Put(ctx, "evidence/notes.txt", strings.NewReader("hi"), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}, []string{"evidence/notes.txt", "unexpected object"}},
		{"record outside the chain", func(t *testing.T, root string, recs []Record) {
			st := openFS(t, root)
			data := readFS(t, root, recs[2].Key())
			if _, err := st.Put(ctx, "evidence/0000000003-backup-extra.json", bytes.NewReader(data), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}, []string{"evidence/0000000003-backup-extra.json", "not part of the chain"}},
		{"record replaced and re-signed by another key", func(t *testing.T, root string, recs []Record) {
			other := newTestSigner(t)
			r := recs[9]
			r.Outcome = OutcomeSuccess
			_, data, err := other.signRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			rewriteFS(t, root, chainKey(10), data, true)
			rewriteFS(t, root, r.Key(), data, true)
		}, []string{"evidence/seq/0000000010.json", "field publicKey", "not one of the trusted keys"}},
		{"record replaced and re-signed by the same key", func(t *testing.T, root string, recs []Record) {
			r := recs[9]
			r.Subject = map[string]any{"changed": true}
			_, data, err := signer.signRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			rewriteFS(t, root, chainKey(10), data, true)
			rewriteFS(t, root, r.Key(), data, true)
		}, []string{"evidence/seq/0000000011.json", "field prev", "changed or replaced"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, l, recs := setup(t)
			tc.tamper(t, root, recs)
			res, err := l.Verify(ctx, signer.PublicKey())
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error %v, want ErrTampered", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if res.Records >= 20 && tc.name != "foreign object" && tc.name != "record outside the chain" && tc.name != "gap: record removed from the middle" {
				t.Errorf("result claims %d records verified", res.Records)
			}
		})
	}
}

// namedKey is the key of the named copy of sampleRecord(i) at seq i+1.
func namedKey(i int) string {
	r := sampleRecord(i)
	r.Seq = int64(i + 1)
	return r.Key()
}

func TestVerifyKeys(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	a, b := newTestSigner(t), newTestSigner(t)
	la := NewLog(st, a, newTestClock().Now)
	appendN(t, la, 0, 2)

	_, err := la.Verify(ctx, b.PublicKey())
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "evidence/seq/0000000001.json: field publicKey") {
		t.Fatalf("wrong key: %v", err)
	}

	// A new signing key cannot chain onto records it does not trust...
	lb := NewLog(st, b, newTestClock().Now)
	_, err = lb.Append(ctx, sampleRecord(2))
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "field publicKey") {
		t.Fatalf("append onto an untrusted head: %v", err)
	}
	// ...unless told to trust the old key.
	lb = NewLog(st, b, newTestClock().Now, WithTrustedKeys(a.PublicKey()))
	appendN(t, lb, 2, 1)

	_, err = lb.Verify(ctx)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "evidence/seq/0000000003.json: field publicKey") {
		t.Fatalf("two signers without trusted keys: %v", err)
	}
	res, err := lb.Verify(ctx, a.PublicKey(), b.PublicKey())
	if err != nil || res.Records != 3 || len(res.Signers) != 2 {
		t.Fatalf("two trusted signers: %+v, %v", res, err)
	}
}

func TestInterruptedAppendRepaired(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	signer := newTestSigner(t)
	l := NewLog(st, signer, newTestClock().Now)
	recs := appendN(t, l, 0, 2)

	// A crash between the chain object and the named copy.
	st.remove(recs[1].Key())
	res, err := l.Verify(ctx, signer.PublicKey())
	if err != nil || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], recs[1].Key()) {
		t.Fatalf("interrupted append: %+v, %v", res, err)
	}
	appendN(t, l, 2, 1)
	res, err = l.Verify(ctx, signer.PublicKey())
	if err != nil || len(res.Warnings) != 0 || res.Records != 3 {
		t.Fatalf("after the next append: %+v, %v", res, err)
	}

	// A foreign object where the head's named copy belongs stops appends.
	st2 := newMemStore()
	l2 := NewLog(st2, signer, newTestClock().Now)
	recs = appendN(t, l2, 0, 1)
	st2.set(recs[0].Key(), []byte("{}"))
	if _, err := l2.Append(ctx, sampleRecord(1)); !errors.Is(err, ErrTampered) {
		t.Fatalf("append over a foreign named copy: %v", err)
	}
}

func TestAppendRetriesWhenSeqTaken(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	signer := newTestSigner(t)
	clock := newTestClock()
	// Two stores on one root stand for two processes.
	logs := []*Log{NewLog(openFS(t, root), signer, clock.Now), NewLog(openFS(t, root), signer, clock.Now)}
	var wg sync.WaitGroup
	for w, l := range logs {
		wg.Go(func() {
			for i := range 10 {
				if _, err := l.Append(ctx, sampleRecord(w*10+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	res, err := logs[0].Verify(ctx, signer.PublicKey())
	if err != nil || res.Records != 20 {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestAppendRefusesBadRecords(t *testing.T) {
	l := NewLog(newMemStore(), newTestSigner(t), nil)
	for _, tc := range []struct {
		name  string
		rec   Record
		field string
	}{
		{"kind", Record{Kind: "Backup", ID: "b1", Outcome: OutcomeSuccess}, "kind"},
		{"kind with dash", Record{Kind: "back-up", ID: "b1", Outcome: OutcomeSuccess}, "kind"},
		{"id", Record{Kind: KindBackup, ID: "b/1", Outcome: OutcomeSuccess}, "id"},
		{"outcome", Record{Kind: KindBackup, ID: "b1", Outcome: "ok"}, "outcome"},
		{"hipaa", Record{Kind: KindBackup, ID: "b1", Outcome: OutcomeSuccess, HIPAA: []string{""}}, "hipaa[0]"},
		{"float in subject", Record{Kind: KindBackup, ID: "b1", Outcome: OutcomeSuccess, Subject: map[string]any{"x": map[string]any{"ratio": 0.5}}}, "subject.x.ratio"},
	} {
		_, err := l.Append(context.Background(), tc.rec)
		if err == nil || !strings.Contains(err.Error(), "field "+tc.field+":") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := NewLog(newMemStore(), nil, nil).Append(context.Background(), sampleRecord(0)); err == nil {
		t.Error("append without a signer")
	}
}

func TestAppendSubjectStruct(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	signer := newTestSigner(t)
	l := NewLog(st, signer, nil)
	type artifact struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	}
	r, err := l.Append(ctx, Record{Kind: KindBackup, ID: "b1", Outcome: OutcomeSuccess,
		Subject: map[string]any{"artifacts": []artifact{{"etcd.db", 42}}, "durationMs": time.Duration(1500 * time.Millisecond).Milliseconds()}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"artifacts": []any{map[string]any{"name": "etcd.db", "size": int64(42)}}, "durationMs": int64(1500)}
	if !reflect.DeepEqual(r.Subject, want) {
		t.Fatalf("subject %#v", r.Subject)
	}
	if _, err := l.Verify(ctx, signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyEmptyLog(t *testing.T) {
	res, err := NewLog(newMemStore(), nil, nil).Verify(context.Background())
	if err != nil || res.Records != 0 || res.Head != nil {
		t.Fatalf("%+v, %v", res, err)
	}
}

// racingStore lets another writer append just before the first Put of a
// chain object, so that Put finds its seq taken.
type racingStore struct {
	*memStore
	once  sync.Once
	other func()
}

func (r *racingStore) Put(ctx context.Context, key string, rd io.Reader, opts store.PutOptions) (store.ObjectInfo, error) {
	if strings.HasPrefix(key, chainPrefix) {
		r.once.Do(r.other)
	}
	return r.memStore.Put(ctx, key, rd, opts)
}

func TestAppendRetriesAfterErrExists(t *testing.T) {
	ctx := context.Background()
	mem := newMemStore()
	signer := newTestSigner(t)
	other := NewLog(mem, signer, nil)
	rs := &racingStore{memStore: mem, other: func() {
		if _, err := other.Append(ctx, sampleRecord(100)); err != nil {
			t.Error(err)
		}
	}}
	r, err := NewLog(rs, signer, nil).Append(ctx, sampleRecord(0))
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 2 {
		t.Fatalf("seq %d, want 2 (after the other writer's 1)", r.Seq)
	}
	res, err := other.Verify(ctx, signer.PublicKey())
	if err != nil || res.Records != 2 {
		t.Fatalf("%+v, %v", res, err)
	}
}

// TestVerifyCitedReports: a drill record that cites its report and the
// pages rendered from it makes Verify read them back: a changed page, a
// changed report.json and a removed page each fail naming the object, and
// a citation outside reports/ is not followed.
func TestVerifyCitedReports(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, key, change string }{
		{"page changed", "reports/drill-20260301T030000Z-a1b2/report.html", "change"},
		{"markdown removed", "reports/drill-20260301T030000Z-a1b2/report.md", "remove"},
		{"json changed", "reports/drill-20260301T030000Z-a1b2/report.json", "change"},
		{"untouched", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			signer := newTestSigner(t)
			signed, _, err := signer.SignReport(sampleReport(t))
			if err != nil {
				t.Fatal(err)
			}
			objs, err := WriteReport(ctx, st, signed)
			if err != nil {
				t.Fatal(err)
			}
			cite := objs.Citation()
			l := NewLog(st, signer, newTestClock().Now)
			if _, err := l.Append(ctx, Record{Kind: KindDrill, ID: signed.RunID, Outcome: OutcomeFailure, Subject: map[string]any{"report": cite}}); err != nil {
				t.Fatal(err)
			}
			// A record citing something outside reports/ is not followed.
			if _, err := l.Append(ctx, Record{Kind: KindDrill, ID: "other", Outcome: OutcomeFailure, Subject: map[string]any{"report": map[string]any{"key": "backups/x/manifest.json", "sha256": strings.Repeat("0", 64)}}}); err != nil {
				t.Fatal(err)
			}
			switch tc.change {
			case "change":
				st.objs[tc.key] = append(bytes.Clone(st.objs[tc.key]), ' ')
			case "remove":
				delete(st.objs, tc.key)
			}
			res, err := NewLog(st, nil, nil).Verify(ctx, signer.PublicKey())
			if tc.key == "" {
				if err != nil || res.Reports != 3 {
					t.Fatalf("untouched: %+v, %v", res, err)
				}
				return
			}
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), "evidence/seq/0000000001.json") {
				t.Fatalf("%s: %v, want tampering naming %s and the citing record", tc.name, err, tc.key)
			}
		})
	}
}

// TestRecordByKey: Record returns a named copy only when it is signed by a
// key the log trusts and is the record its key names; a copy of another
// record under a planted key, an unknown signer, a chain key or a missing
// key is refused.
func TestRecordByKey(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	signer := newTestSigner(t)
	l := NewLog(st, signer, newTestClock().Now)
	recs := appendN(t, l, 0, 3)

	got, err := l.Record(ctx, recs[1].Key())
	if err != nil {
		t.Fatalf("Record(%s): %v", recs[1].Key(), err)
	}
	if got.Seq != recs[1].Seq || got.ID != recs[1].ID || got.Outcome != recs[1].Outcome {
		t.Fatalf("Record returned %+v, want %+v", got, recs[1])
	}

	// Record 1's bytes under a key that names another seq, kind or ID.
	planted := recordKey(9, recs[0].Kind, recs[0].ID)
	st.set(planted, st.get(recs[0].Key()))
	var ve *VerifyError
	if _, err := l.Record(ctx, planted); !errors.As(err, &ve) || ve.Field != "id" {
		t.Fatalf("a record under a key not its own: %v, want a VerifyError on id", err)
	}

	// The same log read with another trusted key, and no signer.
	other := NewLog(st, nil, newTestClock().Now, WithTrustedKeys(newTestSigner(t).PublicKey()))
	if _, err := other.Record(ctx, recs[1].Key()); !errors.As(err, &ve) || ve.Field != "publicKey" {
		t.Fatalf("a record by an untrusted key: %v, want a VerifyError on publicKey", err)
	}

	for _, key := range []string{chainKey(1), "runs/x/20261206T000000Z.json"} {
		if _, err := l.Record(ctx, key); !errors.As(err, &ve) {
			t.Fatalf("Record(%s): %v, want a VerifyError", key, err)
		}
	}
	if _, err := l.Record(ctx, recordKey(99, KindBackup, "nothing")); err == nil {
		t.Fatal("Record of a missing key succeeded")
	}
}

// TestBackwardsRefusesReplayedSeq: a genuine record copied to the next
// seq's chain key (an old pass replayed as the newest) is refused by
// Backwards, which the status page and the scheduler read.
func TestBackwardsRefusesReplayedSeq(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	signer := newTestSigner(t)
	l := NewLog(st, signer, newTestClock().Now)
	recs := appendN(t, l, 0, 3)
	var seen []int64
	if err := l.Backwards(ctx, 10, func(r Record) bool { seen = append(seen, r.Seq); return true }); err != nil || len(seen) != 3 || seen[0] != 3 {
		t.Fatalf("Backwards over a sound log: %v %v", seen, err)
	}
	st.set(chainKey(4), st.get(chainKey(recs[0].Seq)))
	var ve *VerifyError
	err := l.Backwards(ctx, 10, func(r Record) bool { return true })
	if !errors.As(err, &ve) || ve.Field != "seq" || ve.Object != chainKey(4) {
		t.Fatalf("Backwards over a replayed record: %v, want a VerifyError on seq naming %s", err, chainKey(4))
	}
}

package fs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/store/storetest"
)

type env struct {
	root  string
	clock *storetest.Clock
	logs  *syncBuffer
	st    *fs.Store
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{root: t.TempDir(), clock: storetest.NewClock(time.Now()), logs: &syncBuffer{}}
	e.st = e.open(t, false)
	return e
}

func (e *env) open(t *testing.T, readOnly bool) *fs.Store {
	t.Helper()
	st, err := fs.Open(t.Context(), fs.Options{
		Root:     e.root,
		ReadOnly: readOnly,
		Now:      e.clock.Now,
		Logger:   slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return st
}

func (e *env) put(t *testing.T, key string, data []byte, until time.Time) store.ObjectInfo {
	t.Helper()
	info, err := e.st.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{RetainUntil: until})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return info
}

func (e *env) path(parts ...string) string {
	return filepath.Join(append([]string{e.root}, parts...)...)
}

func readAll(t *testing.T, st store.Store, key string, offset int64) ([]byte, error) {
	t.Helper()
	rc, err := st.Get(t.Context(), key, store.GetOptions{Offset: offset})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func listKeys(t *testing.T, st store.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for info, err := range st.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

// dirNames lists a directory's entry names; a missing directory is empty.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// regularFiles lists the regular files under dir, relative to it.
func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// writeOnDisk replaces a store file's bytes behind the store's back.
func writeOnDisk(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o440); err != nil {
		t.Fatal(err)
	}
}

func TestLayoutAndRetentionRecord(t *testing.T) {
	e := newEnv(t)
	key := "backups/b1/manifest.json"
	data := []byte(`{"backup":"b1"}`)
	until := e.clock.Now().Add(2190*24*time.Hour + 987654321)
	info := e.put(t, key, data, until)

	for _, dir := range []string{"objects", "retention", "tmp", "objects/backups", "objects/backups/b1", "retention/backups", "retention/backups/b1"} {
		fi, err := os.Stat(e.path(dir))
		if err != nil {
			t.Fatal(err)
		}
		// Directories are created 0750; the umask may only take bits away.
		if perm := fi.Mode().Perm(); !fi.IsDir() || perm&^0o750 != 0 || perm&0o700 != 0o700 {
			t.Errorf("%s: mode %s, want a directory with mode 0750 (less the umask)", dir, fi.Mode())
		}
	}
	objPath, recPath := e.path("objects", "backups", "b1", "manifest.json"), e.path("retention", "backups", "b1", "manifest.json.json")
	for _, p := range []string{objPath, recPath} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o440 {
			t.Errorf("%s: mode %s, want -r--r-----", p, fi.Mode())
		}
	}
	if got, err := os.ReadFile(objPath); err != nil || !bytes.Equal(got, data) {
		t.Errorf("object file = %q, %v; want %q", got, err, data)
	}
	if names := dirNames(t, e.path("tmp")); len(names) != 0 {
		t.Errorf("tmp/ after Put = %q, want empty", names)
	}

	raw, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("retention record is not a JSON object: %v\n%s", err, raw)
	}
	wantFields := []string{"created", "format", "key", "retainUntil", "sha256", "size"}
	gotFields := slices.Sorted(func(yield func(string) bool) {
		for k := range fields {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(gotFields, wantFields) {
		t.Errorf("retention record fields = %q, want %q", gotFields, wantFields)
	}
	var rec struct {
		Format      string `json:"format"`
		Key         string `json:"key"`
		Size        int64  `json:"size"`
		SHA256      string `json:"sha256"`
		Created     string `json:"created"`
		RetainUntil string `json:"retainUntil"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Format != "lifeboat.dev/fs-retention/v1" || rec.Key != key || rec.Size != int64(len(data)) || rec.SHA256 != sha256Hex(data) {
		t.Errorf("retention record = %+v", rec)
	}
	created, err := time.Parse(time.RFC3339Nano, rec.Created)
	if err != nil || !strings.HasSuffix(rec.Created, "Z") || !created.Equal(e.clock.Now()) {
		t.Errorf("created = %q (%v), want the store clock's time %s in UTC", rec.Created, err, e.clock.Now().UTC().Format(time.RFC3339Nano))
	}
	retain, err := time.Parse(time.RFC3339Nano, rec.RetainUntil)
	if err != nil || !strings.HasSuffix(rec.RetainUntil, "Z") || !retain.Equal(until) {
		t.Errorf("retainUntil = %q (%v), want %s in UTC", rec.RetainUntil, err, until.UTC().Format(time.RFC3339Nano))
	}
	if !info.RetainUntil.Equal(until) || !info.Created.Equal(created) {
		t.Errorf("Put returned %+v", info)
	}
}

func TestReadOnly(t *testing.T) {
	e := newEnv(t)
	key := "backups/b1/manifest.json"
	data := []byte("manifest")
	e.put(t, key, data, e.clock.Now().Add(time.Hour))
	e.clock.Advance(2 * time.Hour) // retention over: only read-only stops Delete

	ro := e.open(t, true)
	ctx := t.Context()
	if _, err := ro.Put(ctx, "backups/b2/manifest.json", strings.NewReader("x"), store.PutOptions{RetainUntil: e.clock.Now().Add(time.Hour)}); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("Put error = %v, want ErrReadOnly", err)
	}
	if err := ro.Delete(ctx, key); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("Delete error = %v, want ErrReadOnly", err)
	}
	if got, err := readAll(t, ro, key, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get = %q, %v; want %q", got, err, data)
	}
	if info, err := ro.Stat(ctx, key); err != nil || info.SHA256 != sha256Hex(data) {
		t.Errorf("Stat = %+v, %v", info, err)
	}
	if keys := listKeys(t, ro, ""); !slices.Equal(keys, []string{key}) {
		t.Errorf("List = %q", keys)
	}
	if names := regularFiles(t, e.path("objects")); !slices.Equal(names, []string{key}) {
		t.Errorf("objects/ = %q after refused Put and Delete", names)
	}

	t.Run("MissingRoot", func(t *testing.T) {
		if _, err := fs.Open(t.Context(), fs.Options{Root: filepath.Join(t.TempDir(), "missing"), ReadOnly: true}); err == nil {
			t.Error("Open read-only of a missing root succeeded")
		}
	})
	t.Run("EmptyRootCreatesNothing", func(t *testing.T) {
		root := t.TempDir()
		st, err := fs.Open(t.Context(), fs.Options{Root: root, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if keys := listKeys(t, st, ""); len(keys) != 0 {
			t.Errorf("List = %q", keys)
		}
		if _, err := st.Stat(t.Context(), "a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Stat error = %v, want ErrNotFound", err)
		}
		if names := dirNames(t, root); len(names) != 0 {
			t.Errorf("read-only Open created %q", names)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts fs.Options
	}{
		{"NoRoot", fs.Options{}},
		{"RootIsFile", fs.Options{Root: file}},
		{"RootIsFileReadOnly", fs.Options{Root: file, ReadOnly: true}},
		{"RootBelowFile", fs.Options{Root: filepath.Join(file, "store")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := fs.Open(t.Context(), tc.opts); err == nil {
				t.Error("Open succeeded, want an error")
			}
		})
	}
	t.Run("ObjectsIsFile", func(t *testing.T) {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "objects"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := fs.Open(t.Context(), fs.Options{Root: root}); err == nil {
			t.Error("Open succeeded, want an error")
		}
	})
	t.Run("CreatesRoot", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "a", "b")
		if _, err := fs.Open(t.Context(), fs.Options{Root: root}); err != nil {
			t.Fatal(err)
		}
		if names := dirNames(t, root); !slices.Equal(names, []string{".lock", "objects", "retention", "tmp"}) {
			t.Errorf("root holds %q", names)
		}
	})
}

// TestMissingRetentionRecord simulates a crash between the two links of a
// Put: the object exists, its retention record does not.
func TestMissingRetentionRecord(t *testing.T) {
	e := newEnv(t)
	key := "backups/b1/artifacts/etcd"
	data := randomBytes(t, 200<<10)
	p := e.path("objects", "backups", "b1", "artifacts", "etcd")
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o440); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	info, err := e.st.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	want := store.ObjectInfo{Key: key, Size: int64(len(data)), SHA256: sha256Hex(data), Created: mtime}
	if info != want {
		t.Errorf("Stat = %+v, want %+v", info, want)
	}
	if !info.RetainUntil.IsZero() {
		t.Errorf("RetainUntil = %s, want zero (unknown)", info.RetainUntil)
	}
	e.clock.Advance(100 * 365 * 24 * time.Hour)
	if err := e.st.Delete(ctx, key); !errors.Is(err, store.ErrRetained) {
		t.Errorf("Delete error = %v, want ErrRetained", err)
	}
	if got, err := readAll(t, e.st, key, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get: %d bytes, %v", len(got), err)
	}
	if got, err := readAll(t, e.st, key, 100); err != nil || !bytes.Equal(got, data[100:]) {
		t.Errorf("Get from offset 100: %d bytes, %v", len(got), err)
	}
	var listed []store.ObjectInfo
	for info, err := range e.st.List(ctx, "backups/") {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, info)
	}
	if len(listed) != 1 || listed[0] != want {
		t.Errorf("List = %+v, want [%+v]", listed, want)
	}
	if _, err := e.st.Put(ctx, key, strings.NewReader("x"), store.PutOptions{RetainUntil: e.clock.Now().Add(time.Hour)}); !errors.Is(err, store.ErrExists) {
		t.Errorf("Put over an object without record: error = %v, want ErrExists", err)
	}
}

// TestStaleRetentionRecord simulates a crash in Delete between removing
// the object and removing its record: a later Put of the key succeeds and
// its own record wins.
func TestStaleRetentionRecord(t *testing.T) {
	e := newEnv(t)
	key := "backups/b1/manifest.json"
	e.put(t, key, []byte("old"), e.clock.Now().Add(time.Hour))
	if err := os.Remove(e.path("objects", "backups", "b1", "manifest.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat of an object whose file is gone: error = %v, want ErrNotFound", err)
	}
	if err := e.st.Delete(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete of an object whose file is gone: error = %v, want ErrNotFound", err)
	}
	data := []byte("new manifest")
	e.put(t, key, data, e.clock.Now().Add(48*time.Hour))
	info, err := e.st.Stat(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != sha256Hex(data) || !info.RetainUntil.Equal(e.clock.Now().Add(48*time.Hour)) {
		t.Errorf("Stat = %+v, want the new object's record", info)
	}
	if got, err := readAll(t, e.st, key, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get = %q, %v", got, err)
	}
	if !strings.Contains(e.logs.String(), "replaced stale retention record") {
		t.Errorf("no log line about the stale record; logs:\n%s", e.logs)
	}
}

func TestOpenRemovesStaleTemps(t *testing.T) {
	e := newEnv(t)
	// A crash after the object's link but before its temporary name was
	// removed leaves a second name of the object in tmp/.
	key := "backups/b1/manifest.json"
	data := []byte("manifest")
	e.put(t, key, data, e.clock.Now().Add(time.Hour))
	if err := os.Link(e.path("objects", "backups", "b1", "manifest.json"), e.path("tmp", "object-linked")); err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	for name, age := range map[string]time.Duration{
		"object-old":    2 * time.Hour,
		"retention-old": 61 * time.Minute,
		"object-linked": 3 * time.Hour,
		"object-new":    10 * time.Minute,
		"object-future": -time.Hour,
	} {
		p := e.path("tmp", name)
		if name != "object-linked" {
			if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	e.open(t, true) // read-only: removes nothing
	if names := dirNames(t, e.path("tmp")); len(names) != 5 {
		t.Errorf("read-only Open changed tmp/: %q", names)
	}
	e.open(t, false)
	if names := dirNames(t, e.path("tmp")); !slices.Equal(names, []string{"object-future", "object-new"}) {
		t.Errorf("tmp/ after Open = %q, want the two recent files", names)
	}
	logs := e.logs.String()
	for _, name := range []string{"object-old", "retention-old", "object-linked"} {
		if !strings.Contains(logs, "removed stale temporary file") || !strings.Contains(logs, name) {
			t.Errorf("no log line for the removal of %s; logs:\n%s", name, logs)
		}
	}
	if got, err := readAll(t, e.st, key, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get after removing a second name of the object = %q, %v", got, err)
	}
}

// TestStaleTempsAgeIsRealTime checks that Open measures the age of files
// in tmp/ by real time, the time of their modification times, not by the
// store's clock: a clock ahead must not make the file of a Put in progress
// look stale, and a clock behind must not keep a leftover forever.
func TestStaleTempsAgeIsRealTime(t *testing.T) {
	root := t.TempDir()
	if _, err := fs.Open(t.Context(), fs.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	fresh, old := filepath.Join(root, "tmp", "object-fresh"), filepath.Join(root, "tmp", "object-old")
	writeOld := func() {
		if err := os.WriteFile(old, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		then := time.Now().Add(-2 * time.Hour)
		if err := os.Chtimes(old, then, then); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(fresh, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeOld()
	for _, skew := range []time.Duration{2 * time.Hour, -3 * time.Hour} {
		now := func() time.Time { return time.Now().Add(skew) }
		if _, err := fs.Open(t.Context(), fs.Options{Root: root, Now: now}); err != nil {
			t.Fatal(err)
		}
		if names := dirNames(t, filepath.Join(root, "tmp")); !slices.Equal(names, []string{"object-fresh"}) {
			t.Errorf("clock off by %s: tmp/ after Open = %q, want only the fresh file", skew, names)
		}
		writeOld()
	}
}

func TestOpenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	root := filepath.Join(t.TempDir(), "store")
	if _, err := fs.Open(ctx, fs.Options{Root: root}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a cancelled context: error = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open with a cancelled context created the root (stat error %v)", err)
	}
}

// TestPutSyncsExistingParents: a directory that exists may not be durable
// yet (another Put created it and has not fsynced its parent), so a Put
// fsyncs every directory from objects/ and retention/ down to the one its
// files are linked in, whoever created them.
func TestPutSyncsExistingParents(t *testing.T) {
	e := newEnv(t)
	for _, base := range []string{"objects", "retention"} {
		if err := os.MkdirAll(e.path(base, "backups", "b1", "artifacts"), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	synced := map[string]bool{}
	fs.SetHooks(e.st, fs.Hooks{SyncDir: func(dir string) error {
		mu.Lock()
		synced[dir] = true
		mu.Unlock()
		return fs.SyncDirForTest(dir)
	}})
	e.put(t, "backups/b1/artifacts/etcd", []byte("etcd"), e.clock.Now().Add(time.Hour))
	for _, base := range []string{"objects", "retention"} {
		for _, dir := range []string{"", "backups", "backups/b1", "backups/b1/artifacts"} {
			if p := e.path(base, dir); !synced[p] {
				t.Errorf("Put did not fsync %s", p)
			}
		}
	}
}

// TestPutStartsWriteback: a large object's writeback is started chunk by
// chunk as it is written, each call over bytes just written and never past
// them, so the fsync at the end waits for what is still in flight; the
// object is still whole. The real call is made and must succeed here.
func TestPutStartsWriteback(t *testing.T) {
	e := newEnv(t)
	type call struct{ off, n, size int64 }
	var calls []call
	fs.SetHooks(e.st, fs.Hooks{StartWriteback: func(f *os.File, off, n int64) {
		fi, err := f.Stat()
		if err != nil {
			t.Errorf("stat the temporary file: %v", err)
			return
		}
		calls = append(calls, call{off, n, fi.Size()})
		if err := fs.WritebackForTest(f, off, n); err != nil {
			t.Errorf("start writeback of %d bytes at %d: %v", n, off, err)
		}
	}})
	data := make([]byte, 2*fs.WritebackChunk+5<<20)
	rand.Read(data)
	e.put(t, "backups/b1/artifacts/etcd", data, e.clock.Now().Add(time.Hour))
	if len(calls) != 2 {
		t.Fatalf("writeback started %d times for %d bytes, want 2 (every %d): %v", len(calls), len(data), fs.WritebackChunk, calls)
	}
	var next int64
	for _, c := range calls {
		// Each call covers what was written since the last one, up to the
		// file's size at the time: written, and nothing beyond.
		if c.off != next || c.n < fs.WritebackChunk || c.off+c.n != c.size || c.size >= int64(len(data)) {
			t.Fatalf("writeback calls %v: want contiguous chunks of at least %d bytes, each ending at the bytes written so far, before the end", calls, fs.WritebackChunk)
		}
		next = c.off + c.n
	}
	rc, err := e.st.Get(t.Context(), "backups/b1/artifacts/etcd", store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object read back: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, data), err)
	}
	calls = nil
	e.put(t, "backups/b1/artifacts/small", make([]byte, 1<<20), e.clock.Now().Add(time.Hour))
	if len(calls) != 0 {
		t.Errorf("writeback started for a 1 MiB object: %v", calls)
	}
}

func TestCorruption(t *testing.T) {
	key := "backups/b1/artifacts/etcd"
	objRel := []string{"objects", "backups", "b1", "artifacts", "etcd"}
	t.Run("FlippedByte", func(t *testing.T) {
		e := newEnv(t)
		data := randomBytes(t, 3<<20)
		e.put(t, key, data, e.clock.Now().Add(time.Hour))
		bad := bytes.Clone(data)
		bad[len(bad)/2] ^= 0x40
		writeOnDisk(t, e.path(objRel...), bad)

		got, err := readAll(t, e.st, key, 0)
		if !errors.Is(err, store.ErrIntegrity) {
			t.Fatalf("Get error = %v, want ErrIntegrity", err)
		}
		// The bytes were handed out before the check at EOF.
		if !bytes.Equal(got, bad) {
			t.Errorf("Get returned %d bytes, want the %d bytes on disk", len(got), len(bad))
		}
		// A read from a later offset cannot be checked against the digest.
		if got, err := readAll(t, e.st, key, 1); err != nil || !bytes.Equal(got, bad[1:]) {
			t.Errorf("Get from offset 1: %d bytes, %v", len(got), err)
		}
		if info, err := e.st.Stat(t.Context(), key); err != nil || info.SHA256 != sha256Hex(data) {
			t.Errorf("Stat = %+v, %v; want the recorded digest", info, err)
		}
	})
	t.Run("Truncated", func(t *testing.T) {
		e := newEnv(t)
		data := randomBytes(t, 1000)
		e.put(t, key, data, e.clock.Now().Add(time.Hour))
		writeOnDisk(t, e.path(objRel...), data[:999])
		for _, off := range []int64{0, 10} {
			if _, err := e.st.Get(t.Context(), key, store.GetOptions{Offset: off}); !errors.Is(err, store.ErrIntegrity) {
				t.Errorf("Get from offset %d: error = %v, want ErrIntegrity", off, err)
			}
		}
	})
	t.Run("BadRecord", func(t *testing.T) {
		recPath := []string{"retention", "backups", "b1", "artifacts", "etcd.json"}
		for _, tc := range []struct {
			name   string
			mangle func(string) string
		}{
			{"NotJSON", func(string) string { return "{" }},
			{"UnknownField", func(s string) string { return strings.Replace(s, "{", `{"extra":1,`, 1) }},
			{"OtherFormat", func(s string) string { return strings.Replace(s, "/v1", "/v2", 1) }},
			{"OtherKey", func(s string) string { return strings.Replace(s, `"backups/b1`, `"backups/b2`, 1) }},
			{"BadDigest", func(s string) string { return strings.Replace(s, `"sha256":"`, `"sha256":"X`, 1) }},
			{"TrailingData", func(s string) string { return s + "{}" }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t)
				e.put(t, key, []byte("data"), e.clock.Now().Add(time.Hour))
				raw, err := os.ReadFile(e.path(recPath...))
				if err != nil {
					t.Fatal(err)
				}
				writeOnDisk(t, e.path(recPath...), []byte(tc.mangle(string(raw))))
				e.clock.Advance(2 * time.Hour)
				if _, err := e.st.Stat(t.Context(), key); !errors.Is(err, store.ErrIntegrity) {
					t.Errorf("Stat error = %v, want ErrIntegrity", err)
				}
				if _, err := e.st.Get(t.Context(), key, store.GetOptions{}); !errors.Is(err, store.ErrIntegrity) {
					t.Errorf("Get error = %v, want ErrIntegrity", err)
				}
				if err := e.st.Delete(t.Context(), key); !errors.Is(err, store.ErrIntegrity) {
					t.Errorf("Delete error = %v, want ErrIntegrity", err)
				}
				var errs int
				for _, err := range e.st.List(t.Context(), "") {
					if errors.Is(err, store.ErrIntegrity) {
						errs++
					}
				}
				if errs != 1 {
					t.Errorf("List yielded %d ErrIntegrity errors, want 1", errs)
				}
			})
		}
	})
}

// blockingReader hands out one chunk, reports that on started, then blocks
// until release is closed before handing out the rest.
type blockingReader struct {
	data    []byte
	pos     int
	started chan struct{}
	release chan struct{}
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.pos == 0 {
		n := copy(p[:min(len(p), 64<<10)], r.data)
		r.pos = n
		close(r.started)
		return n, nil
	}
	<-r.release
	if r.pos >= len(r.data) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.pos:])
	r.pos += n
	return n, nil
}

// TestPutInterrupted checks that a Put stopped in the middle of its stream
// leaves nothing visible, while it runs and after it is cancelled. (A
// process killed at that point leaves only the temporary file, which the
// next Open removes once it is an hour old.)
func TestPutInterrupted(t *testing.T) {
	e := newEnv(t)
	key := "backups/b1/artifacts/etcd"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := &blockingReader{data: randomBytes(t, 1<<20), started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := e.st.Put(ctx, key, r, store.PutOptions{RetainUntil: e.clock.Now().Add(time.Hour)})
		done <- err
	}()
	<-r.started

	if _, err := e.st.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat during Put: error = %v, want ErrNotFound", err)
	}
	if keys := listKeys(t, e.st, ""); len(keys) != 0 {
		t.Errorf("List during Put = %q", keys)
	}
	if files := regularFiles(t, e.path("objects")); len(files) != 0 {
		t.Errorf("objects/ during Put = %q", files)
	}
	if names := dirNames(t, e.path("tmp")); len(names) != 1 || !strings.HasPrefix(names[0], "object-") {
		t.Errorf("tmp/ during Put = %q, want one temporary object file", names)
	}

	cancel()
	close(r.release)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Put error = %v, want context.Canceled", err)
	}
	if _, err := e.st.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat after Put: error = %v, want ErrNotFound", err)
	}
	for _, dir := range []string{"objects", "retention", "tmp"} {
		if files := regularFiles(t, e.path(dir)); len(files) != 0 {
			t.Errorf("%s/ after cancelled Put = %q", dir, files)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	e := newEnv(t)
	key := "backups/x/manifest.json"
	e.put(t, key, []byte("{}"), e.clock.Now().Add(time.Hour))
	ctx := t.Context()

	_, err := e.st.Put(ctx, key, strings.NewReader("{}"), store.PutOptions{RetainUntil: e.clock.Now().Add(time.Hour)})
	if want := `fs store: put "backups/x/manifest.json": check key: object already exists`; err == nil || err.Error() != want {
		t.Errorf("Put of an existing key: error %q, want %q", err, want)
	}
	err = e.st.Delete(ctx, key)
	if want := `fs store: delete "backups/x/manifest.json": check retention: object is under retention until `; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Delete: error %q, want prefix %q", err, want)
	}
	_, err = e.st.Get(ctx, "backups/y/manifest.json", store.GetOptions{})
	if want := `fs store: get "backups/y/manifest.json": open object: object not found`; err == nil || err.Error() != want {
		t.Errorf("Get of a missing key: error %q, want %q", err, want)
	}
	_, err = e.st.Put(ctx, "backups/y/x", strings.NewReader("{}"), store.PutOptions{})
	if want := `fs store: put "backups/y/x": check options: retain-until time is required`; err == nil || err.Error() != want {
		t.Errorf("Put without retention: error %q, want %q", err, want)
	}
	_, err = e.st.Put(ctx, "backups/y/x", strings.NewReader("{}"), store.PutOptions{RetainUntil: e.clock.Now().Add(time.Hour), Size: 3})
	if want := `fs store: put "backups/y/x": check size: got 2 bytes, expected 3: object integrity check failed`; err == nil || err.Error() != want {
		t.Errorf("Put with wrong size: error %q, want %q", err, want)
	}
}

func TestKeyConflicts(t *testing.T) {
	for _, tc := range []struct{ first, second string }{
		{"a", "a/b"},
		{"a/b", "a"},
		{"a/b", "a/b/c"},
		{"a", "a.json/b"},
		{"a.json/b", "a"},
	} {
		t.Run(tc.first+"_then_"+tc.second, func(t *testing.T) {
			e := newEnv(t)
			e.put(t, tc.first, []byte("first"), e.clock.Now().Add(time.Hour))
			_, err := e.st.Put(t.Context(), tc.second, strings.NewReader("second"), store.PutOptions{RetainUntil: e.clock.Now().Add(time.Hour)})
			if !errors.Is(err, fs.ErrKeyConflict) || errors.Is(err, store.ErrExists) {
				t.Fatalf("Put(%q) error = %v, want ErrKeyConflict and not ErrExists", tc.second, err)
			}
			if got, err := readAll(t, e.st, tc.first, 0); err != nil || string(got) != "first" {
				t.Errorf("Get(%q) = %q, %v", tc.first, got, err)
			}
			if _, err := e.st.Stat(t.Context(), tc.second); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Stat(%q) error = %v, want ErrNotFound", tc.second, err)
			}
			if keys := listKeys(t, e.st, ""); !slices.Equal(keys, []string{tc.first}) {
				t.Errorf("List = %q", keys)
			}
			if names := dirNames(t, e.path("tmp")); len(names) != 0 {
				t.Errorf("tmp/ = %q", names)
			}
		})
	}
}

func TestSegmentLength(t *testing.T) {
	e := newEnv(t)
	ok := "backups/" + strings.Repeat("s", fs.MaxSegmentLength)
	e.put(t, ok, []byte("x"), e.clock.Now().Add(time.Hour))
	long := "backups/" + strings.Repeat("s", fs.MaxSegmentLength+1)
	if _, err := e.st.Put(t.Context(), long, strings.NewReader("x"), store.PutOptions{RetainUntil: e.clock.Now().Add(time.Hour)}); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("Put with a %d-byte segment: error = %v, want ErrInvalidKey", fs.MaxSegmentLength+1, err)
	}
	// Valid keys this store cannot hold are simply not there.
	for _, key := range []string{long, strings.Repeat("s", 300)} {
		if _, err := e.st.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Stat of a too long segment: error = %v, want ErrNotFound", err)
		}
		if _, err := e.st.Get(t.Context(), key, store.GetOptions{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get of a too long segment: error = %v, want ErrNotFound", err)
		}
		if err := e.st.Delete(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Delete of a too long segment: error = %v, want ErrNotFound", err)
		}
	}
	if keys := listKeys(t, e.st, long); len(keys) != 0 {
		t.Errorf("List(long prefix) = %q", keys)
	}
}

func TestSymlinksAreNotObjects(t *testing.T) {
	e := newEnv(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("outside the store"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, e.path("objects", "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Get(t.Context(), "link", store.GetOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of a symlink: error = %v, want ErrNotFound", err)
	}
	if _, err := e.st.Stat(t.Context(), "link"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat of a symlink: error = %v, want ErrNotFound", err)
	}
	if keys := listKeys(t, e.st, ""); len(keys) != 0 {
		t.Errorf("List = %q", keys)
	}
}

func TestDeleteRemovesFiles(t *testing.T) {
	e := newEnv(t)
	key := "backups/b1/manifest.json"
	e.put(t, key, []byte("x"), e.clock.Now().Add(time.Hour))
	e.put(t, "backups/b1/other", []byte("y"), e.clock.Now().Add(time.Hour))
	e.clock.Advance(time.Hour) // exactly at the end of retention
	if err := e.st.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if files := regularFiles(t, e.path("objects")); !slices.Equal(files, []string{"backups/b1/other"}) {
		t.Errorf("objects/ = %q", files)
	}
	if files := regularFiles(t, e.path("retention")); !slices.Equal(files, []string{"backups/b1/other.json"}) {
		t.Errorf("retention/ = %q", files)
	}
	if !strings.Contains(e.logs.String(), "object deleted") {
		t.Errorf("no log line for the deletion; logs:\n%s", e.logs)
	}
}

func TestGetCancelled(t *testing.T) {
	e := newEnv(t)
	key := "backups/b1/artifacts/etcd"
	e.put(t, key, randomBytes(t, 100<<10), e.clock.Now().Add(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	rc, err := e.st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := rc.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel: error = %v, want context.Canceled", err)
	}
}

func BenchmarkPut(b *testing.B) {
	const size = 64 << 20
	data := randomBytes(b, size)
	clock := storetest.NewClock(time.Now())
	st, err := fs.Open(b.Context(), fs.Options{Root: b.TempDir(), Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		key := fmt.Sprintf("bench/%08d", i)
		if _, err := st.Put(ctx, key, bytes.NewReader(data), store.PutOptions{RetainUntil: clock.Now().Add(time.Minute)}); err != nil {
			b.Fatal(err)
		}
		// Keep the disk use at one object.
		b.StopTimer()
		clock.Advance(time.Minute)
		if err := st.Delete(ctx, key); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

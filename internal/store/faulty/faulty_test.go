package faulty_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/faulty"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/store/storetest"
)

var errBoom = errors.New("boom")

func newStore(t *testing.T) *faulty.Store {
	t.Helper()
	inner, err := fs.Open(t.Context(), fs.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return faulty.New(inner)
}

func until() time.Time { return time.Now().Add(time.Hour) }

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, st store.Store, key string, data []byte) error {
	t.Helper()
	_, err := st.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{RetainUntil: until()})
	return err
}

func get(t *testing.T, st store.Store, key string, offset int64) ([]byte, error) {
	t.Helper()
	rc, err := st.Get(t.Context(), key, store.GetOptions{Offset: offset})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestConformance checks that the wrapper with no fault armed is a
// conforming store, and so is one whose armed faults match no key used.
func TestConformance(t *testing.T) {
	for _, armed := range []bool{false, true} {
		t.Run(fmt.Sprintf("armed=%v", armed), func(t *testing.T) {
			var clocks storetest.Clocks
			storetest.Run(t, storetest.Harness{
				New: func(t *testing.T) store.Store {
					inner, err := fs.Open(t.Context(), fs.Options{Root: t.TempDir(), Now: clocks.For(t).Now})
					if err != nil {
						t.Fatal(err)
					}
					st := faulty.New(inner)
					if armed {
						st.FailPutAfter("nomatch/*", 0, errBoom)
						st.FailGet("nomatch/*", errBoom)
						st.CorruptGet("nomatch/*", 0)
						st.TruncateGet("nomatch/*", 0)
						st.FailStat("nomatch/*", errBoom)
						st.FailDelete("nomatch/*", errBoom)
					}
					return st
				},
				Advance: func(t *testing.T, d time.Duration) { clocks.For(t).Advance(d) },
			})
		})
	}
}

func TestFailPutAfter(t *testing.T) {
	st := newStore(t)
	data := randomBytes(t, 3<<20)
	st.FailPutAfter("backups/*/artifacts/*", 1<<20+7, errBoom)

	key := "backups/b1/artifacts/etcd"
	if err := put(t, st, key, data); !errors.Is(err, errBoom) {
		t.Fatalf("Put error = %v, want errBoom", err)
	}
	if _, err := st.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat after failed Put: error = %v, want ErrNotFound", err)
	}
	// Keys that do not match, and streams shorter than the cut, pass.
	if err := put(t, st, "backups/b1/manifest.json", data); err != nil {
		t.Errorf("Put of a key that does not match: %v", err)
	}
	if err := put(t, st, "backups/b1/artifacts/small", data[:1<<20]); err != nil {
		t.Errorf("Put of a stream shorter than the cut: %v", err)
	}
	st.Disarm()
	if err := put(t, st, key, data); err != nil {
		t.Fatalf("Put after Disarm: %v", err)
	}
	if got, err := get(t, st, key, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get after Disarm: %d bytes, %v", len(got), err)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestFailPutAfterCutsExactly checks, with a recording inner store, that
// the inner store receives exactly n bytes and then the error.
func TestFailPutAfterCutsExactly(t *testing.T) {
	for _, n := range []int64{0, 1, 4096, 4097} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rec := &recordingStore{}
			st := faulty.New(rec)
			st.FailPutAfter("*", n, errBoom)
			src := &countingReader{r: bytes.NewReader(make([]byte, 10000))}
			if _, err := st.Put(t.Context(), "k", src, store.PutOptions{}); !errors.Is(err, errBoom) {
				t.Fatalf("Put error = %v, want errBoom", err)
			}
			if rec.got != n || src.n != n {
				t.Errorf("inner store got %d bytes, %d read from the source; want %d", rec.got, src.n, n)
			}
		})
	}
}

// recordingStore is a store.Store that only reads Put's stream.
type recordingStore struct {
	store.Store
	got int64
}

func (r *recordingStore) Put(_ context.Context, _ string, body io.Reader, _ store.PutOptions) (store.ObjectInfo, error) {
	buf := make([]byte, 1000) // small reads to cross the cut mid-buffer
	for {
		n, err := body.Read(buf)
		r.got += int64(n)
		if err == io.EOF {
			return store.ObjectInfo{}, nil
		}
		if err != nil {
			return store.ObjectInfo{}, err
		}
	}
}

func TestFailGet(t *testing.T) {
	st := newStore(t)
	data := []byte("manifest")
	if err := put(t, st, "backups/b1/manifest.json", data); err != nil {
		t.Fatal(err)
	}
	st.FailGet("backups/*/manifest.json", errBoom)
	if _, err := st.Get(t.Context(), "backups/b1/manifest.json", store.GetOptions{}); !errors.Is(err, errBoom) {
		t.Errorf("Get error = %v, want errBoom", err)
	}
	// Other keys and other methods are not affected.
	if _, err := st.Get(t.Context(), "backups/b1/other", store.GetOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of another key: error = %v, want ErrNotFound", err)
	}
	if _, err := st.Stat(t.Context(), "backups/b1/manifest.json"); err != nil {
		t.Errorf("Stat: %v", err)
	}
	st.Disarm()
	if got, err := get(t, st, "backups/b1/manifest.json", 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get after Disarm = %q, %v", got, err)
	}
}

func TestCorruptGet(t *testing.T) {
	st := newStore(t)
	key := "backups/b1/artifacts/etcd"
	data := randomBytes(t, 2<<20)
	if err := put(t, st, key, data); err != nil {
		t.Fatal(err)
	}
	const at = 1<<20 + 3
	st.CorruptGet(key, at)
	want := bytes.Clone(data)
	want[at] ^= 1
	for _, off := range []int64{0, 1000, at, at + 1} {
		got, err := get(t, st, key, off)
		if err != nil {
			t.Errorf("Get from %d: %v", off, err)
			continue
		}
		if !bytes.Equal(got, want[off:]) {
			t.Errorf("Get from %d: bytes differ from the data with bit 0 of byte %d flipped", off, at)
		}
	}
	if sha256.Sum256(want) == sha256.Sum256(data) {
		t.Fatal("test bug: corruption changed nothing")
	}
	st.Disarm()
	if got, err := get(t, st, key, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get after Disarm: %d bytes, %v", len(got), err)
	}
}

func TestTruncateGet(t *testing.T) {
	st := newStore(t)
	key := "backups/b1/artifacts/etcd"
	data := randomBytes(t, 100<<10)
	if err := put(t, st, key, data); err != nil {
		t.Fatal(err)
	}
	st.TruncateGet("backups/b1/*/*", 5000)
	st.TruncateGet("backups/b1/*/*", 7000) // the shortest cut wins
	got, err := get(t, st, key, 0)
	if err != nil || !bytes.Equal(got, data[:5000]) {
		t.Errorf("Get = %d bytes, %v; want the first 5000 bytes and a clean EOF", len(got), err)
	}
	got, err = get(t, st, key, 10)
	if err != nil || !bytes.Equal(got, data[10:5010]) {
		t.Errorf("Get from 10 = %d bytes, %v; want 5000 bytes from offset 10", len(got), err)
	}
	st.TruncateGet(key, 0)
	if got, err := get(t, st, key, 0); err != nil || len(got) != 0 {
		t.Errorf("Get with a cut at 0 = %d bytes, %v", len(got), err)
	}
}

func TestFailStatAndDelete(t *testing.T) {
	st := newStore(t)
	key := "backups/b1/manifest.json"
	if err := put(t, st, key, []byte("x")); err != nil {
		t.Fatal(err)
	}
	st.FailStat("backups/*/*", errBoom)
	st.FailDelete("backups/*/*", errBoom)
	if _, err := st.Stat(t.Context(), key); !errors.Is(err, errBoom) {
		t.Errorf("Stat error = %v, want errBoom", err)
	}
	if err := st.Delete(t.Context(), key); !errors.Is(err, errBoom) {
		t.Errorf("Delete error = %v, want errBoom", err)
	}
	st.Disarm()
	if _, err := st.Stat(t.Context(), key); err != nil {
		t.Errorf("Stat after Disarm: %v", err)
	}
	if err := st.Delete(t.Context(), key); !errors.Is(err, store.ErrRetained) {
		t.Errorf("Delete after Disarm: error = %v, want the inner store's ErrRetained", err)
	}
}

// TestNilErrorPanics: a fault that fails with a nil error is a test bug;
// FailPutAfter's cut stream would return (0, nil) forever and make Put
// spin, so arming one panics at once.
func TestNilErrorPanics(t *testing.T) {
	for name, arm := range map[string]func(*faulty.Store){
		"FailPutAfter": func(st *faulty.Store) { st.FailPutAfter("*", 10, nil) },
		"FailGet":      func(st *faulty.Store) { st.FailGet("*", nil) },
		"FailStat":     func(st *faulty.Store) { st.FailStat("*", nil) },
		"FailDelete":   func(st *faulty.Store) { st.FailDelete("*", nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("arming a fault with a nil error did not panic")
				}
				if msg := fmt.Sprint(r); !strings.Contains(msg, "nil error") || !strings.Contains(msg, name) {
					t.Errorf("panic message %q does not name %s and the nil error", msg, name)
				}
			}()
			arm(faulty.New(&recordingStore{}))
		})
	}
}

func TestBadPatternPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("arming a malformed pattern did not panic")
		}
	}()
	newStore(t).FailGet("[", errBoom)
}

// TestConcurrentArming runs Puts and Gets while faults are armed and
// disarmed; run it with -race.
func TestConcurrentArming(t *testing.T) {
	st := newStore(t)
	data := randomBytes(t, 10<<10)
	for i := range 4 {
		if err := put(t, st, fmt.Sprintf("k/%d", i), data); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var armer, workers sync.WaitGroup
	armer.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			st.FailPutAfter("p/*", 100, errBoom)
			st.CorruptGet("k/*", 5)
			st.TruncateGet("k/1", 10)
			st.Disarm()
		}
	})
	for w := range 4 {
		workers.Go(func() {
			for i := range 50 {
				key := fmt.Sprintf("p/%d-%d", w, i)
				if err := put(t, st, key, data); err != nil && !errors.Is(err, errBoom) {
					t.Errorf("Put(%q): %v", key, err)
				}
				if _, err := get(t, st, fmt.Sprintf("k/%d", i%4), 0); err != nil {
					t.Errorf("Get: %v", err)
				}
			}
		})
	}
	workers.Wait()
	close(stop)
	armer.Wait()
	st.Disarm()
	// Every Put either failed or stored the whole stream.
	for _, key := range listAll(t, st) {
		if got, err := get(t, st, key, 0); err != nil || !bytes.Equal(got, data) {
			t.Errorf("Get(%q) = %d bytes, %v", key, len(got), err)
		}
	}
}

func listAll(t *testing.T, st store.Store) []string {
	t.Helper()
	var keys []string
	for info, err := range st.List(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

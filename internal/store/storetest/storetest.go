package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Harness makes the stores the suite tests.
type Harness struct {
	// New returns a fresh, empty store. Each subtest calls it once with
	// its own t; the store must be cleaned up through t.Cleanup.
	New func(t *testing.T) store.Store
	// Advance moves forward by d the clock of the stores New made for the
	// same t. Such a clock must start within a minute of the real time
	// when New is called and move only when Advance is called (or with
	// real time).
	//
	// nil means the store uses real time: the retention-expiry tests then
	// use a retention of 2s and wait for it to pass.
	Advance func(t *testing.T, d time.Duration)
}

// Run runs the conformance suite against the stores h makes.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("storetest: Harness.New is nil")
	}
	s := &suite{h: h}
	t.Run("RoundTrip", s.testRoundTrip)
	t.Run("Stat", s.testStat)
	t.Run("PutExisting", s.testPutExisting)
	t.Run("PutRetention", s.testPutRetention)
	t.Run("PutFailingReader", s.testPutFailingReader)
	t.Run("PutCancelled", s.testPutCancelled)
	t.Run("PutExpected", s.testPutExpected)
	t.Run("GetMissing", s.testGetMissing)
	t.Run("KeyPrefixIsNotAnObject", s.testKeyPrefixIsNotAnObject)
	t.Run("GetOffset", s.testGetOffset)
	t.Run("InvalidKeys", s.testInvalidKeys)
	t.Run("LongestKey", s.testLongestKey)
	t.Run("List", s.testList)
	t.Run("Delete", s.testDelete)
	t.Run("ConcurrentPutSameKey", s.testConcurrentPutSameKey)
	t.Run("ConcurrentPutSameDirectory", s.testConcurrentPutSameDirectory)
}

type suite struct {
	h Harness
}

// errInjected is the error the suite's failing readers return.
var errInjected = errors.New("storetest: injected read failure")

const (
	// longRetention outlasts any test.
	longRetention = 48 * time.Hour
	// realShortRetention is the retention the expiry tests use on a
	// store that runs on real time.
	realShortRetention = 2 * time.Second
	// timeSlack is how far a store's Created may be from the real time of
	// the Put: a store's clock may be a server's, and S3 truncates to
	// seconds.
	timeSlack = 2 * time.Minute
)

func (s *suite) longUntil() time.Time { return time.Now().Add(longRetention) }

// shortUntil returns a retention the test can let pass with expire.
func (s *suite) shortUntil() time.Time {
	if s.h.Advance != nil {
		return time.Now().Add(time.Hour)
	}
	return time.Now().Add(realShortRetention)
}

// expire lets a retention set by shortUntil pass.
func (s *suite) expire(t *testing.T, until time.Time) {
	t.Helper()
	if s.h.Advance != nil {
		s.h.Advance(t, 2*time.Hour)
		return
	}
	// One second more for stores that truncate times to seconds.
	time.Sleep(time.Until(until) + time.Second)
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random bytes: %v", err)
	}
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func mustPut(t *testing.T, st store.Store, key string, data []byte, until time.Time) store.ObjectInfo {
	t.Helper()
	info, err := st.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{RetainUntil: until})
	if err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
	return info
}

// readAll reads the object from offset and closes the reader.
func readAll(t *testing.T, st store.Store, key string, offset int64) ([]byte, error) {
	t.Helper()
	rc, err := st.Get(t.Context(), key, store.GetOptions{Offset: offset})
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); cerr != nil && err == nil {
		t.Errorf("Get(%q).Close: %v", key, cerr)
	}
	return b, err
}

func mustGet(t *testing.T, st store.Store, key string, offset int64) []byte {
	t.Helper()
	b, err := readAll(t, st, key, offset)
	if err != nil {
		t.Fatalf("Get(%q, offset %d): %v", key, offset, err)
	}
	return b
}

func checkBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got %d bytes (sha256 %.12s), want %d bytes (sha256 %.12s)",
			what, len(got), sha256Hex(got), len(want), sha256Hex(want))
	}
}

// listAll collects List's output; it fails the test on an error.
func listAll(t *testing.T, st store.Store, prefix string) []store.ObjectInfo {
	t.Helper()
	var out []store.ObjectInfo
	for info, err := range st.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		out = append(out, info)
	}
	return out
}

func listKeys(t *testing.T, st store.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for _, info := range listAll(t, st, prefix) {
		keys = append(keys, info.Key)
	}
	return keys
}

// checkAbsent checks that key is visible through no method.
func checkAbsent(t *testing.T, st store.Store, key string) {
	t.Helper()
	if info, err := st.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat(%q) = %+v, %v; want ErrNotFound", key, info, err)
	}
	if rc, err := st.Get(t.Context(), key, store.GetOptions{}); !errors.Is(err, store.ErrNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("Get(%q) error = %v; want ErrNotFound", key, err)
	}
	if keys := listKeys(t, st, ""); slices.Contains(keys, key) {
		t.Errorf("List(\"\") = %q; contains %q", keys, key)
	}
}

func checkTime(t *testing.T, what string, got, want time.Time, slack time.Duration) {
	t.Helper()
	if d := got.Sub(want).Abs(); d > slack {
		t.Errorf("%s = %s, want %s (±%s)", what, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano), slack)
	}
}

func (s *suite) testRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		wrap func(io.Reader) io.Reader
	}{
		{"0B", 0, nil},
		{"1B", 1, nil},
		{"3MiB", 3 << 20, nil},
		{"OneByteReads", 10 << 10, func(r io.Reader) io.Reader { return iotest.DataErrReader(iotest.OneByteReader(r)) }},
		{"HalfReads", 1 << 20, iotest.HalfReader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := s.h.New(t)
			data := randomBytes(t, tc.size)
			var r io.Reader = bytes.NewReader(data)
			if tc.wrap != nil {
				r = tc.wrap(r)
			}
			key := "backups/b1/artifacts/" + tc.name
			info, err := st.Put(t.Context(), key, r, store.PutOptions{RetainUntil: s.longUntil()})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if info.Key != key || info.Size != int64(len(data)) || info.SHA256 != sha256Hex(data) {
				t.Errorf("Put returned %+v, want key %q, size %d, sha256 %s", info, key, len(data), sha256Hex(data))
			}
			checkBytes(t, "Get", mustGet(t, st, key, 0), data)
		})
	}
}

func (s *suite) testStat(t *testing.T) {
	st := s.h.New(t)
	data := randomBytes(t, 1000)
	key := "backups/b1/manifest.json"
	until := time.Now().Add(longRetention + 123456789*time.Nanosecond)
	before := time.Now()
	put, err := st.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{RetainUntil: until})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	after := time.Now()
	info, err := st.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != key {
		t.Errorf("Stat.Key = %q, want %q", info.Key, key)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Stat.Size = %d, want %d", info.Size, len(data))
	}
	if info.SHA256 != sha256Hex(data) {
		t.Errorf("Stat.SHA256 = %q, want %q", info.SHA256, sha256Hex(data))
	}
	if info.Created.Before(before.Add(-timeSlack)) || info.Created.After(after.Add(timeSlack)) {
		t.Errorf("Stat.Created = %s, want between %s and %s (±%s)", info.Created, before, after, timeSlack)
	}
	checkTime(t, "Stat.RetainUntil", info.RetainUntil, until, time.Second)
	// What Put returned describes the same object.
	if put.Key != info.Key || put.Size != info.Size || put.SHA256 != info.SHA256 {
		t.Errorf("Put returned %+v, Stat %+v", put, info)
	}
	checkTime(t, "Put's Created", put.Created, info.Created, time.Second)
	checkTime(t, "Put's RetainUntil", put.RetainUntil, info.RetainUntil, time.Second)
}

func (s *suite) testPutExisting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second func(first []byte) []byte
	}{
		{"DifferentBytes", func([]byte) []byte { return []byte("replacement") }},
		{"SameBytes", func(first []byte) []byte { return first }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := s.h.New(t)
			key := "evidence/000001-backup-b1.json"
			first := randomBytes(t, 4096)
			mustPut(t, st, key, first, s.longUntil())
			before, err := st.Stat(t.Context(), key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			_, err = st.Put(t.Context(), key, bytes.NewReader(tc.second(first)), store.PutOptions{RetainUntil: s.longUntil().Add(time.Hour)})
			if !errors.Is(err, store.ErrExists) {
				t.Fatalf("second Put error = %v, want ErrExists", err)
			}
			checkBytes(t, "Get after second Put", mustGet(t, st, key, 0), first)
			after, err := st.Stat(t.Context(), key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if after.Size != before.Size || after.SHA256 != before.SHA256 ||
				!after.Created.Equal(before.Created) || !after.RetainUntil.Equal(before.RetainUntil) {
				t.Errorf("Stat changed by the refused Put: before %+v, after %+v", before, after)
			}
		})
	}
}

func (s *suite) testPutRetention(t *testing.T) {
	for _, tc := range []struct {
		name  string
		until time.Time
	}{
		{"Zero", time.Time{}},
		{"Past", time.Now().Add(-time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := s.h.New(t)
			key := "backups/b1/manifest.json"
			if _, err := st.Put(t.Context(), key, strings.NewReader("x"), store.PutOptions{RetainUntil: tc.until}); err == nil {
				t.Fatalf("Put with RetainUntil %v succeeded, want an error", tc.until)
			}
			checkAbsent(t, st, key)
		})
	}
}

// failingReader returns data up to failAt bytes, then err.
type failingReader struct {
	data   []byte
	failAt int
	pos    int
	err    error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.pos >= r.failAt {
		return 0, r.err
	}
	n := copy(p, r.data[r.pos:r.failAt])
	r.pos += n
	return n, nil
}

func (s *suite) testPutFailingReader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		failAt int
	}{
		{"AtStart", 0},
		{"After1B", 1},
		{"After1.5MiB", 3 << 19},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := s.h.New(t)
			key := "backups/b1/artifacts/etcd"
			data := randomBytes(t, 2<<20)
			r := &failingReader{data: data, failAt: tc.failAt, err: errInjected}
			_, err := st.Put(t.Context(), key, r, store.PutOptions{RetainUntil: s.longUntil()})
			if !errors.Is(err, errInjected) {
				t.Fatalf("Put error = %v, want one wrapping the reader's error", err)
			}
			checkAbsent(t, st, key)
			mustPut(t, st, key, data, s.longUntil())
			checkBytes(t, "Get after retried Put", mustGet(t, st, key, 0), data)
		})
	}
}

// cancellingReader serves data in chunks and calls cancel after the first.
type cancellingReader struct {
	data   []byte
	chunk  int
	pos    int
	cancel context.CancelFunc
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if r.pos >= len(r.data) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.chunk)], r.data[r.pos:])
	r.pos += n
	r.cancel()
	return n, nil
}

func (s *suite) testPutCancelled(t *testing.T) {
	t.Run("Before", func(t *testing.T) {
		st := s.h.New(t)
		key := "backups/b1/artifacts/etcd"
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := st.Put(ctx, key, bytes.NewReader(randomBytes(t, 1000)), store.PutOptions{RetainUntil: s.longUntil()})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put error = %v, want context.Canceled", err)
		}
		checkAbsent(t, st, key)
	})
	t.Run("MidStream", func(t *testing.T) {
		st := s.h.New(t)
		key := "backups/b1/artifacts/etcd"
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		data := randomBytes(t, 4<<20)
		r := &cancellingReader{data: data, chunk: 64 << 10, cancel: cancel}
		_, err := st.Put(ctx, key, r, store.PutOptions{RetainUntil: s.longUntil()})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put error = %v, want context.Canceled", err)
		}
		checkAbsent(t, st, key)
		mustPut(t, st, key, data, s.longUntil())
	})
}

func (s *suite) testPutExpected(t *testing.T) {
	data := randomBytes(t, 100<<10)
	wrongSum := sha256Hex([]byte("something else"))
	for _, tc := range []struct {
		name string
		opts store.PutOptions
		ok   bool
	}{
		{"SHA256Match", store.PutOptions{SHA256: sha256Hex(data)}, true},
		{"SizeMatch", store.PutOptions{Size: int64(len(data))}, true},
		{"BothMatch", store.PutOptions{SHA256: sha256Hex(data), Size: int64(len(data))}, true},
		{"SHA256Mismatch", store.PutOptions{SHA256: wrongSum}, false},
		{"SHA256MismatchSizeMatch", store.PutOptions{SHA256: wrongSum, Size: int64(len(data))}, false},
		{"SizeTooSmall", store.PutOptions{Size: int64(len(data)) - 1}, false},
		{"SizeTooLarge", store.PutOptions{Size: int64(len(data)) + 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := s.h.New(t)
			key := "backups/b1/artifacts/manifests"
			opts := tc.opts
			opts.RetainUntil = s.longUntil()
			_, err := st.Put(t.Context(), key, bytes.NewReader(data), opts)
			if tc.ok {
				if err != nil {
					t.Fatalf("Put: %v", err)
				}
				checkBytes(t, "Get", mustGet(t, st, key, 0), data)
				return
			}
			if !errors.Is(err, store.ErrIntegrity) {
				t.Fatalf("Put error = %v, want ErrIntegrity", err)
			}
			checkAbsent(t, st, key)
			mustPut(t, st, key, data, s.longUntil())
		})
	}
}

func (s *suite) testGetMissing(t *testing.T) {
	st := s.h.New(t)
	mustPut(t, st, "backups/b1/manifest.json", []byte("{}"), s.longUntil())
	for _, key := range []string{"backups/b2/manifest.json", "missing", "backups/b1/manifest.jso"} {
		checkAbsent(t, st, key)
		if err := st.Delete(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Delete(%q) error = %v, want ErrNotFound", key, err)
		}
	}
}

// testKeyPrefixIsNotAnObject checks that the "directories" of a key are
// not objects, and that a key is not a directory.
func (s *suite) testKeyPrefixIsNotAnObject(t *testing.T) {
	st := s.h.New(t)
	mustPut(t, st, "backups/b1/manifest.json", []byte("{}"), s.longUntil())
	for _, key := range []string{"backups", "backups/b1", "backups/b1/manifest.json/x"} {
		checkAbsent(t, st, key)
	}
}

func (s *suite) testGetOffset(t *testing.T) {
	st := s.h.New(t)
	key := "backups/b1/artifacts/volume"
	data := randomBytes(t, 300<<10)
	mustPut(t, st, key, data, s.longUntil())
	for _, off := range []int64{0, 1, 1000, 1 << 17, int64(len(data)) - 1, int64(len(data))} {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			checkBytes(t, fmt.Sprintf("Get from offset %d", off), mustGet(t, st, key, off), data[off:])
		})
	}
	t.Run("Negative", func(t *testing.T) {
		if rc, err := st.Get(t.Context(), key, store.GetOptions{Offset: -1}); err == nil {
			rc.Close()
			t.Fatal("Get with offset -1 succeeded, want an error")
		}
	})
}

func (s *suite) testInvalidKeys(t *testing.T) {
	st := s.h.New(t)
	mustPut(t, st, "a/b", []byte("x"), s.longUntil())
	for _, tc := range []struct{ name, key string }{
		{"Empty", ""},
		{"LeadingSlash", "/a"},
		{"TrailingSlash", "a/"},
		{"EmptySegment", "a//b"},
		{"DotSegment", "a/./b"},
		{"DotDotSegment", "a/../b"},
		{"OnlyDotDot", ".."},
		{"Space", "a b"},
		{"NonASCII", "ä"},
		{"Backslash", `a\b`},
		{"NUL", "a\x00b"},
		{"Overlong", strings.Repeat("a", store.MaxKeyLength+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if _, err := st.Put(ctx, tc.key, strings.NewReader("x"), store.PutOptions{RetainUntil: s.longUntil()}); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Put error = %v, want ErrInvalidKey", err)
			}
			if rc, err := st.Get(ctx, tc.key, store.GetOptions{}); !errors.Is(err, store.ErrInvalidKey) {
				if err == nil {
					rc.Close()
				}
				t.Errorf("Get error = %v, want ErrInvalidKey", err)
			}
			if _, err := st.Stat(ctx, tc.key); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Stat error = %v, want ErrInvalidKey", err)
			}
			if err := st.Delete(ctx, tc.key); !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("Delete error = %v, want ErrInvalidKey", err)
			}
		})
	}
	for _, prefix := range []string{"/", "/a", "a//", "a b", "../a"} {
		t.Run("ListPrefix"+fmt.Sprintf("%q", prefix), func(t *testing.T) {
			var errs, items int
			for _, err := range st.List(t.Context(), prefix) {
				if err == nil {
					items++
					continue
				}
				errs++
				if !errors.Is(err, store.ErrInvalidKey) {
					t.Errorf("List error = %v, want ErrInvalidKey", err)
				}
			}
			if errs != 1 || items != 0 {
				t.Errorf("List(%q) yielded %d objects and %d errors, want 0 and 1", prefix, items, errs)
			}
		})
	}
}

// testLongestKey checks a key of exactly store.MaxKeyLength bytes, made
// of segments short enough for every store.
func (s *suite) testLongestKey(t *testing.T) {
	st := s.h.New(t)
	var b strings.Builder
	for b.Len() < store.MaxKeyLength {
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		n := min(200, store.MaxKeyLength-b.Len())
		b.WriteString(strings.Repeat(string(rune('a'+b.Len()%26)), n))
	}
	key := b.String()
	if len(key) != store.MaxKeyLength || store.ValidateKey(key) != nil {
		t.Fatalf("test bug: key of %d bytes, valid: %v", len(key), store.ValidateKey(key))
	}
	data := []byte("longest key")
	mustPut(t, st, key, data, s.longUntil())
	checkBytes(t, "Get", mustGet(t, st, key, 0), data)
	if keys := listKeys(t, st, ""); !slices.Equal(keys, []string{key}) {
		t.Errorf("List = %q, want the long key", keys)
	}
}

func (s *suite) testList(t *testing.T) {
	t.Run("Empty", func(t *testing.T) {
		st := s.h.New(t)
		for _, prefix := range []string{"", "backups", "backups/"} {
			if keys := listKeys(t, st, prefix); len(keys) != 0 {
				t.Errorf("List(%q) on an empty store = %q", prefix, keys)
			}
		}
	})
	t.Run("Prefix", func(t *testing.T) {
		st := s.h.New(t)
		all := []string{
			"backups-c",
			"backups/a/y",
			"backups/b",
			"backups/b1/x",
			"backups/b2",
			"evidence/1.json",
			"reports/r/report.json",
		}
		for _, key := range []string{all[4], all[0], all[6], all[2], all[5], all[1], all[3]} {
			mustPut(t, st, key, []byte(key), s.longUntil())
		}
		for _, tc := range []struct {
			prefix string
			want   []string
		}{
			{"", all},
			{"backups", all[:5]},
			{"backups/", all[1:5]},
			{"backups/b", all[2:5]},
			{"backups/b1", all[3:4]},
			{"backups/b1/", all[3:4]},
			{"backups/b/", nil},
			{"backups/b2", all[4:5]},
			{"backups/a", all[1:2]},
			{"evidence/1.json", all[5:6]},
			{"evidence/1.json/", nil},
			{"reports/r/", all[6:]},
			{"r", all[6:]},
			{"nothing", nil},
			{"nothing/", nil},
		} {
			if got := listKeys(t, st, tc.prefix); !slices.Equal(got, tc.want) {
				t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
			}
		}
	})
	t.Run("Order", func(t *testing.T) {
		st := s.h.New(t)
		// Byte order: '-' < '.' < '/' < '0' < 'A' < '_' < 'a'. A walk of
		// directories in name order gets these wrong.
		want := []string{"A", "Z", "_", "a-c", "a.c", "a/b", "a/c-d", "a/c/d", "a0", "a_"}
		for _, i := range []int{7, 3, 9, 0, 5, 2, 8, 4, 6, 1} {
			mustPut(t, st, want[i], []byte(want[i]), s.longUntil())
		}
		if got := listKeys(t, st, ""); !slices.Equal(got, want) {
			t.Errorf("List(\"\") = %q, want %q", got, want)
		}
		if got := listKeys(t, st, "a"); !slices.Equal(got, want[3:]) {
			t.Errorf("List(\"a\") = %q, want %q", got, want[3:])
		}
	})
	t.Run("InfoMatchesStat", func(t *testing.T) {
		st := s.h.New(t)
		for i, n := range []int{0, 1, 5000} {
			mustPut(t, st, fmt.Sprintf("k/%d", i), randomBytes(t, n), s.longUntil())
		}
		infos := listAll(t, st, "")
		if len(infos) != 3 {
			t.Fatalf("List yielded %d objects, want 3", len(infos))
		}
		for _, got := range infos {
			want, err := st.Stat(t.Context(), got.Key)
			if err != nil {
				t.Fatalf("Stat(%q): %v", got.Key, err)
			}
			if got.Size != want.Size || got.SHA256 != want.SHA256 {
				t.Errorf("List yielded %+v, Stat says %+v", got, want)
			}
			checkTime(t, "List's Created", got.Created, want.Created, time.Second)
			checkTime(t, "List's RetainUntil", got.RetainUntil, want.RetainUntil, time.Second)
		}
	})
	t.Run("CancelledBefore", func(t *testing.T) {
		st := s.h.New(t)
		mustPut(t, st, "a", []byte("a"), s.longUntil())
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var items, errs int
		for _, err := range st.List(ctx, "") {
			if err != nil {
				errs++
				if !errors.Is(err, context.Canceled) {
					t.Errorf("List error = %v, want context.Canceled", err)
				}
				continue
			}
			items++
		}
		if items != 0 || errs != 1 {
			t.Errorf("List with a cancelled context yielded %d objects and %d errors, want 0 and 1", items, errs)
		}
	})
	t.Run("CancelledDuring", func(t *testing.T) {
		st := s.h.New(t)
		for _, key := range []string{"a", "b", "c", "d"} {
			mustPut(t, st, key, []byte(key), s.longUntil())
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var got []string
		var errs []error
		for info, err := range st.List(ctx, "") {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if len(errs) > 0 {
				t.Errorf("List yielded %q after an error", info.Key)
			}
			got = append(got, info.Key)
			cancel()
		}
		if len(got) != 1 || len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
			t.Errorf("List cancelled after the first object yielded %q and errors %v, want one object and context.Canceled", got, errs)
		}
	})
	t.Run("Break", func(t *testing.T) {
		st := s.h.New(t)
		for _, key := range []string{"a", "b", "c"} {
			mustPut(t, st, key, []byte(key), s.longUntil())
		}
		n := 0
		for _, err := range st.List(t.Context(), "") {
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			n++
			break
		}
		if n != 1 {
			t.Errorf("loop ran %d times", n)
		}
		if keys := listKeys(t, st, ""); len(keys) != 3 {
			t.Errorf("List after a broken loop = %q", keys)
		}
	})
}

func (s *suite) testDelete(t *testing.T) {
	t.Run("Retained", func(t *testing.T) {
		st := s.h.New(t)
		key := "backups/b1/manifest.json"
		data := []byte(`{"backup":"b1"}`)
		mustPut(t, st, key, data, s.longUntil())
		if err := st.Delete(t.Context(), key); !errors.Is(err, store.ErrRetained) {
			t.Fatalf("Delete error = %v, want ErrRetained", err)
		}
		checkBytes(t, "Get after refused Delete", mustGet(t, st, key, 0), data)
		if _, err := st.Stat(t.Context(), key); err != nil {
			t.Errorf("Stat after refused Delete: %v", err)
		}
		if keys := listKeys(t, st, ""); !slices.Equal(keys, []string{key}) {
			t.Errorf("List after refused Delete = %q", keys)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		st := s.h.New(t)
		key := "backups/b1/manifest.json"
		other := "backups/b1/artifacts/etcd"
		until := s.shortUntil()
		mustPut(t, st, key, []byte("old"), until)
		mustPut(t, st, other, []byte("kept"), s.longUntil())
		if err := st.Delete(t.Context(), key); !errors.Is(err, store.ErrRetained) {
			t.Fatalf("Delete before retention ends: error = %v, want ErrRetained", err)
		}
		s.expire(t, until)
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := st.Delete(t.Context(), key)
			if err == nil {
				break
			}
			// A store on real time may run on a server's clock.
			if s.h.Advance != nil || !errors.Is(err, store.ErrRetained) || time.Now().After(deadline) {
				t.Fatalf("Delete after retention: %v", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		checkAbsent(t, st, key)
		if err := st.Delete(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second Delete error = %v, want ErrNotFound", err)
		}
		if err := st.Delete(t.Context(), other); !errors.Is(err, store.ErrRetained) {
			t.Errorf("Delete of an object still retained: error = %v, want ErrRetained", err)
		}
		checkBytes(t, "Get of the other object", mustGet(t, st, other, 0), []byte("kept"))
		// The key is free again.
		mustPut(t, st, key, []byte("new"), s.longUntil())
		checkBytes(t, "Get after Put of a deleted key", mustGet(t, st, key, 0), []byte("new"))
		info, err := st.Stat(t.Context(), key)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if info.SHA256 != sha256Hex([]byte("new")) || info.Size != 3 {
			t.Errorf("Stat after Put of a deleted key = %+v", info)
		}
	})
}

func (s *suite) testConcurrentPutSameKey(t *testing.T) {
	const n = 8
	st := s.h.New(t)
	key := "backups/b1/manifest.json"
	datas := make([][]byte, n)
	for i := range datas {
		datas[i] = randomBytes(t, 64<<10+i)
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = st.Put(t.Context(), key, bytes.NewReader(datas[i]), store.PutOptions{RetainUntil: s.longUntil()})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("Puts %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrExists):
			t.Errorf("Put %d error = %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no Put succeeded")
	}
	checkBytes(t, "Get", mustGet(t, st, key, 0), datas[winner])
	info, err := st.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.SHA256 != sha256Hex(datas[winner]) {
		t.Errorf("Stat.SHA256 = %s, want the winner's %s", info.SHA256, sha256Hex(datas[winner]))
	}
}

func (s *suite) testConcurrentPutSameDirectory(t *testing.T) {
	const n = 8
	st := s.h.New(t)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			key := fmt.Sprintf("backups/b1/artifacts/a%d", i)
			_, errs[i] = st.Put(t.Context(), key, strings.NewReader(key), store.PutOptions{RetainUntil: s.longUntil()})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put %d: %v", i, err)
		}
	}
	if keys := listKeys(t, st, "backups/b1/artifacts/"); len(keys) != n {
		t.Errorf("List = %q, want %d keys", keys, n)
	}
	for i := range n {
		key := fmt.Sprintf("backups/b1/artifacts/a%d", i)
		checkBytes(t, "Get "+key, mustGet(t, st, key, 0), []byte(key))
	}
}

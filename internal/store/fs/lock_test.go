package fs_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

// lockGrace is how long an operation that reported it is about to wait
// for a store lock held elsewhere is watched to check that it does wait.
const lockGrace = 100 * time.Millisecond

// waitEither waits until an operation running in another goroutine either
// finishes, reporting its result on done, or reports on waiting that it is
// about to wait for the store lock, which another operation holds; it then
// checks that the operation does not finish within lockGrace, as it would
// if the lock did not exclude it (it finishes once the lock is released).
// A result taken from done is put back for the test to check. It may run
// outside the test's goroutine, so it reports with t.Errorf.
func waitEither(t *testing.T, done chan error, waiting chan string, op string) {
	t.Helper()
	select {
	case err := <-done:
		done <- err
	case got := <-waiting:
		if got != op {
			t.Errorf("%q waits for the store lock, want %q", got, op)
		}
		select {
		case err := <-done:
			done <- err
			t.Errorf("%s did not wait for the store lock held by another operation", op)
		case <-time.After(lockGrace):
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s neither finished nor waited for the store lock", op)
	}
}

// deleteStore returns the store a test deletes through: the env's own
// store, or a second store opened on the same root, which shares only the
// lock file with the first, as a second process would.
func deleteStore(t *testing.T, e *env, name string) *fs.Store {
	t.Helper()
	if name == "SecondStore" {
		return e.open(t, false)
	}
	return e.st
}

var deleteStoreNames = []string{"SameStore", "SecondStore"}

// TestDeleteDuringStaleRecordReplacement is window 1 of the review: a
// stale retention record (a crash in Delete between its two removals) has
// expired; Put B links its object; before B's record replaces the stale
// one, a Delete runs. It must not pass its retention check on the stale
// record and unlink B's object.
func TestDeleteDuringStaleRecordReplacement(t *testing.T) {
	for _, name := range deleteStoreNames {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			key := "backups/b1/manifest.json"
			e.put(t, key, []byte("old"), e.clock.Now().Add(time.Hour))
			if err := os.Remove(e.path("objects", "backups", "b1", "manifest.json")); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(2 * time.Hour) // the stale record has expired
			del := deleteStore(t, e, name)

			delWaiting := make(chan string, 1)
			delDone := make(chan error, 1)
			onDeleteLock := func(op string) {
				if op == "delete" {
					delWaiting <- op
				}
			}
			fs.SetHooks(del, fs.Hooks{BeforeLock: onDeleteLock})
			fs.SetHooks(e.st, fs.Hooks{
				BeforeLock: onDeleteLock,
				AfterObjectLink: func(string) {
					go func() { delDone <- del.Delete(t.Context(), key) }()
					waitEither(t, delDone, delWaiting, "delete")
				},
			})
			data := []byte("new manifest, retained")
			until := e.clock.Now().Add(48 * time.Hour)
			if _, err := e.st.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{RetainUntil: until}); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if err := <-delDone; !errors.Is(err, store.ErrRetained) {
				t.Errorf("Delete during Put: error = %v, want ErrRetained", err)
			}
			if got, err := readAll(t, e.st, key, 0); err != nil || !bytes.Equal(got, data) {
				t.Errorf("Get after Put and Delete = %q, %v; want %q", got, err, data)
			}
			if info, err := e.st.Stat(t.Context(), key); err != nil || !info.RetainUntil.Equal(until) {
				t.Errorf("Stat = %+v, %v; want the new object's record", info, err)
			}
		})
	}
}

// TestConcurrentDeletesAndPut is window 2 of the review: Delete D2 passes
// its retention check on an expired object A; Delete D1 removes A; Put B
// stores a new object under the key; then D2 goes on. It must not remove
// B's object or record.
func TestConcurrentDeletesAndPut(t *testing.T) {
	for _, name := range deleteStoreNames {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			key := "backups/b1/manifest.json"
			e.put(t, key, []byte("old"), e.clock.Now().Add(time.Hour))
			e.clock.Advance(2 * time.Hour)
			d2 := deleteStore(t, e, name)

			waiting := make(chan string, 10)
			onLock := func(op string) { waiting <- op }
			checked, release := make(chan struct{}), make(chan struct{})
			var paused atomic.Bool
			hooks := fs.Hooks{
				BeforeLock: onLock,
				AfterDeleteCheck: func(string) {
					if paused.CompareAndSwap(false, true) {
						close(checked)
						<-release
					}
				},
			}
			fs.SetHooks(e.st, hooks)
			if d2 != e.st {
				fs.SetHooks(d2, hooks)
			}

			d1Done, d2Done, putDone := make(chan error, 1), make(chan error, 1), make(chan error, 1)
			go func() { d2Done <- d2.Delete(t.Context(), key) }()
			<-checked
			select { // D2's own wait for the lock, if it took one
			case <-waiting:
			default:
			}
			go func() { d1Done <- e.st.Delete(t.Context(), key) }()
			waitEither(t, d1Done, waiting, "delete")
			data := []byte("new manifest, retained")
			until := e.clock.Now().Add(48 * time.Hour)
			go func() {
				_, err := e.st.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{RetainUntil: until})
				putDone <- err
			}()
			waitEither(t, putDone, waiting, "put")
			close(release)

			// With D2 holding the store lock, A still exists and the Put
			// may fail with ErrExists; if it succeeds, its object must
			// survive D2.
			putErr := <-putDone
			if putErr != nil && !errors.Is(putErr, store.ErrExists) {
				t.Fatalf("Put: %v", putErr)
			}
			if err := <-d2Done; err != nil {
				t.Errorf("Delete D2 (of the expired object): %v", err)
			}
			if err := <-d1Done; err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrRetained) {
				t.Errorf("Delete D1: error = %v, want nil, ErrNotFound or ErrRetained", err)
			}
			if putErr != nil {
				if _, err := e.st.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Stat after the Deletes of the only object: error = %v, want ErrNotFound", err)
				}
				return
			}
			if got, err := readAll(t, e.st, key, 0); err != nil || !bytes.Equal(got, data) {
				t.Errorf("Get after the Deletes = %q, %v; want the new object %q", got, err, data)
			}
			if info, err := e.st.Stat(t.Context(), key); err != nil || !info.RetainUntil.Equal(until) {
				t.Errorf("Stat = %+v, %v; want the new object's record", info, err)
			}
		})
	}
}

// TestDeleteChecksRecordMatchesObject: an expired retention record next
// to an object of another size (the object of a later Put, left by a crash
// before that Put's record replaced the stale one) says nothing about that
// object's retention, so Delete refuses it.
func TestDeleteChecksRecordMatchesObject(t *testing.T) {
	e := newEnv(t)
	key := "backups/b1/manifest.json"
	e.put(t, key, []byte("old"), e.clock.Now().Add(time.Hour))
	p := e.path("objects", "backups", "b1", "manifest.json")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	data := []byte("a newer object of another size")
	if err := os.WriteFile(p, data, 0o440); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	err := e.st.Delete(t.Context(), key)
	if !errors.Is(err, store.ErrRetained) {
		t.Fatalf("Delete error = %v, want ErrRetained", err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Errorf("object file after refused Delete = %q, %v", got, err)
	}
}

// TestConcurrentPutsAndDeletes runs Puts and Deletes of a few keys whose
// retentions end while they run; run it with -race. Every call ends in
// success or a store error it may return, and every object left reads
// back whole and matches its record.
func TestConcurrentPutsAndDeletes(t *testing.T) {
	e := newEnv(t)
	keys := []string{"k/a", "k/b"}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 30 {
				key := keys[(w+i)%len(keys)]
				if i%2 == 0 {
					data := bytes.Repeat([]byte{byte(w)}, 10+w*i)
					_, err := e.st.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{RetainUntil: e.clock.Now().Add(30 * time.Minute)})
					// The other workers advance the clock between reading it
					// and the Put's check: a retain-until already past is
					// refused, as it must be.
					if err != nil && !errors.Is(err, store.ErrExists) && !strings.Contains(err.Error(), "is not after the current time") {
						t.Errorf("Put(%q): %v", key, err)
					}
					continue
				}
				e.clock.Advance(2 * time.Minute)
				if err := e.st.Delete(t.Context(), key); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrRetained) {
					t.Errorf("Delete(%q): %v", key, err)
				}
			}
		})
	}
	wg.Wait()
	for _, key := range listKeys(t, e.st, "") {
		got, err := readAll(t, e.st, key, 0)
		if err != nil {
			t.Errorf("Get(%q) after the run: %v", key, err)
			continue
		}
		if info, err := e.st.Stat(t.Context(), key); err != nil || info.Size != int64(len(got)) || info.RetainUntil.IsZero() {
			t.Errorf("Stat(%q) after the run = %+v, %v; want its record", key, info, err)
		}
	}
}

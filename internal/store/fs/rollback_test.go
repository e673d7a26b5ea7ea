package fs_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

// failAfterLink returns hooks under which the first fsync of dir made after
// an object's link (the publish phase's, not makeParents') fails.
func failAfterLink(dir string) fs.Hooks {
	var linked, failed atomic.Bool
	return fs.Hooks{
		AfterObjectLink: func(string) { linked.Store(true) },
		SyncDir: func(d string) error {
			if d == dir && linked.Load() && failed.CompareAndSwap(false, true) {
				return errors.New("injected fsync failure")
			}
			return fs.SyncDirForTest(d)
		},
	}
}

// TestPutRollsBackWhenDirectorySyncFails: when the fsync of either
// directory fails after the links, Put fails and leaves neither the object
// nor its record, and the key can be stored afterwards.
func TestPutRollsBackWhenDirectorySyncFails(t *testing.T) {
	const key = "backups/b1/keys/local-1.json"
	for _, tc := range []struct{ base, step string }{
		{"objects", "sync object directory"},
		{"retention", "sync retention directory"},
	} {
		t.Run(tc.base, func(t *testing.T) {
			e := newEnv(t)
			fs.SetHooks(e.st, failAfterLink(e.path(tc.base, "backups", "b1", "keys")))
			_, err := e.st.Put(t.Context(), key, strings.NewReader("wrapped"), store.PutOptions{RetainUntil: e.clock.Now().Add(time.Hour)})
			if err == nil || !strings.Contains(err.Error(), tc.step) || !strings.Contains(err.Error(), "injected fsync failure") {
				t.Fatalf("Put with a failing fsync of %s/: error = %v, want the step %q", tc.base, err, tc.step)
			}
			if _, err := e.st.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Stat after the failed Put: error = %v, want ErrNotFound", err)
			}
			for _, dir := range []string{"objects", "retention", "tmp"} {
				if files := regularFiles(t, e.path(dir)); len(files) != 0 {
					t.Errorf("%s/ after the failed Put = %q", dir, files)
				}
			}
			fs.SetHooks(e.st, fs.Hooks{})
			e.put(t, key, []byte("wrapped"), e.clock.Now().Add(time.Hour))
		})
	}
}

package backup_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/faulty"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// lostAckStore stores the manifest and then reports an error, as an S3
// PUT whose response was lost does: the backup is committed although Run
// cannot know it.
type lostAckStore struct{ store.Store }

func (s lostAckStore) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.ObjectInfo, error) {
	info, err := s.Store.Put(ctx, key, r, opts)
	if err == nil && strings.HasSuffix(key, "/manifest.json") {
		return store.ObjectInfo{}, errors.New("read tcp: connection reset by peer (after the upload)")
	}
	return info, err
}

// TestVolumeSnapshotsKeptUnlessManifestAbsent: when the manifest write
// fails, the run's VolumeSnapshots are deleted only if the manifest is
// certainly not in the store; a manifest that landed despite the error
// makes the backup committed, and its snapshots stay.
func TestVolumeSnapshotsKeptUnlessManifestAbsent(t *testing.T) {
	c := testenv.StartCluster(t)
	testenv.InstallSnapshotCRDs(t, c)
	startSnapshotController(t, c)
	k := newKubeObjects(t, c)

	for _, tc := range []struct {
		name      string
		wrap      func(store.Store) store.Store
		committed bool
	}{
		{"manifest write failed", func(st store.Store) store.Store {
			f := faulty.New(st)
			f.FailPutAfter("backups/*/manifest.json", 0, errors.New("injected: store unavailable"))
			return f
		}, false},
		{"manifest written, response lost", func(st store.Store) store.Store { return lostAckStore{st} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			ns := strings.ReplaceAll(strings.ToLower(tc.name), " ", "-")
			ns = strings.ReplaceAll(ns, ",", "")
			k.namespace(ns)
			k.claim(ns, "db", "1Gi", snapReady, nil)
			f := newFixture(t)
			var logs logBuffer
			p := kubePlan(c, "undo", config.Source{Volumes: &config.VolumesSource{Namespaces: []string{ns}, Timeout: config.Duration(time.Minute)}})
			m, err := backup.Run(ctx, backup.Options{Plan: p, Store: tc.wrap(f.st), Keys: f.keyring, Version: "test",
				Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			id := ""
			if tc.committed {
				// The manifest landed byte for byte: the backup is
				// committed, and Run says so rather than contradict the
				// catalog.
				if err != nil || !strings.Contains(logs.String(), "the backup is committed") {
					t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
				}
				id = m.Backup
			} else {
				var rerr *backup.RunError
				if !errors.As(err, &rerr) || rerr.Step != backup.StepManifest {
					t.Fatalf("Run: %v\nlogs:\n%s", err, logs.String())
				}
				id = rerr.Backup
			}
			if got := committed(t, f.st, id); got != tc.committed {
				t.Fatalf("manifest in the store: %v, want %v", got, tc.committed)
			}
			left := k.snapshots(ns)
			if tc.committed && len(left) != 1 {
				t.Errorf("the committed backup's snapshot was deleted: %v\nlogs:\n%s", left, logs.String())
			}
			if !tc.committed && len(left) != 0 {
				t.Errorf("the uncommitted backup's snapshot was kept: %v\nlogs:\n%s", left, logs.String())
			}
		})
	}
}

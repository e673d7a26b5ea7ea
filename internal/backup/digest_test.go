package backup_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// plainStore hides every method of the store but store.Store's, so the
// backup cannot take the digest from the store's Put.
type plainStore struct{ store.Store }

// lyingStore reports a wrong digest from Put: through PutReportsSHA256 when
// reports is set, or as a plain store.
type lyingStore struct {
	store.Store
	reports bool
}

const wrongDigest = "0000000000000000000000000000000000000000000000000000000000000000"

func (l lyingStore) PutReportsSHA256() bool { return l.reports }

func (l lyingStore) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) (store.ObjectInfo, error) {
	info, err := l.Store.Put(ctx, key, r, o)
	if err == nil && strings.Contains(key, "/artifacts/") {
		info.SHA256 = wrongDigest
	}
	return info, err
}

// TestArtifactDigestIsWhatWasStored: each artifact's recorded ciphertext
// SHA-256 is the digest of the bytes in the store, whether it came from
// the fs store's Put (which hashes what it stores) or from the envelope
// (for a store that does not say it does).
func TestArtifactDigestIsWhatWasStored(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "encryption.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{identity: {}}]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, wrap := range map[string]func(store.Store) store.Store{
		"fs store's digest": func(s store.Store) store.Store { return s },
		"envelope's digest": func(s store.Store) store.Store { return plainStore{s} },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			st := wrap(f.st)
			m, err := backup.Run(ctx, backup.Options{Plan: plan("p", config.Source{EncryptionConfig: &config.EncryptionConfigSource{File: cfg}}),
				Store: st, Keys: f.keyring})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(m.Artifacts) != 1 {
				t.Fatalf("artifacts: %+v", m.Artifacts)
			}
			for _, a := range m.Artifacts {
				rc, err := f.st.Get(ctx, catalog.ArtifactKey(m.Backup, a.Name), store.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				n, err := io.Copy(h, rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				if got := hex.EncodeToString(h.Sum(nil)); got != a.CiphertextSHA256 || n != a.CiphertextSize {
					t.Errorf("%s: stored %d bytes with SHA-256 %s; the manifest says %d bytes, %s", a.Name, n, got, a.CiphertextSize, a.CiphertextSHA256)
				}
			}
			if res, err := catalog.Verify(ctx, f.st, m.Backup, true, f.keyring); err != nil || !res.OK {
				t.Fatalf("Verify: %+v, %v", res, err)
			}
		})
	}

	// Which digest the manifest takes is the store's when it says it
	// reports one: a store that lies about it is caught when the backup is
	// read back, never trusted over the bytes.
	t.Run("a store that reports a wrong digest", func(t *testing.T) {
		ctx := context.Background()
		f := newFixture(t)
		m, err := backup.Run(ctx, backup.Options{Plan: plan("p", config.Source{EncryptionConfig: &config.EncryptionConfigSource{File: cfg}}),
			Store: lyingStore{f.st, true}, Keys: f.keyring})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if m.Artifacts[0].CiphertextSHA256 != wrongDigest {
			t.Fatalf("the manifest records %s, not the store's digest", m.Artifacts[0].CiphertextSHA256)
		}
		if res, err := catalog.Verify(ctx, f.st, m.Backup, true, f.keyring); err == nil && res.OK {
			t.Fatalf("Verify passed a backup whose recorded digest is not its bytes': %+v", res)
		}
	})
	// Without the method, the envelope's digest is checked against the
	// store's at write time, and the backup fails.
	t.Run("a plain store that reports a wrong digest", func(t *testing.T) {
		f := newFixture(t)
		_, err := backup.Run(context.Background(), backup.Options{Plan: plan("p", config.Source{EncryptionConfig: &config.EncryptionConfigSource{File: cfg}}),
			Store: lyingStore{f.st, false}, Keys: f.keyring})
		if !errors.Is(err, store.ErrIntegrity) || !strings.Contains(err.Error(), wrongDigest) {
			t.Fatalf("Run: %v", err)
		}
	})
}

package drill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// fetchArtifact copies artifact a of the backup m describes from the store
// to dir/<name>.lbenv and checks its size and SHA-256 against the
// manifest. Errors name the artifact and its object key; those about the
// stored bytes wrap catalog.ErrVerification.
func fetchArtifact(ctx context.Context, st store.Store, m catalog.Manifest, a catalog.Artifact, dir string) (string, error) {
	key := catalog.ArtifactKey(m.Backup, a.Name)
	fail := func(err error) (string, error) {
		err = fmt.Errorf("backup %s: artifact %s (%s): %w", m.Backup, a.Name, key, err)
		if catalog.IsDataError(err) && !errors.Is(err, catalog.ErrVerification) {
			err = fmt.Errorf("%w: %w", err, catalog.ErrVerification)
		}
		return "", err
	}
	path := filepath.Join(dir, a.Name+".lbenv")
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return fail(err)
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, rc})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if sum := hex.EncodeToString(h.Sum(nil)); sum != a.CiphertextSHA256 {
			err = fmt.Errorf("ciphertext SHA-256 is %s, manifest says %s: %w: %w", sum, a.CiphertextSHA256, store.ErrIntegrity, catalog.ErrVerification)
		} else if n != a.CiphertextSize {
			err = fmt.Errorf("ciphertext is %d bytes, manifest says %d: %w: %w", n, a.CiphertextSize, store.ErrIntegrity, catalog.ErrVerification)
		}
	}
	if err != nil {
		os.Remove(path)
		return fail(err)
	}
	return path, nil
}

// decryptArtifact decrypts the fetched artifact at encPath into dir/<name>,
// checking the header against the backup and artifact names, every AEAD
// tag, the data key, and the sizes and digests against the manifest. The
// plaintext is written to a temporary name and renamed only once all of
// that has passed, so dir/<name> never holds unauthenticated bytes. The
// ciphertext file is removed.
func decryptArtifact(ctx context.Context, encPath string, m catalog.Manifest, a catalog.Artifact, dk envelope.DataKey, dir string) (string, error) {
	key := catalog.ArtifactKey(m.Backup, a.Name)
	fail := func(err error) (string, error) {
		err = fmt.Errorf("backup %s: artifact %s (%s): decrypt: %w", m.Backup, a.Name, key, err)
		if catalog.IsDataError(err) && !errors.Is(err, catalog.ErrVerification) {
			err = fmt.Errorf("%w: %w", err, catalog.ErrVerification)
		}
		return "", err
	}
	defer os.Remove(encPath)
	src, err := os.Open(encPath)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	final := filepath.Join(dir, a.Name)
	partial := final + ".partial"
	dst, err := os.OpenFile(partial, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	res, err := envelope.Decrypt(ctx, dst, src, dk, envelope.Expect{
		Backup: m.Backup, Artifact: a.Name,
		Result: envelope.Result{
			PlaintextSize: a.PlaintextSize, PlaintextSHA256: a.PlaintextSHA256,
			CiphertextSize: a.CiphertextSize, CiphertextSHA256: a.CiphertextSHA256,
		},
	})
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	// Expect skips zero sizes; an empty plaintext must still be empty.
	if err == nil && res.PlaintextSize != a.PlaintextSize {
		err = fmt.Errorf("plaintext is %d bytes, manifest says %d: %w", res.PlaintextSize, a.PlaintextSize, envelope.ErrMismatch)
	}
	if err == nil {
		err = os.Rename(partial, final)
	}
	if err != nil {
		os.Remove(partial)
		return fail(err)
	}
	return final, nil
}

// checkSnapshotDigest checks that the snapshot ends with the SHA-256 of
// its database that the manifest recorded (etcd appends it; etcdutl checks
// it against the database again on restore).
func checkSnapshotDigest(path string, m catalog.Manifest) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var tail [sha256.Size]byte
	if st.Size() < sha256.Size {
		return fmt.Errorf("backup %s: etcd snapshot is %d bytes, too short to hold its digest: %w", m.Backup, st.Size(), catalog.ErrVerification)
	}
	if _, err := f.ReadAt(tail[:], st.Size()-sha256.Size); err != nil {
		return err
	}
	if got := hex.EncodeToString(tail[:]); got != m.Etcd.SnapshotSHA256 {
		return fmt.Errorf("backup %s: etcd snapshot ends with digest %s, manifest says %s: %w", m.Backup, got, m.Etcd.SnapshotSHA256, catalog.ErrVerification)
	}
	return nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

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
	"sync/atomic"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/plainfile"
)

// fetchDecrypt reads artifact a of the backup m describes from the store
// and decrypts it in one stream (catalog.DecryptArtifact: the header
// against the backup and artifact names, every AEAD tag, the data key,
// and the sizes and digests against the manifest) into dir/<name>. The
// plaintext is written to a temporary name and renamed only once all of
// that has passed, so dir/<name> never holds unauthenticated bytes.
//
// The etcd snapshot, which etcdutl reads by path, is held instead in a
// plainfile (in memory, sealed once verified, when the host has room; r
// keeps it until the scratch etcd is restored) and its path returned.
// Errors name the artifact and its object key; those about the stored
// bytes wrap catalog.ErrVerification.
func (r *runner) fetchDecrypt(ctx context.Context, m catalog.Manifest, a catalog.Artifact, dk envelope.DataKey, dir string) (string, error) {
	fail := func(err error) (string, error) {
		if catalog.IsDataError(err) && !errors.Is(err, catalog.ErrVerification) {
			err = fmt.Errorf("%w: %w", err, catalog.ErrVerification)
		}
		return "", err
	}
	if a.Name == catalog.ArtifactEtcdSnapshot {
		pf, err := plainfile.New(dir, a.Name, a.PlaintextSize)
		if err != nil {
			return fail(err)
		}
		// r holds it from now on: a failure below discards it, and the
		// memory it holds, through dropSnapshot.
		r.dropSnapshot()
		r.snapshot = pf
		var dst io.Writer = pf
		if pf.InMemory() {
			// The memory file's pages count towards the phase's memory as
			// they are written (no resident set shows them).
			dst = heldWriter{pf, &r.heldSnapshot}
		}
		if _, err := catalog.DecryptArtifact(ctx, r.opts.Store, m, a.Name, dk, dst); err != nil {
			r.dropSnapshot()
			return fail(err)
		}
		if err := pf.Seal(); err != nil {
			r.dropSnapshot()
			return fail(err)
		}
		return pf.Path(), nil
	}
	final := filepath.Join(dir, a.Name)
	partial := final + ".partial"
	dst, err := os.OpenFile(partial, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(fmt.Errorf("backup %s: artifact %s: %w", m.Backup, a.Name, err))
	}
	_, err = catalog.DecryptArtifact(ctx, r.opts.Store, m, a.Name, dk, dst)
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("backup %s: artifact %s: %w", m.Backup, a.Name, cerr)
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
// its database that the manifest recorded (etcd appends it; the backup
// checked it as the snapshot streamed, and etcdutl checks it again on
// restore unless the snapshot is a sealed memory file).
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

// heldWriter counts the bytes written to a memory file into held.
type heldWriter struct {
	w    io.Writer
	held *atomic.Int64
}

func (h heldWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.held.Add(int64(n))
	return n, err
}

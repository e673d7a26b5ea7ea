package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// ExportOptions configure Export.
type ExportOptions struct {
	// Store and KeyProvider name the configuration objects; empty means
	// those of the plan the backup ID names.
	Store, KeyProvider string
	// Trusted are the evidence signer's public keys: with one, the
	// manifest is compared with the backup's signed record first.
	Trusted []evidence.PublicKey
	// Out is the file written (it must not exist); "" or "-" writes to
	// Stdout instead.
	Out    string
	Stdout io.Writer
}

// ExportResult is what Export wrote.
type ExportResult struct {
	Backup          string             `json:"backup"`
	Artifact        string             `json:"artifact"`
	Out             string             `json:"out"`
	PlaintextSize   int64              `json:"plaintextSize"`
	PlaintextSHA256 string             `json:"plaintextSHA256"`
	KeyObject       string             `json:"keyObject"`
	Record          backup.RecordCheck `json:"record"`
}

// Export decrypts one artifact of backup id, for the tools an SRE already
// knows (`etcdutl snapshot status`, `tar`). Before any plaintext is
// written the manifest is compared with the backup's signed record (when a
// trusted key is given) and its MAC is checked under the data key; every
// segment's AEAD tag is checked as it is decrypted, and the plaintext's
// size and SHA-256 at the end. A file is written to a temporary name in
// its directory (mode 0600) and linked into place only once all of that
// holds, never over an existing file: a failed export leaves nothing at
// Out. Written to Stdout, bytes flow before the final digest is known: a
// failed export's output must be discarded (the error says so).
func Export(ctx context.Context, env *wire.Env, id, artifact string, o ExportOptions) (ExportResult, error) {
	res := ExportResult{Backup: id, Artifact: artifact, Out: o.Out}
	fail := func(err error) (ExportResult, error) {
		return res, fmt.Errorf("backup export %s %s: %w", id, artifact, err)
	}
	planName, _, err := catalog.ParseID(id)
	if err != nil {
		return fail(err)
	}
	storeName := o.Store
	if p, ok := env.Set.BackupPlan(planName); ok && storeName == "" {
		storeName = p.Spec.Store
	}
	cs, ok := env.Set.Store(storeName)
	if !ok {
		return fail(fmt.Errorf("no Store named %q (name it with --store)", storeName))
	}
	st, err := env.OpenStore(ctx, cs, true)
	if err != nil {
		return fail(err)
	}
	m, sum, err := catalog.ReadDigest(ctx, st, id)
	if err != nil {
		return fail(err)
	}
	if _, ok := m.Artifact(artifact); !ok {
		names := make([]string, 0, len(m.Artifacts))
		for _, a := range m.Artifacts {
			names = append(names, a.Name)
		}
		slices.Sort(names)
		return fail(fmt.Errorf("the backup has no artifact %q; it has %s", artifact, strings.Join(names, ", ")))
	}
	if res.Record, err = backup.CheckRecord(ctx, st, id, sum, o.Trusted...); err != nil {
		return fail(err)
	}
	kek, err := env.BackupKeys(ctx, planName, o.KeyProvider)
	if err != nil {
		return fail(err)
	}
	dk, ko, err := catalog.OpenKey(ctx, st, id, m.DataKeyID, kek)
	if err != nil {
		return fail(err)
	}
	defer dk.Destroy()
	res.KeyObject = catalog.KeysPrefix(id) + ko.Name()
	if err := m.CheckMAC(dk); err != nil {
		return fail(err)
	}
	if o.Out == "" || o.Out == "-" {
		r, err := catalog.DecryptArtifact(ctx, st, m, artifact, dk, o.Stdout)
		if err != nil {
			return fail(fmt.Errorf("%w (discard what was written to standard output)", err))
		}
		res.Out, res.PlaintextSize, res.PlaintextSHA256 = "-", r.PlaintextSize, r.PlaintextSHA256
		return res, nil
	}
	r, err := writeVerified(ctx, o.Out, func(w io.Writer) (envelope.Result, error) {
		return catalog.DecryptArtifact(ctx, st, m, artifact, dk, w)
	})
	if err != nil {
		return fail(err)
	}
	res.PlaintextSize, res.PlaintextSHA256 = r.PlaintextSize, r.PlaintextSHA256
	return res, nil
}

// writeVerified writes what write produces to a new temporary file beside
// path (mode 0600), fsyncs it and links it to path only when write
// succeeded; path must not exist.
func writeVerified(ctx context.Context, path string, write func(io.Writer) (envelope.Result, error)) (envelope.Result, error) {
	if _, err := os.Lstat(path); err == nil {
		return envelope.Result{}, fmt.Errorf("%s exists; lifeboat does not overwrite it", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return envelope.Result{}, err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return envelope.Result{}, err
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return envelope.Result{}, err
	}
	r, err := write(tmp)
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return envelope.Result{}, err
	}
	if err := os.Link(name, path); err != nil {
		return envelope.Result{}, fmt.Errorf("link into place: %w", err)
	}
	return r, nil
}

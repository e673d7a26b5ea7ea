package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/source/etcd"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"k8s.io/client-go/rest"
)

// Options describe one backup run.
type Options struct {
	// Plan is the plan to run. Required.
	Plan *config.BackupPlan
	// Store is where the backup is written: the plan's store, opened for
	// writing. Required.
	Store store.Store
	// Keys wraps the backup's data key with its primary KEK version
	// (keys.Provider satisfies it). Required.
	Keys envelope.Wrapper
	// AlsoWrap are the plan's other key providers (keyProviders after
	// the first): the data key is wrapped under each too, and a key object
	// stored for each, so any one of them unwraps the backup. A wrap that
	// fails fails the run before any data moves.
	AlsoWrap []envelope.Wrapper
	// Retention is how long every object of the backup is retained, from
	// the start of the run; zero means the plan's retention.
	Retention time.Duration
	// Version is the lifeboat version recorded in the manifest; empty
	// means "dev".
	Version string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// VaultToken is the Vault token of a vault source without tokenFile;
	// the command reads it from VAULT_TOKEN.
	VaultToken string
	// VaultAddr is the Vault address of a vault source without address;
	// the command reads it from VAULT_ADDR.
	VaultAddr string
	// Progress, when set, is called as artifacts are written: at least
	// every MiB of source bytes and once when each artifact is done. It is
	// called from the goroutine that called Run.
	Progress func(Progress)
}

// Progress reports how far one artifact has got.
type Progress struct {
	Backup   string
	Artifact string
	// Done is the number of source (plaintext) bytes read so far.
	Done int64
	// Total is the expected number of source bytes, or 0 when unknown.
	// For an etcd snapshot it is the database size reported before the
	// stream, which the snapshot may exceed.
	Total int64
	// Finished is set on the last report of an artifact, once it is
	// stored.
	Finished bool
}

// progressEvery is how many source bytes pass between Progress calls.
const progressEvery = 1 << 20

// Run takes a backup according to opts.Plan and returns its manifest. The
// backup is committed (listed, restorable) only when Run returns no error.
//
// A source that is only partly taken (a resource the API server would not
// list, a volume snapshot that failed under onError partial) is recorded in
// the manifest's skipped list, and the backup's status is then partial.
func Run(ctx context.Context, opts Options) (catalog.Manifest, error) {
	if opts.Plan == nil || opts.Store == nil || opts.Keys == nil {
		return catalog.Manifest{}, errors.New("backup: plan, store and keys are required")
	}
	r := &run{opts: opts, now: opts.Now, log: opts.Logger}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r.run(ctx)
}

type run struct {
	opts        Options
	now         func() time.Time
	log         *slog.Logger
	id          string
	dk          envelope.DataKey
	ko          envelope.KeyObject
	retention   time.Duration
	retainUntil time.Time
	compression string
	kubeConfig  *rest.Config
	// undo are run when the backup fails after a source made something
	// outside the store (VolumeSnapshots) that nothing will refer to.
	undo []func(context.Context)
}

func (r *run) run(ctx context.Context) (catalog.Manifest, error) {
	plan := r.opts.Plan
	started := r.now().UTC()
	id, err := r.unusedID(ctx, plan.Metadata.Name, started)
	if err != nil {
		return catalog.Manifest{}, fmt.Errorf("backup %s: %w", plan.Metadata.Name, err)
	}
	r.id = id
	r.log = r.log.With("backup", id, "plan", plan.Metadata.Name)
	retention := r.opts.Retention
	if retention <= 0 {
		retention = plan.Spec.Retention.Default.Std()
	}
	if retention <= 0 {
		retention = config.DefaultRetention.Std()
	}
	// Whole seconds, rounded up: S3 Object Lock keeps retain-until dates
	// to the second, and every object must carry the manifest's time.
	r.retention = retention
	r.retainUntil = started.Add(retention + time.Second - 1).Truncate(time.Second)
	r.compression = string(plan.Spec.Compression)
	if r.compression == "" {
		r.compression = envelope.CompressionZstd
	}
	r.log.Info("backup started", "retainUntil", r.retainUntil, "sources", len(plan.Spec.Sources))

	// Wrap the data key first: a key provider that is down fails the run
	// before any data moves. The key object is stored after the artifacts.
	r.dk, err = envelope.NewDataKey()
	if err != nil {
		return r.fail(StepDataKey, err)
	}
	defer r.dk.Destroy()
	r.ko, err = envelope.SealKey(ctx, r.opts.Keys, id, r.dk, started)
	if err != nil {
		return r.fail(StepDataKey, err)
	}
	also := make([]envelope.KeyObject, 0, len(r.opts.AlsoWrap))
	names := map[string]keys.Ref{r.ko.Name(): r.ko.KEK}
	for _, w := range r.opts.AlsoWrap {
		ko, err := envelope.SealKey(ctx, w, id, r.dk, started)
		if err != nil {
			return r.fail(StepDataKey, err)
		}
		// Two providers that name their keys alike (two keyrings whose
		// key is "clinic-kek", two Vaults with transit/lifeboat) would
		// write the same key object, and rotation could not tell them
		// apart: refuse before any data moves.
		if prev, dup := names[ko.Name()]; dup {
			return r.fail(StepDataKey, fmt.Errorf("two of the plan's key providers wrap under the same key reference (%s and %s): give one of them a key with another name", prev, ko.KEK))
		}
		names[ko.Name()] = ko.KEK
		also = append(also, ko)
	}

	committed, manifestTried := false, false
	defer func() {
		if committed || len(r.undo) == 0 {
			return
		}
		// A cancelled run still cleans up, within a bound of its own.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if manifestTried && !r.manifestAbsent(uctx, id) {
			return
		}
		for _, f := range r.undo {
			f(uctx)
		}
	}()
	m := catalog.Manifest{
		Format: catalog.ManifestFormat, Backup: id, Plan: plan.Metadata.Name,
		Started: started, RetainUntil: r.retainUntil,
		KEK: r.ko.KEK, DataKeyID: r.dk.ID(),
		AlsoWrapped: alsoRefs(also),
		Lifeboat:    catalog.Lifeboat{Version: r.opts.Version},
	}
	if m.Lifeboat.Version == "" {
		m.Lifeboat.Version = "dev"
	}
	for _, src := range plan.Spec.Sources {
		var err error
		switch kind := src.Kind(); {
		case src.Etcd != nil:
			a, info, eerr := r.etcd(ctx, src.Etcd)
			if eerr == nil {
				m.Artifacts = append(m.Artifacts, a)
				m.Etcd = &info
			}
			err = eerr
		case src.EncryptionConfig != nil && src.EncryptionConfig.File != "":
			a, desc, eerr := r.encryptionConfig(ctx, src.EncryptionConfig.File)
			if eerr == nil {
				m.Artifacts = append(m.Artifacts, a)
				m.EncryptionConfig = &desc
			}
			err = eerr
		case src.EncryptionConfig != nil:
			err = r.encryptionConfigSecret(ctx, src.EncryptionConfig.SecretRef, &m)
		case src.Manifests != nil:
			err = r.manifestsSource(ctx, src.Manifests, &m)
		case src.Volumes != nil:
			err = r.volumesSource(ctx, src.Volumes, &m)
		case src.Velero != nil:
			err = r.veleroSource(ctx, src.Velero, &m)
		case src.Vault != nil:
			err = r.vaultSource(ctx, src.Vault, &m)
		default:
			m.Skipped = append(m.Skipped, r.skip(kind, "this source is not supported by this version of lifeboat"))
		}
		if err != nil {
			return r.fail(src.Kind(), err)
		}
	}
	if len(m.Artifacts) == 0 && m.Volumes == nil && m.Velero == nil {
		return r.fail(StepSources, errors.New("the plan has no source this version of lifeboat can take"))
	}

	for _, ko := range append([]envelope.KeyObject{r.ko}, also...) {
		kb, err := ko.Marshal()
		if err != nil {
			return r.fail(StepKeyObject, err)
		}
		keyKey := catalog.KeysPrefix(id) + ko.Name()
		if _, err := r.opts.Store.Put(ctx, keyKey, bytes.NewReader(kb), store.PutOptions{RetainUntil: r.retainUntil, Size: int64(len(kb))}); err != nil {
			return r.fail(StepKeyObject, fmt.Errorf("store key object %s: %w", keyKey, err))
		}
		r.log.Info("key object stored", "key", ko.KEK.String(), "object", keyKey)
	}

	m.Status = catalog.StatusComplete
	if len(m.Skipped) > 0 {
		m.Status = catalog.StatusPartial
	}
	m.Completed = r.now().UTC()
	if err := m.Seal(r.dk); err != nil {
		return r.fail(StepManifest, err)
	}
	manifestTried = true
	if _, err := catalog.Write(ctx, r.opts.Store, m); err != nil {
		if !r.landed(ctx, m) {
			return r.fail(StepManifest, err)
		}
		r.log.Warn("the manifest write reported an error, but the manifest is in the store, byte for byte: the backup is committed", "err", err)
	}
	committed = true
	r.log.Info("backup committed", "status", m.Status, "artifacts", len(m.Artifacts),
		"storedBytes", m.StoredSize(), "duration", m.Completed.Sub(m.Started).Round(time.Millisecond))
	return m, nil
}

// Steps of a backup run, as RunError.Step names them; a source's step is
// its kind (config.SourceEtcd, ...).
const (
	StepDataKey   = "dataKey"
	StepSources   = "sources"
	StepKeyObject = "keyObject"
	StepManifest  = "manifest"
)

// RunError is the error of a Run that failed after it assigned a backup
// ID: which backup and which step. Its text is the underlying error's,
// prefixed with "backup <id>: ".
type RunError struct {
	// Backup is the ID the run assigned; nothing under it is committed.
	Backup string
	// Step is where it failed: a Step* constant or a source's kind.
	Step string
	Err  error
}

func (e *RunError) Error() string { return "backup " + e.Backup + ": " + e.Err.Error() }
func (e *RunError) Unwrap() error { return e.Err }

func (r *run) fail(step string, err error) (catalog.Manifest, error) {
	rerr := &RunError{Backup: r.id, Step: step, Err: err}
	r.log.Error("backup failed; nothing was committed", "step", step, "err", rerr)
	return catalog.Manifest{}, rerr
}

func (r *run) skip(kind, reason string) catalog.Skip {
	r.log.Warn("source skipped", "source", kind, "reason", reason)
	return catalog.Skip{Source: kind, Reason: reason}
}

// etcd streams an etcd snapshot into the store.
func (r *run) etcd(ctx context.Context, src *config.EtcdSource) (catalog.Artifact, catalog.Etcd, error) {
	s, err := etcd.Snapshot(ctx, etcd.Options{
		Endpoints: src.Endpoints, CAFile: src.CAFile, CertFile: src.CertFile, KeyFile: src.KeyFile,
		DialTimeout: src.DialTimeout.Std(), Now: r.now, Logger: r.log,
	})
	if err != nil {
		return catalog.Artifact{}, catalog.Etcd{}, err
	}
	defer s.Close()
	info, _ := s.Info()
	// The stream's trailer check hashes every byte already; its digest is
	// the plaintext's.
	a, err := r.putArtifact(ctx, catalog.ArtifactEtcdSnapshot, catalog.SourceEtcd, s, info.DBSize, s.StreamSHA256)
	if err != nil {
		return catalog.Artifact{}, catalog.Etcd{}, err
	}
	info, complete := s.Info()
	if !complete {
		// putArtifact succeeded only if the stream ended in io.EOF,
		// which Stream returns only once verified.
		return catalog.Artifact{}, catalog.Etcd{}, fmt.Errorf("etcd %s: snapshot stream did not complete", info.Endpoint)
	}
	r.log.Info("etcd snapshot verified", "endpoint", info.Endpoint, "revision", info.Revision,
		"keys", info.Inventory.Keys, "inventoryFrom", s.InventoryFrom(), "snapshotSHA256", info.SnapshotSHA256)
	return a, info, nil
}

// encryptionConfig stores the API server's EncryptionConfiguration file.
func (r *run) encryptionConfig(ctx context.Context, path string) (catalog.Artifact, catalog.EncryptionConfig, error) {
	data, desc, err := readEncryptionConfig(path)
	if err != nil {
		return catalog.Artifact{}, catalog.EncryptionConfig{}, err
	}
	a, err := r.putArtifact(ctx, catalog.ArtifactEncryptionConfig, catalog.SourceEncryptionConfig, bytes.NewReader(data), int64(len(data)))
	clear(data)
	return a, desc, err
}

// putArtifact streams src through an envelope writer into the store under
// the artifact's key. The store reads from a pipe the writer fills; any
// failure aborts the writer and closes the pipe with the error, so the Put
// fails and commits nothing.
//
// plainSum, when given, is the plaintext's hex SHA-256 from a hash the
// source kept over exactly the bytes it returned (envelope.Options).
func (r *run) putArtifact(ctx context.Context, name, source string, src io.Reader, total int64, plainSum ...func() string) (catalog.Artifact, error) {
	key := catalog.ArtifactKey(r.id, name)
	log := r.log.With("artifact", name)
	start := r.now()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	type putResult struct {
		info store.ObjectInfo
		err  error
	}
	done := make(chan putResult, 1)
	go func() {
		info, err := r.opts.Store.Put(pctx, key, pr, store.PutOptions{RetainUntil: r.retainUntil})
		if err != nil {
			pr.CloseWithError(fmt.Errorf("store %s: %w", key, err))
		} else {
			pr.Close()
		}
		done <- putResult{info, err}
	}()
	fail := func(err error) (catalog.Artifact, error) {
		pw.CloseWithError(err)
		cancel()
		<-done
		log.Error("artifact failed; not stored", "err", err)
		return catalog.Artifact{}, fmt.Errorf("artifact %s: %w", name, err)
	}

	// A store that hashes what it stores gives the artifact's digest, so
	// the ciphertext is hashed once: what the manifest records is then the
	// digest of the bytes the store received and committed.
	pd, ok := r.opts.Store.(putDigester)
	storeDigest := ok && pd.PutReportsSHA256()
	eo := envelope.Options{Backup: r.id, Artifact: name, KEK: r.ko.KEK, Compression: r.compression, Created: start,
		SkipCiphertextSHA256: storeDigest}
	if len(plainSum) > 0 {
		eo.PlaintextSHA256 = plainSum[0]
	}
	w, err := envelope.NewWriter(pw, r.dk, eo)
	if err != nil {
		return fail(err)
	}
	pgr := &progressReader{r: src, fn: r.opts.Progress, p: Progress{Backup: r.id, Artifact: name, Total: total}}
	if _, err := w.ReadFrom(pgr); err != nil {
		w.Abort(err)
		return fail(err)
	}
	if err := w.Close(); err != nil {
		return fail(err)
	}
	pw.Close()
	res := <-done
	if res.err != nil {
		log.Error("artifact failed; not stored", "err", res.err)
		return catalog.Artifact{}, fmt.Errorf("artifact %s: store %s: %w", name, key, res.err)
	}
	er := w.Result()
	if storeDigest {
		if !catalog.IsSHA256Hex(res.info.SHA256) {
			return catalog.Artifact{}, fmt.Errorf("artifact %s: store %s: the store gave no SHA-256 of what it stored (got %q): %w", name, key, res.info.SHA256, store.ErrIntegrity)
		}
		er.CiphertextSHA256 = res.info.SHA256
	}
	if len(er.PlaintextSHA256) != 64 {
		return catalog.Artifact{}, fmt.Errorf("artifact %s: the source gave no plaintext digest after its stream ended", name)
	}
	if res.info.Size != er.CiphertextSize || (res.info.SHA256 != "" && res.info.SHA256 != er.CiphertextSHA256) {
		return catalog.Artifact{}, fmt.Errorf("artifact %s: the store recorded %d bytes with SHA-256 %s, the envelope wrote %d bytes with SHA-256 %s: %w",
			name, res.info.Size, res.info.SHA256, er.CiphertextSize, er.CiphertextSHA256, store.ErrIntegrity)
	}
	pgr.report(true)
	log.Info("artifact stored", "key", key, "plaintextBytes", er.PlaintextSize, "storedBytes", er.CiphertextSize,
		"duration", r.now().Sub(start).Round(time.Millisecond))
	return catalog.Artifact{
		Name: name, Source: source, Compression: r.compression,
		PlaintextSize: er.PlaintextSize, PlaintextSHA256: er.PlaintextSHA256,
		CiphertextSize: er.CiphertextSize, CiphertextSHA256: er.CiphertextSHA256,
	}, nil
}

// putDigester is a store whose Put returns the SHA-256 of every byte it
// stored, computed as it wrote them (the fs store).
type putDigester interface {
	PutReportsSHA256() bool
}

// progressReader counts the bytes read through it and reports them.
type progressReader struct {
	r    io.Reader
	fn   func(Progress)
	p    Progress
	last int64
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.Done += int64(n)
	if pr.p.Done-pr.last >= progressEvery {
		pr.report(false)
	}
	return n, err
}

func (pr *progressReader) report(finished bool) {
	pr.last = pr.p.Done
	if pr.fn != nil {
		p := pr.p
		p.Finished = finished
		pr.fn(p)
	}
}

// manifestAbsent reports whether backup id's manifest is certainly not in
// the store, after a manifest write that returned an error: a write can
// succeed on the server while the client sees an error (a lost response, a
// timeout), and then the backup is committed and what its sources made
// outside the store must be kept. Anything but a definite "not found"
// keeps it; it then expires with its own retention.
func (r *run) manifestAbsent(ctx context.Context, id string) bool {
	_, err := r.opts.Store.Stat(ctx, catalog.ManifestKey(id))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return true
	case err == nil:
		r.log.Error("the manifest write reported an error, but the manifest is in the store: the backup may be committed; what its sources made outside the store is kept",
			"manifest", catalog.ManifestKey(id))
	default:
		r.log.Error("cannot tell whether the manifest was written; what the backup's sources made outside the store is kept, to expire with its retention",
			"manifest", catalog.ManifestKey(id), "err", err)
	}
	return false
}

// landed reports whether m is in the store exactly as written, after a
// manifest write that returned an error: a PUT can succeed on the server
// while the client sees an error (a lost response, a timeout). Then the
// backup is committed, and saying it failed would contradict the catalog
// and the evidence log. A manifest not (yet) visible is looked for once
// more after a moment, since a server may still be finishing the upload.
func (r *run) landed(ctx context.Context, m catalog.Manifest) bool {
	want, err := m.Marshal()
	if err != nil {
		return false
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			select {
			case <-lctx.Done():
				return false
			case <-time.After(2 * time.Second):
			}
		}
		got, err := catalog.Read(lctx, r.opts.Store, m.Backup)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, catalog.ErrNoBackup) {
			continue
		}
		if err != nil {
			return false
		}
		b, err := got.Marshal()
		return err == nil && bytes.Equal(b, want)
	}
	return false
}

// unusedID returns a backup ID for plan at started under which the store
// holds no object yet. IDs carry 16 random bits within one second, so two
// backups of one plan in one second may draw the same one; a drawn ID that
// is in use (by a committed backup, or by one that crashed before its
// manifest) is drawn again. Two runs drawing the same unused ID at the same
// instant still cannot overwrite each other: the store refuses the second
// write and that run fails with nothing committed.
func (r *run) unusedID(ctx context.Context, plan string, started time.Time) (string, error) {
	const draws = 8
	for range draws {
		id, err := catalog.NewID(plan, started)
		if err != nil {
			return "", err
		}
		used := false
		for _, err := range r.opts.Store.List(ctx, catalog.BackupPrefix(id)) {
			if err != nil {
				return "", fmt.Errorf("new backup ID: list %s: %w", catalog.BackupPrefix(id), err)
			}
			used = true
			break
		}
		if !used {
			return id, nil
		}
		r.log.Debug("backup ID in use; drawing another", "backup", id)
	}
	return "", fmt.Errorf("new backup ID: %d IDs drawn for %s at %s were all in use", draws, plan, started.Format(time.RFC3339))
}

// alsoRefs returns the KEK versions of the key objects beyond the first.
func alsoRefs(kos []envelope.KeyObject) []keys.Ref {
	if len(kos) == 0 {
		return nil
	}
	refs := make([]keys.Ref, len(kos))
	for i, ko := range kos {
		refs[i] = ko.KEK
	}
	return refs
}

package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/memwatch"
	"github.com/lifeboat-dr/lifeboat/internal/plainfile"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// KindRestore is the evidence kind of an applied restore.
const KindRestore = "restore"

// RestoreRevisionBump is how far a restored etcd's revision is moved past
// the snapshot's, with the old revisions marked compacted (etcdutl's
// restore options): watchers and clients that cached the old revisions
// must relist instead of reading a revision that now means something
// else.
const RestoreRevisionBump = 1_000_000_000

// EtcdMember is one member of the restored etcd cluster.
type EtcdMember struct {
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
	// DataDir is where its data directory is written: <out>/<name>.etcd.
	DataDir string `json:"dataDir"`
}

// RestoreSelection says which backup a restore takes and how it is
// checked; every restore target shares it.
type RestoreSelection struct {
	// Backup is the backup ID; or Plan with Latest the newest complete
	// backup of the plan.
	Backup string
	Plan   string
	Latest bool
	// Before selects the plan's newest complete backup whose point in
	// time is before it (instead of Latest).
	Before time.Time
	// Store and KeyProvider override the plan's.
	Store, KeyProvider string
	// Trusted are the evidence signer's public keys (the manifest is
	// compared with its signed record).
	Trusted []evidence.PublicKey
	// AllowPartial lets a partial backup be restored.
	AllowPartial bool
}

// RestoreEtcdOptions configure RestoreEtcd.
type RestoreEtcdOptions struct {
	RestoreSelection
	// Members of the new cluster; at least one.
	Members []EtcdMember
	// Out is the directory the data directories and the encryption
	// configuration are written to; it must be absent or empty.
	Out string
	// Apply writes; without it nothing is written (the plan). Confirm
	// must then be the backup's ID.
	Apply   bool
	Confirm string
	// Signer signs the restore record (Apply). Required with Apply.
	Signer *evidence.Signer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// RestoreStage is one timed stage of an applied restore.
type RestoreStage struct {
	Name       string `json:"name"`
	Detail     string `json:"detail"`
	DurationMs int64  `json:"durationMs"`
	// PeakRSSBytes is the process's peak resident memory during the
	// stage (sampled every 20 ms, internal/memwatch), where measured: the
	// decrypt stage's and each member's.
	PeakRSSBytes int64 `json:"peakRSSBytes,omitempty"`
	// MemoryFileBytes is what the decrypted snapshot's memory file holds
	// beside the resident memory during the stage, when it is held in
	// memory.
	MemoryFileBytes int64 `json:"memoryFileBytes,omitempty"`
}

// RestoreEtcdResult is the plan, or what was done.
type RestoreEtcdResult struct {
	Backup      string             `json:"backup"`
	Status      string             `json:"status"`
	ClusterID   string             `json:"backupClusterId"`
	Revision    int64              `json:"revision"`
	PointInTime time.Time          `json:"pointInTime"`
	Members     []EtcdMember       `json:"members"`
	Encryption  string             `json:"encryptionConfig,omitempty"`
	Record      backup.RecordCheck `json:"record"`
	// PassedOver are the backups the selection (--latest, --before)
	// ranked first but refused, and why: a manifest that does not match
	// its signed evidence record.
	PassedOver []string `json:"passedOver,omitempty"`
	// KeyObjects says which of the backup's key objects unwrap with the
	// key providers this restore could open.
	KeyObjects []catalog.KeyObjectCheck `json:"keyObjects"`
	Applied    bool                     `json:"applied"`
	Stages     []RestoreStage           `json:"stages"`
	Runbook    []string                 `json:"runbook"`
	Evidence   string                   `json:"evidence,omitempty"`
}

// RestoreEtcd restores a backup's etcd snapshot for a lost control plane:
// one data directory per member (its own name and peer URL, one shared
// initial cluster, a new cluster token, the revision bumped past the
// snapshot's with the old ones marked compacted) and the backed-up
// encryption configuration beside them, mode 0600 (docs/restore.md).
//
// Planning (Apply false) selects the backup, checks its manifest against
// the signed record (with a trusted key), unwraps the data key and
// verifies every artifact as `backup verify --read-data` does, and says
// what would be written; nothing is. Applying needs Confirm to be the
// backup's ID, verifies the same way, writes, and appends a signed
// `restore` record with the stages' timings.
func RestoreEtcd(ctx context.Context, env *wire.Env, o RestoreEtcdOptions) (RestoreEtcdResult, error) {
	var res RestoreEtcdResult
	now := o.Now
	if now == nil {
		now = time.Now
	}
	fail := func(err error) (RestoreEtcdResult, error) { return res, fmt.Errorf("restore etcd: %w", err) }
	if len(o.Members) == 0 {
		return fail(errors.New("name at least one member (--member NAME=PEER_URL)"))
	}
	if o.Out == "" {
		return fail(errors.New("name the output directory (--out)"))
	}
	src, err := openForRestore(ctx, env, o.RestoreSelection, !o.Apply, now)
	if err != nil {
		res.PassedOver = src.passedOver
		return fail(err)
	}
	st, kek, id, m, sum := src.st, src.kek, src.id, src.m, src.sum
	res.Backup, res.PassedOver, res.Record, res.Status, res.KeyObjects = id, src.passedOver, src.record, m.Status, src.keyObjects
	stages := src.stages
	stage := func(name, detail string, t0 time.Time) {
		stages = append(stages, RestoreStage{Name: name, Detail: detail, DurationMs: now().Sub(t0).Milliseconds()})
	}
	if m.Etcd == nil {
		return fail(fmt.Errorf("backup %s holds no etcd snapshot", id))
	}
	res.ClusterID, res.Revision, res.PointInTime = m.Etcd.ClusterID, m.Etcd.Revision, m.PointInTime()

	out, err := filepath.Abs(o.Out)
	if err != nil {
		return fail(err)
	}
	var names, cluster []string
	for i, mem := range o.Members {
		if mem.Name == "" || strings.ContainsAny(mem.Name, "/=,") {
			return fail(fmt.Errorf("member %d: name %q: want a name without / = or ,", i+1, mem.Name))
		}
		if u, err := url.Parse(mem.PeerURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fail(fmt.Errorf("member %s: peer URL %q: want http(s)://host:port", mem.Name, mem.PeerURL))
		}
		o.Members[i].DataDir = filepath.Join(out, mem.Name+".etcd")
		names = append(names, mem.Name)
		cluster = append(cluster, mem.Name+"="+mem.PeerURL)
	}
	res.Members = o.Members
	_, hasEnc := m.Artifact(catalog.ArtifactEncryptionConfig)
	if hasEnc {
		res.Encryption = filepath.Join(out, catalog.ArtifactEncryptionConfig)
	}
	res.Runbook = restoreRunbook(res, strings.Join(cluster, ","))
	if !o.Apply {
		res.Stages = stages
		return res, nil
	}
	if o.Confirm != id {
		return fail(fmt.Errorf("applying overwrites nothing but writes the cluster's data: confirm with --confirm %s", id))
	}
	if o.Signer == nil {
		return fail(errors.New("no evidence signer"))
	}
	if err := emptyDir(out); err != nil {
		return fail(err)
	}

	// The memory of each stage is read from one watch over the whole
	// apply.
	mw := memwatch.Start(memwatch.Options{Now: now})
	defer mw.Stop()
	t0 := now()
	dk, _, err := catalog.OpenKey(ctx, st, id, m.DataKeyID, kek)
	if err != nil {
		return fail(err)
	}
	defer dk.Destroy()
	if err := m.CheckMAC(dk); err != nil {
		return fail(err)
	}
	// The decrypted snapshot is read once, by etcdutl, which copies it
	// into each data directory and syncs that copy; it is discarded at the
	// end (plainfile). etcdutl reads it only once every byte has
	// authenticated and both digests matched.
	sa, _ := m.Artifact(catalog.ArtifactEtcdSnapshot)
	sf, err := plainfile.New(out, "etcd-snapshot.db", sa.PlaintextSize)
	if err != nil {
		return fail(err)
	}
	defer sf.Close()
	if _, err := catalog.DecryptArtifact(ctx, st, m, catalog.ArtifactEtcdSnapshot, dk, sf); err != nil {
		return fail(err)
	}
	if err := sf.Seal(); err != nil {
		return fail(err)
	}
	snap := sf.Path()
	// measured adds the memory of the stage just ended: the resident peak
	// the watch saw, and the memory file held through it.
	measured := func(from time.Time) {
		last := &stages[len(stages)-1]
		mw.Sample()
		last.PeakRSSBytes = mw.Peak(from, now())
		if sf.InMemory() {
			last.MemoryFileBytes = sa.PlaintextSize
		}
	}
	stage("decrypt", "etcd snapshot decrypted "+sf.Where()+", AEAD tags and SHA-256 checked", t0)
	measured(t0)

	token := "lifeboat-restore-" + id
	for _, mem := range o.Members {
		t0 = now()
		err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
			SnapshotPath: snap, Name: mem.Name, OutputDataDir: mem.DataDir, PeerURLs: []string{mem.PeerURL},
			InitialCluster: strings.Join(cluster, ","), InitialClusterToken: token,
			RevisionBump: RestoreRevisionBump, MarkCompacted: true,
			// etcdutl's own check hashes the copy against the SHA-256
			// etcd appended, which anyone who could change the bytes
			// could recompute. The sealed memory file's bytes are the
			// ones whose plaintext SHA-256 the MAC-checked manifest
			// names, checked above, and cannot change since; hashing
			// them again would add a second pass over the snapshot to
			// every member's restore, and would only catch a fault in
			// etcdutl's own copy into the data directory (read back from
			// the page cache), not a changed backup. A file on disk is
			// not sealed, so etcdutl checks it.
			SkipHashCheck: sf.Sealed(),
		})
		if err != nil {
			return fail(fmt.Errorf("member %s: etcdutl restore into %s: %w", mem.Name, mem.DataDir, err))
		}
		stage("etcd member "+mem.Name, "data directory "+mem.DataDir, t0)
		measured(t0)
	}
	if hasEnc {
		t0 = now()
		if _, err := writeVerified(ctx, res.Encryption, func(w io.Writer) (envelope.Result, error) {
			return catalog.DecryptArtifact(ctx, st, m, catalog.ArtifactEncryptionConfig, dk, w)
		}); err != nil {
			return fail(err)
		}
		stage("encryption config", res.Encryption+" (mode 0600)", t0)
	}
	res.Applied, res.Stages = true, stages

	subjStages := make([]any, 0, len(stages))
	for _, s := range stages {
		subjStages = append(subjStages, map[string]any{"name": s.Name, "durationMs": s.DurationMs})
	}
	rec, err := evidence.NewLog(src.evSt, o.Signer, now, evidence.WithRetention(config.EvidenceRetention(src.evCS))).Append(ctx, evidence.Record{
		Kind: KindRestore, ID: id + "-" + now().UTC().Format("20060102T150405Z"), Outcome: evidence.OutcomeSuccess,
		Subject: map[string]any{
			"backup": id, "target": "etcd", "members": strings.Join(names, ","), "backupClusterId": res.ClusterID,
			"revision": res.Revision, "revisionBump": int64(RestoreRevisionBump), "pointInTime": res.PointInTime.UTC().Format(time.RFC3339Nano),
			"manifestSHA256": sum, "stages": subjStages,
		},
		HIPAA: []string{"§164.308(a)(7)(ii)(B)", "§164.310(d)(2)(iv)"},
	})
	if err != nil {
		return res, fmt.Errorf("restore etcd: the data directories are written, but the restore record is not: %w", err)
	}
	res.Evidence = rec.Key()
	return res, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// emptyDir creates dir, mode 0700; it must not exist. An existing
// directory (or a symlink to one) could be another user's, who could swap
// a file between its verification and its use.
func emptyDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists; restore into a new directory (lifeboat creates it, mode 0700)", dir)
		}
		return err
	}
	return nil
}

// restoreRunbook is the order an SRE follows once the data directories
// are written (docs/restore.md).
func restoreRunbook(r RestoreEtcdResult, cluster string) []string {
	steps := []string{
		"Stop every kube-apiserver, then every etcd member of the lost cluster.",
	}
	for _, m := range r.Members {
		steps = append(steps, fmt.Sprintf("On member %s: place %s as its data directory (owned by the etcd user, mode 0700) and start etcd with --name %s --data-dir <that directory> --listen-peer-urls and --initial-advertise-peer-urls %s; the directory already holds the membership (%s), so the --initial-cluster flags are ignored.",
			m.Name, m.DataDir, m.Name, m.PeerURL, cluster))
	}
	steps = append(steps, "Check health: etcdctl endpoint health --cluster; etcdctl member list shows exactly the restored members.")
	if r.Encryption != "" {
		steps = append(steps, "Give every kube-apiserver the restored "+r.Encryption+" as --encryption-provider-config (mode 0600), then start them.")
	} else {
		steps = append(steps, "Start the kube-apiservers with the encryption configuration they had at backup time (this backup holds none).")
	}
	steps = append(steps,
		"Restart kube-controller-manager, kube-scheduler and every kubelet: their caches hold revisions from before the restore.",
		"Run `lifeboat backup run` at once: the restored cluster has a new cluster ID, and its first backup starts a new history.")
	return steps
}

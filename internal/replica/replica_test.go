package replica_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/replica"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

type fixture struct {
	dir              string
	primary, replica *fs.Store
	keyring          *local.Keyring
	signer           *evidence.Signer
	plan             *config.BackupPlan
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{dir: t.TempDir()}
	var err error
	if f.primary, err = fs.Open(ctx, fs.Options{Root: filepath.Join(f.dir, "primary")}); err != nil {
		t.Fatal(err)
	}
	if f.replica, err = fs.Open(ctx, fs.Options{Root: filepath.Join(f.dir, "replica")}); err != nil {
		t.Fatal(err)
	}
	if f.keyring, err = local.Create(ctx, local.Options{Path: filepath.Join(f.dir, "keyring.json")}, "test-kek"); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if f.signer, err = evidence.NewSigner(priv); err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(f.dir, "enc.yaml")
	if err := os.WriteFile(enc, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.plan = &config.BackupPlan{
		Metadata: config.ObjectMeta{Name: "clinic"},
		Spec: config.BackupPlanSpec{Store: "primary", KeyProvider: "local", Replicas: []string{"dr"},
			Retention: config.Retention{Default: config.Duration(24 * time.Hour)}, Compression: config.CompressionZstd,
			Sources: []config.Source{{EncryptionConfig: &config.EncryptionConfigSource{File: enc}}}},
	}
	return f
}

// backup takes a backup into the primary and, when publish is set,
// appends its signed record.
func (f *fixture) backup(t *testing.T, publish bool) catalog.Manifest {
	t.Helper()
	m, err := backup.Run(t.Context(), backup.Options{Plan: f.plan, Store: f.primary, Keys: f.keyring})
	if err != nil {
		t.Fatal(err)
	}
	if publish {
		if _, err := backup.Publish(t.Context(), m, backup.PublishOptions{Store: f.primary, Signer: f.signer}); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func (f *fixture) copier(t *testing.T, progress func(replica.Event)) *replica.Copier {
	t.Helper()
	c, err := replica.New(replica.Options{
		Primary: f.primary, Replica: f.replica, PrimaryName: "primary", ReplicaName: "dr",
		Trusted:           []evidence.PublicKey{f.signer.PublicKey()},
		BackupRetainUntil: func(m catalog.Manifest) time.Time { return m.RetainUntil.Add(time.Hour) },
		EvidenceRetention: 48 * time.Hour,
		Progress:          progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keys(t *testing.T, st store.Store, prefix string) []string {
	t.Helper()
	var out []string
	for info, err := range st.List(t.Context(), prefix) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Key)
	}
	return out
}

// TestBackup replicates a backup between two fs stores and checks that
// every reader works on the replica unchanged: the catalog, a decrypting
// verify with the manifest's MAC, the signed record, the evidence log.
func TestBackup(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	m1 := f.backup(t, true)
	m2 := f.backup(t, true)
	states, err := replica.Status(ctx, f.primary, f.replica, []catalog.Manifest{m1, m2})
	if err != nil || states[m1.Backup] != replica.StateMissing {
		t.Fatalf("before: %v %v", states, err)
	}

	var events []replica.Event
	res, err := f.copier(t, func(e replica.Event) { events = append(events, e) }).Backup(ctx, m1.Backup)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != replica.StateReplicated || res.Copied == 0 || res.Skipped != 0 || res.EvidenceHead != 2 {
		t.Fatalf("result %+v", res)
	}
	// The manifest is the last object written: the replica's commit point.
	if last := events[len(events)-1]; last.Key != catalog.ManifestKey(m1.Backup) {
		t.Fatalf("last object copied %s, want the manifest", last.Key)
	}
	for _, key := range keys(t, f.primary, catalog.BackupPrefix(m1.Backup)) {
		info, err := f.replica.Stat(ctx, key)
		if err != nil {
			t.Fatalf("%s not on the replica: %v", key, err)
		}
		if !info.RetainUntil.Equal(m1.RetainUntil.Add(time.Hour)) {
			t.Errorf("%s retained until %s, want the replica's rule", key, info.RetainUntil)
		}
	}
	vr, err := catalog.Verify(ctx, f.replica, m1.Backup, true, f.keyring)
	if err != nil || !vr.OK || vr.ManifestMAC != catalog.CheckOK {
		t.Fatalf("verify --read-data on the replica: %+v %v", vr, err)
	}
	rc, err := backup.CheckRecord(ctx, f.replica, m1.Backup, vr.ManifestSHA256, f.signer.PublicKey())
	if err != nil || rc.Status != backup.RecordOK {
		t.Fatalf("signed record on the replica: %+v %v", rc, err)
	}
	lv, err := evidence.NewLog(f.replica, nil, nil).Verify(ctx, f.signer.PublicKey())
	if err != nil || lv.Records != 2 {
		t.Fatalf("evidence verify on the replica: %+v %v", lv, err)
	}
	if ms, err := catalog.List(ctx, f.replica, catalog.ListOptions{}); err != nil || len(ms) != 1 || ms[0].Backup != m1.Backup {
		t.Fatalf("backups on the replica: %v %v", ms, err)
	}

	// Again: nothing copied, everything read back and skipped.
	again, err := f.copier(t, nil).Backup(ctx, m1.Backup)
	if err != nil || again.Copied != 0 || again.Skipped == 0 || again.State != replica.StateReplicated {
		t.Fatalf("again: %+v %v", again, err)
	}

	now := time.Now()
	states, err = replica.Status(ctx, f.primary, f.replica, []catalog.Manifest{m1, m2})
	if err != nil || states[m1.Backup] != replica.StateReplicated || states[m2.Backup] != replica.StateMissing {
		t.Fatalf("states: %v %v", states, err)
	}
	if lag, behind := replica.Lag([]catalog.Manifest{m1, m2}, states, now); !behind.Equal(m2.Completed) || lag <= 0 {
		t.Fatalf("lag %s behind %s, want since %s", lag, behind, m2.Completed)
	}

	// A key object added on the primary (as rotation adds them): behind,
	// and the next run copies it alone.
	ko := keys(t, f.primary, catalog.KeysPrefix(m1.Backup))[0]
	rd, err := f.primary.Get(ctx, ko, store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rd)
	rd.Close()
	if _, err := f.primary.Put(ctx, catalog.KeysPrefix(m1.Backup)+"local-2-rotated.json", bytes.NewReader(b), store.PutOptions{RetainUntil: m1.RetainUntil}); err != nil {
		t.Fatal(err)
	}
	if states, _ := replica.Status(ctx, f.primary, f.replica, []catalog.Manifest{m1}); states[m1.Backup] != replica.StateBehind {
		t.Fatalf("after a new key object: %v", states)
	}
	res, err = f.copier(t, nil).Backup(ctx, m1.Backup)
	if err != nil || res.Copied != 1 || res.State != replica.StateReplicated {
		t.Fatalf("catch up a key object: %+v %v", res, err)
	}
}

// TestTampering: an object planted on the replica under a key the copy
// needs is named and left alone; a manifest no signed record vouches for
// is not copied; a replica log someone appended to is refused.
func TestTampering(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	m := f.backup(t, true)
	art := catalog.ArtifactKey(m.Backup, m.Artifacts[0].Name)
	planted := []byte("not the primary's ciphertext")
	if _, err := f.replica.Put(ctx, art, bytes.NewReader(planted), store.PutOptions{RetainUntil: m.RetainUntil}); err != nil {
		t.Fatal(err)
	}
	res, err := f.copier(t, nil).Backup(ctx, m.Backup)
	var re *replica.Error
	if !errors.Is(err, replica.ErrTampered) || !errors.Is(err, catalog.ErrVerification) || !errors.As(err, &re) || re.Object != art || re.Step != replica.StepArtifact {
		t.Fatalf("planted artifact: %v", err)
	}
	if res.State != replica.StateTampered {
		t.Fatalf("state %s", res.State)
	}
	if _, err := f.replica.Stat(ctx, catalog.ManifestKey(m.Backup)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("manifest committed over a tampered artifact: %v", err)
	}

	// A backup without a signed record: someone who can write the primary
	// planted it.
	g := newFixture(t)
	unvouched := g.backup(t, false)
	g.backup(t, true)
	_, err = g.copier(t, nil).Backup(ctx, unvouched.Backup)
	if !errors.Is(err, replica.ErrNotVouched) || !errors.As(err, &re) || re.Step != replica.StepVouch {
		t.Fatalf("unvouched backup: %v", err)
	}
	if ks := keys(t, g.replica, ""); len(ks) != 0 {
		t.Fatalf("an unvouched backup copied %v", ks)
	}

	// A second writer on the replica's log: longer than the primary's,
	// then forked from it.
	h := newFixture(t)
	m = h.backup(t, true)
	if _, err := h.copier(t, nil).Backup(ctx, m.Backup); err != nil {
		t.Fatal(err)
	}
	other := evidence.NewLog(h.replica, h.signer, nil)
	if _, err := other.Append(ctx, evidence.Record{Kind: "drill", ID: "elsewhere", Outcome: evidence.OutcomeSuccess, Subject: map[string]any{}, HIPAA: []string{}}); err != nil {
		t.Fatal(err)
	}
	_, err = h.copier(t, nil).Evidence(ctx)
	if !errors.Is(err, replica.ErrTampered) || !strings.Contains(err.Error(), "longer than the primary's") {
		t.Fatalf("longer replica log: %v", err)
	}
	h.backup(t, true) // the primary's seq 2, another record than the replica's
	_, err = h.copier(t, nil).Evidence(ctx)
	if !errors.Is(err, replica.ErrTampered) || !strings.Contains(err.Error(), "forked") || !strings.Contains(err.Error(), "evidence/seq/0000000002.json") {
		t.Fatalf("forked log: %v", err)
	}
}

// TestResume: a copy cancelled after its first object resumes, skipping
// (after reading it back) what the first run committed, which is not
// written again.
func TestResume(t *testing.T) {
	f := newFixture(t)
	m := f.backup(t, true)
	ctx, cancel := context.WithCancel(t.Context())
	var first string
	_, err := f.copier(t, func(e replica.Event) {
		if first == "" && e.Copied {
			first = e.Key
			cancel()
		}
	}).Backup(ctx, m.Backup)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled copy: %v", err)
	}
	if states, _ := replica.Status(t.Context(), f.primary, f.replica, []catalog.Manifest{m}); states[m.Backup] != replica.StateIncomplete {
		t.Fatalf("after the interruption: %v", states)
	}
	before, err := f.replica.Stat(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(f.dir, "replica", "objects", filepath.FromSlash(first)))
	if err != nil {
		t.Fatal(err)
	}
	var again []replica.Event
	res, err := f.copier(t, func(e replica.Event) { again = append(again, e) }).Backup(t.Context(), m.Backup)
	if err != nil || res.State != replica.StateReplicated || res.Skipped != 1 {
		t.Fatalf("resumed: %+v %v", res, err)
	}
	if again[0].Key != first || again[0].Copied {
		t.Fatalf("resumed run's first object: %+v", again[0])
	}
	after, _ := f.replica.Stat(t.Context(), first)
	fi2, _ := os.Stat(filepath.Join(f.dir, "replica", "objects", filepath.FromSlash(first)))
	if !after.Created.Equal(before.Created) || !os.SameFile(fi, fi2) {
		t.Fatalf("%s was written again", first)
	}
}

// TestManifestPlantedFirst: someone who can read the primary and write the
// replica puts the primary's manifest on the replica before the first
// replication. The backup is then not replicated (it is incomplete), and
// replication copies its artifacts, read back whole, so that the replica
// holds a backup that verifies; an artifact then on the replica with the
// manifest's size is not read again.
func TestManifestPlantedFirst(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	m := f.backup(t, true)
	mkey := catalog.ManifestKey(m.Backup)
	rd, err := f.primary.Get(ctx, mkey, store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(rd)
	rd.Close()
	if _, err := f.replica.Put(ctx, mkey, bytes.NewReader(mb), store.PutOptions{RetainUntil: m.RetainUntil}); err != nil {
		t.Fatal(err)
	}
	if states, err := replica.Status(ctx, f.primary, f.replica, []catalog.Manifest{m}); err != nil || states[m.Backup] != replica.StateIncomplete {
		t.Fatalf("a manifest without its artifacts: %v %v, want incomplete", states, err)
	}

	var copied []string
	res, err := f.copier(t, func(e replica.Event) {
		if e.Copied {
			copied = append(copied, e.Key)
		}
	}).Backup(ctx, m.Backup)
	if err != nil || res.State != replica.StateReplicated {
		t.Fatalf("replicate: %+v %v", res, err)
	}
	for _, a := range m.Artifacts {
		if !strings.Contains(strings.Join(copied, " "), catalog.ArtifactKey(m.Backup, a.Name)) {
			t.Fatalf("artifact %s not copied (copied: %v)", a.Name, copied)
		}
	}
	if states, err := replica.Status(ctx, f.primary, f.replica, []catalog.Manifest{m}); err != nil || states[m.Backup] != replica.StateReplicated {
		t.Fatalf("after replication: %v %v, want replicated", states, err)
	}
	if vr, err := catalog.Verify(ctx, f.replica, m.Backup, true, f.keyring); err != nil || !vr.OK {
		t.Fatalf("verify --read-data on the replica: %+v %v", vr, err)
	}

	// Later replications (a rotation's new key object) list the
	// artifacts rather than read them again.
	reads := 0
	counting := &countingStore{Store: f.replica, onGet: func(key string) {
		if strings.Contains(key, "/artifacts/") {
			reads++
		}
	}}
	c, err := replica.New(replica.Options{
		Primary: f.primary, Replica: counting, PrimaryName: "primary", ReplicaName: "dr",
		Trusted:           []evidence.PublicKey{f.signer.PublicKey()},
		BackupRetainUntil: func(m catalog.Manifest) time.Time { return m.RetainUntil.Add(time.Hour) },
		EvidenceRetention: 48 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Backup(ctx, m.Backup); err != nil || res.State != replica.StateReplicated || res.Copied != 0 {
		t.Fatalf("again: %+v %v", res, err)
	}
	if reads != 0 {
		t.Fatalf("%d artifact reads on a replication of a committed backup, want none", reads)
	}
}

// countingStore calls onGet before each Get.
type countingStore struct {
	store.Store
	onGet func(key string)
}

func (c *countingStore) Get(ctx context.Context, key string, o store.GetOptions) (io.ReadCloser, error) {
	c.onGet(key)
	return c.Store.Get(ctx, key, o)
}

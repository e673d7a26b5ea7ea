package replica

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Sentinel errors. Both ErrTampered and ErrNotVouched are verification
// failures: errors wrapping them also wrap catalog.ErrVerification.
var (
	// ErrTampered: the replica holds an object under a key it should copy
	// to, with other bytes (or bytes that fail the replica's own digest),
	// or its evidence log has forked from the primary's. Nothing is
	// overwritten.
	ErrTampered = errors.New("replica holds other bytes than the primary")
	// ErrNotVouched: no committed, signed `backup` record under a trusted
	// key carries the primary manifest's SHA-256, so the backup is not
	// replicated (anyone who can write the primary can plant a backup).
	ErrNotVouched = errors.New("no signed evidence record vouches for the backup's manifest")
	// ErrExpired: the backup's retention has ended; it is not replicated.
	ErrExpired = errors.New("the backup's retention has ended")
)

// Steps named by Error, and recorded in `replica` records
// (docs/format.md §9.5).
const (
	StepManifest  = "manifest"
	StepVouch     = "vouch"
	StepArtifact  = "artifact"
	StepKeyObject = "key object"
	StepEvidence  = "evidence"
	StepReport    = "report"
	StepCommit    = "commit"
)

// Error is a failed replication: the step and the object it failed on.
type Error struct {
	// Step is one of the Step constants.
	Step string
	// Object is the object key; "" when the step failed before one.
	Object string
	Err    error
}

func (e *Error) Error() string {
	if e.Object == "" {
		return "replicate: " + e.Step + ": " + e.Err.Error()
	}
	return "replicate: " + e.Step + " " + e.Object + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Limits on objects read whole.
const (
	maxManifest  = 16 << 20
	maxKeyObject = 1 << 20
	maxRecord    = 1 << 20
)

// Options configure a Copier.
type Options struct {
	// Primary is the plan's store; Replica the store copied to. Required.
	Primary, Replica store.Store
	// PrimaryName and ReplicaName name the Stores in logs and results.
	PrimaryName, ReplicaName string
	// Trusted are the evidence signers whose records vouch for manifests
	// and whose records are copied. At least one is required.
	Trusted []evidence.PublicKey
	// BackupRetainUntil is the lock of a backup's objects on the replica
	// (docs/format.md §9.1). Required.
	BackupRetainUntil func(catalog.Manifest) time.Time
	// EvidenceRetention is how long evidence records and reports are
	// locked on the replica, from the record's time. Required.
	EvidenceRetention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Progress, when set, is told of each object copied or found there.
	Progress func(Event)
}

// Event is one object handled.
type Event struct {
	// Key is the object's key.
	Key string
	// Copied is true when it was copied, false when it was already on the
	// replica with the expected bytes.
	Copied bool
	// Bytes is its size.
	Bytes int64
}

// Result is what Backup did to one backup on one replica.
type Result struct {
	Backup string `json:"backup"`
	// Store names the replica store.
	Store string `json:"store"`
	// State is the backup's state on the replica afterwards (State*).
	State string `json:"state"`
	// Copied and Skipped count the backup's objects copied and found
	// already there; Bytes is the bytes copied.
	Copied  int   `json:"copied"`
	Skipped int   `json:"skipped"`
	Bytes   int64 `json:"bytes"`
	// Records counts the evidence records copied with it.
	Records int `json:"records"`
	// ManifestSHA256 is the manifest replicated; VouchedBy the signed
	// record that vouched for it.
	ManifestSHA256 string `json:"manifestSHA256"`
	VouchedBy      string `json:"vouchedBy,omitempty"`
	// EvidenceHead is the seq of the replica's newest record after the
	// copy (0 when the evidence log was not copied by this call).
	EvidenceHead int64 `json:"evidenceHead"`
}

// Copier replicates from one primary store to one replica store. It is
// not safe for concurrent use; several Copiers (in several processes) on
// the same stores are safe: every write is write-once and checked.
type Copier struct {
	o Options
	// head is the primary's seq the replica's log was brought up to by
	// this Copier; 0 before Evidence ran.
	head int64
}

// New returns a Copier.
func New(o Options) (*Copier, error) {
	switch {
	case o.Primary == nil || o.Replica == nil:
		return nil, errors.New("replicate: a primary and a replica store are required")
	case len(o.Trusted) == 0:
		return nil, errors.New("replicate: at least one trusted evidence key is required")
	case o.BackupRetainUntil == nil || o.EvidenceRetention <= 0:
		return nil, errors.New("replicate: the replica's retention is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Copier{o: o}, nil
}

// Backup replicates committed backup id (docs/format.md §9.1): it reads
// the primary's manifest and checks its SHA-256 against the backup's
// signed record, copies every artifact (checked against the manifest),
// every key object of the backup, the evidence log up to the primary's
// head (which holds the vouching record), and the manifest last. A backup
// already committed on the replica with the same manifest only gets the
// key objects it lacks (added by rotation). The result is returned also
// on error, saying what was copied.
func (c *Copier) Backup(ctx context.Context, id string) (res Result, err error) {
	res = Result{Backup: id, Store: c.o.ReplicaName, State: StateIncomplete}
	defer func() {
		if errors.Is(err, ErrTampered) {
			res.State = StateTampered
		}
	}()
	if _, _, err := catalog.ParseID(id); err != nil {
		return res, &Error{Step: StepManifest, Err: err}
	}
	mkey := catalog.ManifestKey(id)
	mb, err := readAll(ctx, c.o.Primary, mkey, maxManifest)
	if err != nil {
		return res, &Error{StepManifest, mkey, fmt.Errorf("read the primary's (%s): %w", c.o.PrimaryName, err)}
	}
	sum := digest(mb)
	m, err := catalog.Decode(bytes.NewReader(mb))
	if err == nil && m.Backup != id {
		err = fmt.Errorf("names backup %q", m.Backup)
	}
	if err != nil {
		return res, &Error{StepManifest, mkey, fmt.Errorf("the primary's: %w: %w", err, catalog.ErrVerification)}
	}
	res.ManifestSHA256 = sum
	rc, err := backup.CheckRecord(ctx, c.o.Primary, id, sum, c.o.Trusted...)
	if err != nil {
		return res, &Error{StepVouch, mkey, err}
	}
	if rc.Status != backup.RecordOK {
		return res, &Error{StepVouch, mkey, fmt.Errorf("%w (the record is %s): %w", ErrNotVouched, rc.Status, catalog.ErrVerification)}
	}
	res.VouchedBy = rc.Record
	recSeq, ok := recordSeq(rc.Record)
	if !ok {
		return res, &Error{StepVouch, rc.Record, errors.New("not an evidence record key")}
	}
	retain := c.o.BackupRetainUntil(m)
	if !retain.After(c.o.Now()) {
		return res, &Error{StepManifest, mkey, fmt.Errorf("%w (locked until %s)", ErrExpired, retain.UTC().Format(time.RFC3339))}
	}

	// Committed on the replica already: then only key objects may be new.
	committed, err := c.has(ctx, mkey, sum)
	if err != nil {
		return res, &Error{StepCommit, mkey, err}
	}
	// A manifest already there is not proof that its artifacts are: the
	// manifest goes last, but anyone who can write to the replica may have
	// put the primary's there first, and then nothing would be copied. So
	// the artifacts are listed, and those not there with the manifest's
	// size are copied (read back whole, as on a first copy) (§9.1).
	var listed map[string]int64
	if committed {
		if listed, err = c.artifactSizes(ctx, id); err != nil {
			return res, &Error{StepArtifact, catalog.BackupPrefix(id) + "artifacts/", err}
		}
	}
	for _, a := range m.Artifacts {
		key := catalog.ArtifactKey(id, a.Name)
		if size, ok := listed[key]; ok && size == a.CiphertextSize {
			res.Skipped++
			continue
		}
		if committed {
			c.o.Logger.Warn("the replica has the backup's manifest but not this artifact: its manifest was written before it (not by lifeboat, which writes it last); copying the artifact",
				"backup", id, "store", c.o.ReplicaName, "artifact", key)
		}
		err := c.copy(ctx, &res, key, a.CiphertextSHA256, a.CiphertextSize, retain, func() (io.ReadCloser, error) {
			return c.o.Primary.Get(ctx, key, store.GetOptions{})
		})
		if err != nil {
			return res, &Error{StepArtifact, key, err}
		}
	}
	if err := c.keyObjects(ctx, &res, m, retain); err != nil {
		return res, err
	}
	if committed {
		// The log goes on growing after the backup (rotations, drills,
		// replications): bring the replica's up to date too.
		res.State = StateReplicated
		er, err := c.Evidence(ctx)
		res.Records, res.EvidenceHead = er.Copied, c.head
		return res, err
	}
	// The record vouching for the manifest goes before the manifest, so
	// the replica's commit point never precedes what authenticates it.
	if c.head < recSeq {
		er, err := c.Evidence(ctx)
		res.Records = er.Copied
		if err != nil {
			return res, err
		}
		if c.head < recSeq {
			return res, &Error{StepEvidence, rc.Record, fmt.Errorf("the primary's log ends at seq %d, before the vouching record", c.head)}
		}
	}
	res.EvidenceHead = c.head
	if err := c.copyBytes(ctx, &res, mkey, mb, retain); err != nil {
		return res, &Error{StepCommit, mkey, err}
	}
	res.State = StateReplicated
	c.o.Logger.Info("backup replicated", "backup", id, "store", c.o.ReplicaName, "copied", res.Copied, "skipped", res.Skipped, "bytes", res.Bytes)
	return res, nil
}

// artifactSizes lists the replica's artifacts of backup id: key → size.
func (c *Copier) artifactSizes(ctx context.Context, id string) (map[string]int64, error) {
	out := map[string]int64{}
	for info, err := range c.o.Replica.List(ctx, catalog.BackupPrefix(id)+"artifacts/") {
		if err != nil {
			return nil, fmt.Errorf("list the replica's (%s): %w", c.o.ReplicaName, err)
		}
		out[info.Key] = info.Size
	}
	return out, nil
}

// keyObjects copies the backup's key objects the replica lacks. Only
// objects that decode as key objects of this backup are copied (a reader
// refuses others anyway); at least one must hold the manifest's data key.
func (c *Copier) keyObjects(ctx context.Context, res *Result, m catalog.Manifest, retain time.Time) error {
	prefix := catalog.KeysPrefix(m.Backup)
	var keys []string
	for info, err := range c.o.Primary.List(ctx, prefix) {
		if err != nil {
			return &Error{StepKeyObject, prefix, fmt.Errorf("list the primary's: %w", err)}
		}
		keys = append(keys, info.Key)
	}
	holds := false
	for _, key := range keys {
		b, err := readAll(ctx, c.o.Primary, key, maxKeyObject)
		if err != nil {
			return &Error{StepKeyObject, key, fmt.Errorf("read the primary's: %w", err)}
		}
		ko, err := envelope.ReadKeyObject(bytes.NewReader(b))
		if err == nil && ko.Backup != m.Backup {
			err = fmt.Errorf("names backup %q", ko.Backup)
		}
		if err != nil {
			c.o.Logger.Warn("not a key object of the backup; not replicated", "backup", m.Backup, "object", key, "err", err)
			continue
		}
		holds = holds || ko.DataKeyID == m.DataKeyID
		if err := c.copyBytes(ctx, res, key, b, retain); err != nil {
			return &Error{StepKeyObject, key, err}
		}
	}
	if !holds {
		return &Error{StepKeyObject, prefix, fmt.Errorf("no key object of the primary holds data key %s: %w", m.DataKeyID, catalog.ErrVerification)}
	}
	return nil
}

// copyBytes copies b, already read and checked, to key.
func (c *Copier) copyBytes(ctx context.Context, res *Result, key string, b []byte, retain time.Time) error {
	return c.copy(ctx, res, key, digest(b), int64(len(b)), retain, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}

// copy puts the bytes open returns under key on the replica, requiring
// SHA-256 sum (and size, when positive), unless the replica has them
// already. An object there with other bytes is ErrTampered.
func (c *Copier) copy(ctx context.Context, res *Result, key, sum string, size int64, retain time.Time, open func() (io.ReadCloser, error)) error {
	there, err := c.has(ctx, key, sum)
	if err != nil {
		return err
	}
	if there {
		res.Skipped++
		c.progress(Event{Key: key, Bytes: size})
		return nil
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("read the primary's (%s): %w", c.o.PrimaryName, err)
	}
	defer rc.Close()
	h := sha256.New()
	info, err := c.o.Replica.Put(ctx, key, io.TeeReader(rc, h), store.PutOptions{RetainUntil: retain, SHA256: sum, Size: size})
	switch {
	case errors.Is(err, store.ErrExists):
		// Another replicator got there first: accept only the same bytes.
		there, err := c.has(ctx, key, sum)
		if err != nil {
			return err
		}
		if !there {
			return fmt.Errorf("the replica's put reported the key taken, then it was not found: %w", ErrTampered)
		}
		res.Skipped++
		c.progress(Event{Key: key, Bytes: size})
		return nil
	case errors.Is(err, store.ErrIntegrity):
		// The replica refused the bytes: the primary's do not match what
		// authenticates them (or changed in transit).
		return fmt.Errorf("the bytes read from the primary (%s) have SHA-256 %s, want %s; nothing written: %w: %w",
			c.o.PrimaryName, hex.EncodeToString(h.Sum(nil)), sum, err, catalog.ErrVerification)
	case err != nil:
		return fmt.Errorf("put on the replica (%s): %w", c.o.ReplicaName, err)
	}
	if info.SHA256 != "" && info.SHA256 != sum {
		return fmt.Errorf("the replica (%s) reports SHA-256 %s after the put, want %s: %w", c.o.ReplicaName, info.SHA256, sum, ErrTampered)
	}
	res.Copied++
	res.Bytes += info.Size
	c.progress(Event{Key: key, Copied: true, Bytes: info.Size})
	return nil
}

// has reports whether the replica holds key with SHA-256 sum, reading it
// back whole: neither the replica's listing nor its recorded digest is
// trusted to say so. Other bytes are ErrTampered.
func (c *Copier) has(ctx context.Context, key, sum string) (bool, error) {
	rc, err := c.o.Replica.Get(ctx, key, store.GetOptions{})
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil && !errors.Is(err, store.ErrIntegrity) {
		return false, fmt.Errorf("read the replica's (%s): %w", c.o.ReplicaName, err)
	}
	got := ""
	if err == nil {
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil && !errors.Is(err, store.ErrIntegrity) {
			return false, fmt.Errorf("read the replica's (%s): %w", c.o.ReplicaName, err)
		}
		got = hex.EncodeToString(h.Sum(nil))
	}
	if err != nil {
		return false, fmt.Errorf("the replica's (%s) copy fails its own digest (%w); not overwritten: %w: %w", c.o.ReplicaName, err, ErrTampered, catalog.ErrVerification)
	}
	if got != sum {
		return false, fmt.Errorf("the replica (%s) holds other bytes (SHA-256 %s, want %s); not overwritten: %w: %w", c.o.ReplicaName, got, sum, ErrTampered, catalog.ErrVerification)
	}
	return true, nil
}

func (c *Copier) progress(e Event) {
	if c.o.Progress != nil {
		c.o.Progress(e)
	}
}

// readAll reads a whole object of at most limit bytes; the store checks
// its recorded digest at the end.
func readAll(ctx context.Context, st store.Store, key string, limit int64) ([]byte, error) {
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes: %w", limit, catalog.ErrVerification)
	}
	return b, nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

package catalog

import (
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/strictjson"
)

// ManifestFormat is the value of a manifest's format field; a reader
// refuses any other.
const ManifestFormat = "lifeboat.dev/manifest/v2"

// ManifestMACInfo is the HKDF info of the manifest key (docs/format.md §6).
const ManifestMACInfo = "lifeboat.dev/manifest-mac/v2"

// Backup status values.
const (
	// StatusComplete: every source of the plan was taken.
	StatusComplete = "complete"
	// StatusPartial: at least one source was skipped; each skip is in
	// Manifest.Skipped.
	StatusPartial = "partial"
)

// Source names, as recorded in Artifact.Source and Skip.Source. They are
// the BackupPlan's source kinds.
const (
	SourceEtcd             = "etcd"
	SourceEncryptionConfig = "encryptionConfig"
)

// Artifact names of the sources this version writes.
const (
	// ArtifactEtcdSnapshot is the etcd snapshot exactly as etcd streamed
	// it: the bbolt database followed by the SHA-256 of the database that
	// etcd appends (the file `etcdctl snapshot save` writes; etcdutl's
	// snapshot restore checks the appended digest again).
	ArtifactEtcdSnapshot = "etcd-snapshot.db"
	// ArtifactEncryptionConfig is the kube-apiserver's
	// EncryptionConfiguration file, byte for byte.
	ArtifactEncryptionConfig = "encryption-config.yaml"
)

// maxManifestSize bounds a manifest; real ones are a few KiB (the
// inventory holds one line per resource prefix).
const maxManifestSize = 16 << 20

// Manifest is a backup's catalog entry (docs/format.md §6).
type Manifest struct {
	Format    string    `json:"format"`
	Backup    string    `json:"backup"`
	Plan      string    `json:"plan"`
	Status    string    `json:"status"`
	Started   time.Time `json:"started"`
	Completed time.Time `json:"completed"`
	// RetainUntil is the retention of every object of the backup.
	RetainUntil time.Time `json:"retainUntil"`
	// KEK wrapped the data key at backup time; later rotations add key
	// objects but never change the manifest.
	KEK keys.Ref `json:"kek"`
	// AlsoWrapped are the KEK versions the data key was also wrapped
	// under at backup time, one key object each: the plan's other
	// keyProviders (break-glass). Any one unwraps the backup.
	AlsoWrapped []keys.Ref `json:"alsoWrapped,omitempty"`
	DataKeyID   string     `json:"dataKeyId"`
	Artifacts   []Artifact `json:"artifacts"`
	// Etcd is set when the backup holds an etcd snapshot.
	Etcd *Etcd `json:"etcd,omitempty"`
	// EncryptionConfig is set when the backup holds the API server's
	// encryption-at-rest configuration.
	EncryptionConfig *EncryptionConfig `json:"encryptionConfig,omitempty"`
	// Manifests, Volumes, Vault and Velero are set when the backup took
	// those sources (docs/format.md §6.1–§6.4).
	Manifests *Manifests `json:"manifests,omitempty"`
	Volumes   *Volumes   `json:"volumes,omitempty"`
	Vault     *Vault     `json:"vault,omitempty"`
	Velero    *Velero    `json:"velero,omitempty"`
	Skipped   []Skip     `json:"skipped,omitempty"`
	Lifeboat  Lifeboat   `json:"lifeboat"`
	// MAC authenticates every other field under a key derived from the
	// data key (Seal, CheckMAC; docs/format.md §6).
	MAC string `json:"mac,omitempty"`
}

// Artifact is one encrypted artifact of a backup, stored at
// ArtifactKey(backup, Name).
type Artifact struct {
	Name             string `json:"name"`
	Source           string `json:"source"`
	Compression      string `json:"compression"`
	PlaintextSize    int64  `json:"plaintextSize"`
	PlaintextSHA256  string `json:"plaintextSHA256"`
	CiphertextSize   int64  `json:"ciphertextSize"`
	CiphertextSHA256 string `json:"ciphertextSHA256"`
}

// Etcd holds the facts of an etcd snapshot.
type Etcd struct {
	// Endpoint is the client URL the snapshot was taken from.
	Endpoint string `json:"endpoint"`
	// ClusterID and MemberID are hex, as etcdctl prints them.
	ClusterID string `json:"clusterId"`
	MemberID  string `json:"memberId"`
	// Revision is the store revision the inventory was taken at: the
	// revision etcd reported just before the snapshot stream began. The
	// snapshot holds every revision up to it (and possibly later ones), so
	// a restore read at Revision must equal Inventory.
	Revision int64 `json:"revision"`
	// DBSize is the database size etcd reported with Revision.
	DBSize int64 `json:"dbSize"`
	// TakenAt is when the snapshot stream began.
	TakenAt time.Time `json:"takenAt"`
	// SnapshotSHA256 is the SHA-256 of the database, which etcd appends to
	// the snapshot stream and which was checked against the bytes
	// received.
	SnapshotSHA256 string    `json:"snapshotSHA256"`
	Inventory      Inventory `json:"inventory"`
}

// EncryptionConfig describes an EncryptionConfiguration without any secret:
// provider types in order of first appearance (e.g. aescbc, identity), the
// names of their keys, and the resources it covers.
type EncryptionConfig struct {
	Providers []string `json:"providers"`
	KeyNames  []string `json:"keyNames"`
	Resources []string `json:"resources"`
}

// Skip records a source of the plan that the backup did not take.
type Skip struct {
	Source string `json:"source"`
	Reason string `json:"reason"`
}

// Lifeboat identifies the lifeboat that wrote the manifest.
type Lifeboat struct {
	Version string `json:"version"`
}

// BackupPrefix is the key prefix of every object of backup id.
func BackupPrefix(id string) string { return "backups/" + id + "/" }

// ManifestKey is the key of backup id's manifest.
func ManifestKey(id string) string { return BackupPrefix(id) + "manifest.json" }

// ArtifactKey is the key of artifact name of backup id.
func ArtifactKey(id, name string) string { return BackupPrefix(id) + "artifacts/" + name }

// KeysPrefix is the key prefix of backup id's key objects.
func KeysPrefix(id string) string { return BackupPrefix(id) + "keys/" }

// Artifact returns the artifact with the given name.
func (m *Manifest) Artifact(name string) (Artifact, bool) {
	for _, a := range m.Artifacts {
		if a.Name == name {
			return a, true
		}
	}
	return Artifact{}, false
}

// StoredSize is the total ciphertext size of the backup's artifacts.
func (m *Manifest) StoredSize() int64 {
	var n int64
	for _, a := range m.Artifacts {
		n += a.CiphertextSize
	}
	return n
}

// Validate checks the manifest against docs/format.md §6.
func (m *Manifest) Validate() error {
	if m.Format != ManifestFormat {
		return fmt.Errorf("field format: got %q, want %q", m.Format, ManifestFormat)
	}
	if !IsSHA256Hex(m.MAC) {
		return fmt.Errorf("field mac: %q is not 64 lowercase hex digits (a manifest must be authenticated)", m.MAC)
	}
	plan, _, err := ParseID(m.Backup)
	if err != nil {
		return fmt.Errorf("field backup: %w", err)
	}
	if m.Plan != plan {
		return fmt.Errorf("field plan: %q, but the backup ID names plan %q", m.Plan, plan)
	}
	switch m.Status {
	case StatusComplete:
		if len(m.Skipped) > 0 {
			return errors.New("field status: complete, but skipped lists sources")
		}
	case StatusPartial:
		if len(m.Skipped) == 0 {
			return errors.New("field status: partial, but skipped is empty")
		}
	default:
		return fmt.Errorf("field status: %q is not %s or %s", m.Status, StatusComplete, StatusPartial)
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"started", m.Started}, {"completed", m.Completed}, {"retainUntil", m.RetainUntil}} {
		if f.t.IsZero() {
			return fmt.Errorf("field %s: missing", f.name)
		}
	}
	if m.Completed.Before(m.Started) {
		return errors.New("field completed: before started")
	}
	if !m.RetainUntil.After(m.Completed) {
		return errors.New("field retainUntil: not after completed")
	}
	if m.KEK.Provider == "" || m.KEK.Key == "" || m.KEK.Version == "" {
		return errors.New("field kek: provider, key and version are required")
	}
	for i, r := range m.AlsoWrapped {
		if r.Provider == "" || r.Key == "" || r.Version == "" {
			return fmt.Errorf("field alsoWrapped[%d]: provider, key and version are required", i)
		}
		if r == m.KEK || slices.Contains(m.AlsoWrapped[:i], r) {
			return fmt.Errorf("field alsoWrapped[%d]: %s is listed twice", i, r)
		}
	}
	if len(m.DataKeyID) != 32 || !isLowerHex(m.DataKeyID) {
		return errors.New("field dataKeyId: want 32 lowercase hex digits")
	}
	if len(m.Artifacts) == 0 && m.Volumes == nil && m.Velero == nil {
		return errors.New("field artifacts: empty, and no volumes or velero section")
	}
	seen := make(map[string]bool)
	for i, a := range m.Artifacts {
		if err := a.validate(); err != nil {
			return fmt.Errorf("field artifacts[%d]: %w", i, err)
		}
		if seen[a.Name] {
			return fmt.Errorf("field artifacts[%d].name: %q appears twice", i, a.Name)
		}
		seen[a.Name] = true
	}
	if e := m.Etcd; e != nil {
		if err := e.validate(); err != nil {
			return fmt.Errorf("field etcd.%w", err)
		}
	}
	for _, sec := range []struct {
		name string
		v    interface{ validate() error }
		set  bool
	}{{"manifests", m.Manifests, m.Manifests != nil}, {"volumes", m.Volumes, m.Volumes != nil},
		{"vault", m.Vault, m.Vault != nil}, {"velero", m.Velero, m.Velero != nil}} {
		if !sec.set {
			continue
		}
		if err := sec.v.validate(); err != nil {
			return fmt.Errorf("field %s.%w", sec.name, err)
		}
	}
	// What the manifests section says it skipped is in the backup's skipped
	// list, so no section can hide a gap behind status complete.
	for _, want := range m.Manifests.Skips() {
		if !slices.Contains(m.Skipped, want) {
			return fmt.Errorf("field skipped: lacks %s %q, which the manifests section records", want.Source, want.Reason)
		}
	}
	for i, s := range m.Skipped {
		if s.Source == "" || s.Reason == "" {
			return fmt.Errorf("field skipped[%d]: source and reason are required", i)
		}
	}
	if m.Lifeboat.Version == "" {
		return errors.New("field lifeboat.version: missing")
	}
	return nil
}

func (a *Artifact) validate() error {
	if err := validName(a.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if a.Source == "" {
		return errors.New("source: missing")
	}
	if a.Compression != "zstd" && a.Compression != "none" {
		return fmt.Errorf("compression: %q is not zstd or none", a.Compression)
	}
	if a.PlaintextSize < 0 || a.CiphertextSize <= 0 {
		return errors.New("sizes: plaintextSize must not be negative and ciphertextSize must be positive")
	}
	if !IsSHA256Hex(a.PlaintextSHA256) {
		return errors.New("plaintextSHA256: want 64 lowercase hex digits")
	}
	if !IsSHA256Hex(a.CiphertextSHA256) {
		return errors.New("ciphertextSHA256: want 64 lowercase hex digits")
	}
	return nil
}

func (e *Etcd) validate() error {
	switch {
	case e.Endpoint == "":
		return errors.New("endpoint: missing")
	case e.ClusterID == "" || !isLowerHex(e.ClusterID):
		return errors.New("clusterId: want lowercase hex")
	case e.MemberID == "" || !isLowerHex(e.MemberID):
		return errors.New("memberId: want lowercase hex")
	case e.Revision <= 0:
		return errors.New("revision: must be positive")
	case e.DBSize <= 0:
		return errors.New("dbSize: must be positive")
	case e.TakenAt.IsZero():
		return errors.New("takenAt: missing")
	case !IsSHA256Hex(e.SnapshotSHA256):
		return errors.New("snapshotSHA256: want 64 lowercase hex digits")
	}
	if err := e.Inventory.validate(); err != nil {
		return fmt.Errorf("inventory.%w", err)
	}
	return nil
}

// Seal sets the manifest's MAC under the manifest key derived from dk,
// the backup's data key (docs/format.md §6). Call it last, once every
// other field is final.
func (m *Manifest) Seal(dk envelope.DataKey) error {
	mac, err := m.computeMAC(dk)
	if err != nil {
		return fmt.Errorf("seal manifest of backup %q: %w", m.Backup, err)
	}
	m.MAC = mac
	return nil
}

// CheckMAC verifies the manifest's MAC with dk, the backup's data key. A
// mismatch wraps ErrVerification and names the manifest: it was changed
// by someone without the data key.
func (m Manifest) CheckMAC(dk envelope.DataKey) error {
	want, err := m.computeMAC(dk)
	if err != nil {
		return fmt.Errorf("check the MAC of manifest %s: %w", ManifestKey(m.Backup), err)
	}
	if !hmac.Equal([]byte(want), []byte(m.MAC)) {
		return fmt.Errorf("manifest %s: its MAC does not match its contents under the backup's data key (the manifest was changed after the backup wrote it): %w",
			ManifestKey(m.Backup), ErrVerification)
	}
	return nil
}

// computeMAC is the hex HMAC of the manifest's MAC input: its stored
// encoding without the mac field.
func (m Manifest) computeMAC(dk envelope.DataKey) (string, error) {
	m.MAC = ""
	in, err := m.encode()
	if err != nil {
		return "", err
	}
	sum, err := dk.MAC(ManifestMACInfo, in)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum), nil
}

// Marshal validates the manifest and encodes it as indented JSON with a
// final newline. Times are written in UTC.
func (m Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode manifest of backup %q: %w", m.Backup, err)
	}
	return m.encode()
}

// encode is Marshal without validation: the stored encoding (and, without
// mac, the MAC input).
func (m Manifest) encode() ([]byte, error) {
	m.Started, m.Completed, m.RetainUntil = m.Started.UTC(), m.Completed.UTC(), m.RetainUntil.UTC()
	if m.Etcd != nil {
		e := *m.Etcd
		e.TakenAt = e.TakenAt.UTC()
		m.Etcd = &e
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest of backup %q: %w", m.Backup, err)
	}
	return append(b, '\n'), nil
}

// Decode reads a manifest strictly: unknown fields, trailing bytes, more
// than 16 MiB and any value outside docs/format.md §6 are errors.
func Decode(r io.Reader) (Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifestSize+1))
	if err != nil {
		return Manifest{}, err
	}
	if len(data) > maxManifestSize {
		return Manifest{}, fmt.Errorf("larger than %d bytes: %w", maxManifestSize, ErrVerification)
	}
	var m Manifest
	if err := strictjson.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("decode JSON: %v: %w", err, ErrVerification)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, fmt.Errorf("%v: %w", err, ErrVerification)
	}
	return m, nil
}

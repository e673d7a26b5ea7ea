package config

import (
	"path/filepath"
	"time"
)

// KindAuditLog is the kind of an AuditLog.
const KindAuditLog = "AuditLog"

// Defaults of an AuditLog.
const (
	DefaultAuditSegmentBytes = 64 << 20
	DefaultAuditSegmentAge   = Duration(5 * time.Minute)
	DefaultAuditWALDir       = "/var/lib/lifeboat/audit"
	maxAuditSegmentBytes     = 1 << 30
)

// AuditLog says where `serve` keeps the API server's audit events
// (docs/format.md §8): it receives them through the API server's webhook
// backend, acknowledges them once they are in a write-ahead log on its
// volume, and seals them into encrypted, signed, hash-chained segments in
// a locked store.
type AuditLog struct {
	APIVersion string       `yaml:"apiVersion"`
	Kind       string       `yaml:"kind"`
	Metadata   ObjectMeta   `yaml:"metadata"`
	Spec       AuditLogSpec `yaml:"spec"`

	origin origin
}

// AuditLogSpec is the spec of an AuditLog.
type AuditLogSpec struct {
	// Store names the Store the segments go to. Required.
	Store string `yaml:"store"`
	// KeyProvider or KeyProviders wrap each segment's data key, as a
	// BackupPlan's do (every one gets a key object; any one opens the
	// segment). Exactly one of them is set.
	KeyProvider  string   `yaml:"keyProvider,omitempty"`
	KeyProviders []string `yaml:"keyProviders,omitempty"`
	// Retention locks every segment and record; default 2190d, never
	// shorter than the store's objectLock.retention.
	Retention Duration `yaml:"retention,omitempty"`
	// Webhook is the listener the API server's webhook backend posts to.
	// Exactly one of Webhook and File is set.
	Webhook *AuditWebhook `yaml:"webhook,omitempty"`
	// File reads the API server's log backend (--audit-log-path, JSON
	// format) from a node-local path instead: serve then runs beside the
	// API server, one stream per node.
	File *AuditFile `yaml:"file,omitempty"`
	// WALDir is the write-ahead log's directory on the replica's volume;
	// default /var/lib/lifeboat/audit.
	WALDir string `yaml:"walDir,omitempty"`
	// Segment says when a segment is sealed.
	Segment AuditSegment `yaml:"segment,omitempty"`
}

// AuditWebhook is the TLS listener of the audit webhook. Only a client
// certificate signed by ClientCAFile whose subject common name or a DNS
// name is one of ClientNames is accepted.
type AuditWebhook struct {
	// Listen is the address, e.g. ":8443". Required.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are the server's certificate and key (PEM),
	// read again when they change. Required.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ClientCAFile is the CA bundle that signs the API server's client
	// certificate. Required.
	ClientCAFile string `yaml:"clientCAFile"`
	// ClientNames are the accepted client identities. Required.
	ClientNames []string `yaml:"clientNames"`
}

// AuditFile is the API server's audit log file (--audit-log-path with
// --audit-log-format=json), followed across its rotations.
type AuditFile struct {
	// Path is the file as mounted in serve's pod. Required.
	Path string `yaml:"path"`
}

// AuditSegment bounds a segment: it is sealed when its events reach
// MaxBytes (default 64 MiB) or its oldest is MaxAge old (default 5m).
type AuditSegment struct {
	MaxBytes int64    `yaml:"maxBytes,omitempty"`
	MaxAge   Duration `yaml:"maxAge,omitempty"`
}

// KeyProviderNames returns the AuditLog's key providers, the first first.
func (s AuditLogSpec) KeyProviderNames() []string {
	if len(s.KeyProviders) > 0 {
		return s.KeyProviders
	}
	return []string{s.KeyProvider}
}

// AuditRetention is how long an AuditLog's objects in st are locked.
func AuditRetention(a *AuditLog, st *Store) time.Duration {
	r := a.Spec.Retention.Std()
	if r <= 0 {
		r = DefaultRetention.Std()
	}
	return max(r, storeLock(st))
}

// GetKind implements Object.
func (*AuditLog) GetKind() string { return KindAuditLog }

// GetName implements Object.
func (o *AuditLog) GetName() string { return o.Metadata.Name }

// Source implements Object.
func (o *AuditLog) Source() Position { return o.origin.pos }

func (o *AuditLog) meta() *ObjectMeta { return &o.Metadata }
func (o *AuditLog) orig() *origin     { return &o.origin }

func (o *AuditLog) validate(v *validator) {
	s := &o.Spec
	v.required("spec.store", s.Store)
	v.oneOf("spec", []string{"keyProvider", "keyProviders"}, []bool{s.KeyProvider != "", len(s.KeyProviders) > 0}, "name the key providers that wrap each segment's data key")
	v.positive("spec.retention", &s.Retention, DefaultRetention)
	v.oneOf("spec", []string{"webhook", "file"}, []bool{s.Webhook != nil, s.File != nil}, "say how the events arrive: the API server's webhook backend, or its log file")
	if w := s.Webhook; w != nil {
		v.required("spec.webhook.listen", w.Listen)
		v.required("spec.webhook.certFile", w.CertFile)
		v.required("spec.webhook.keyFile", w.KeyFile)
		v.required("spec.webhook.clientCAFile", w.ClientCAFile)
		if len(w.ClientNames) == 0 {
			v.errorf("spec.webhook.clientNames", "required: name the API server's client certificate (its common name or a DNS name); any other client is refused")
		}
	}
	if f := s.File; f != nil && v.required("spec.file.path", f.Path) && !filepath.IsAbs(f.Path) {
		v.errorf("spec.file.path", "%q: want an absolute path", f.Path)
	}
	if s.WALDir == "" {
		s.WALDir = DefaultAuditWALDir
	}
	switch {
	case s.Segment.MaxBytes == 0:
		if v.has("spec.segment.maxBytes") {
			v.errorf("spec.segment.maxBytes", "must be greater than zero")
		}
		s.Segment.MaxBytes = DefaultAuditSegmentBytes
	case s.Segment.MaxBytes < 1<<20 || s.Segment.MaxBytes > maxAuditSegmentBytes:
		v.errorf("spec.segment.maxBytes", "%d: want 1 MiB (1048576) to 1 GiB (1073741824)", s.Segment.MaxBytes)
	}
	v.positive("spec.segment.maxAge", &s.Segment.MaxAge, DefaultAuditSegmentAge)
}

// auditLogRefs checks an AuditLog's references, that it is the only one
// (serve has one webhook listener), and that no RotationPolicy retires
// old versions of its key providers: segments are not rewrapped, so a
// retired version would leave them unreadable.
func auditLogRefs(v *validator, o *AuditLog, ref func(path, kind, name string) bool, objs []object) {
	ref("spec.store", KindStore, o.Spec.Store)
	if len(o.Spec.KeyProviders) > 0 {
		for i, name := range o.Spec.KeyProviders {
			ref(joinIndex("spec.keyProviders", i), KindKeyProvider, name)
		}
	} else {
		ref("spec.keyProvider", KindKeyProvider, o.Spec.KeyProvider)
	}
	for _, other := range objs {
		switch x := other.(type) {
		case *AuditLog:
			if x != o && x.Metadata.Name < o.Metadata.Name {
				v.errorf("metadata.name", "a second AuditLog (the first is %q, %s): serve keeps one audit log, with one webhook listener", x.Metadata.Name, x.Source())
			}
		case *RotationPolicy:
			for i, kp := range o.Spec.KeyProviderNames() {
				if x.Spec.KeyProvider == kp && x.Spec.RetireOldVersions == RetireAfterVerifiedRewrap {
					path := "spec.keyProvider"
					if len(o.Spec.KeyProviders) > 0 {
						path = joinIndex("spec.keyProviders", i)
					}
					v.errorf(path, "key provider %q is rotated by RotationPolicy %q (%s) with retireOldVersions: %s; audit segments are not rewrapped, so retiring a version would make them unreadable: use retireOldVersions: never, or another key provider", kp, x.Metadata.Name, x.Source(), RetireAfterVerifiedRewrap)
				}
			}
		}
	}
}

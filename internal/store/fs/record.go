package fs

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/strictjson"
)

// recordFormat is the format of a retention record (docs/format.md §1.1).
const recordFormat = "lifeboat.dev/fs-retention/v1"

// maxRecordSize bounds how much of a retention record file is read; a real
// record is a few hundred bytes plus the key.
const maxRecordSize = 64 << 10

// record is the retention record stored at retention/<key>.json. The field
// order is the order of the spec's table.
type record struct {
	Format      string    `json:"format"`
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Created     time.Time `json:"created"`
	RetainUntil time.Time `json:"retainUntil"`
}

func (r *record) info() store.ObjectInfo {
	return store.ObjectInfo{
		Key:         r.Key,
		Size:        r.Size,
		SHA256:      r.SHA256,
		Created:     r.Created,
		RetainUntil: r.RetainUntil,
	}
}

func (r *record) marshal() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// parseRecord decodes a retention record strictly: unknown fields, a
// foreign format, a record of another key and out-of-range values are
// errors wrapping store.ErrIntegrity.
func parseRecord(b []byte, key string) (*record, error) {
	var r record
	if err := strictjson.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode: %v: %w", err, store.ErrIntegrity)
	}
	switch {
	case r.Format != recordFormat:
		return nil, fmt.Errorf("format %q, want %q: %w", r.Format, recordFormat, store.ErrIntegrity)
	case r.Key != key:
		return nil, fmt.Errorf("record is for key %q: %w", r.Key, store.ErrIntegrity)
	case r.Size < 0:
		return nil, fmt.Errorf("negative size %d: %w", r.Size, store.ErrIntegrity)
	case !isSHA256Hex(r.SHA256):
		return nil, fmt.Errorf("sha256 %q is not 64 lowercase hex digits: %w", r.SHA256, store.ErrIntegrity)
	case r.Created.IsZero():
		return nil, fmt.Errorf("created time missing: %w", store.ErrIntegrity)
	case r.RetainUntil.IsZero():
		return nil, fmt.Errorf("retainUntil time missing: %w", store.ErrIntegrity)
	}
	r.Created = r.Created.UTC()
	r.RetainUntil = r.RetainUntil.UTC()
	return &r, nil
}

// isSHA256Hex reports whether s is a SHA-256 digest in lowercase hex.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

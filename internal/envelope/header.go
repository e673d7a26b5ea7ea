package envelope

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/strictjson"
)

// Format constants (docs/format.md §2).
const (
	// Magic begins every artifact.
	Magic = "LBENV\x00\r\n"
	// FormatVersion is the artifact format version this package writes
	// and the only one it reads.
	FormatVersion = 1
	// MaxHeaderLength bounds the JSON header.
	MaxHeaderLength = 65536
	// AEADName is the value of the header's aead field.
	AEADName = "AES256_GCM_HKDF_SHA256"
	// DefaultSegmentSize is the default ciphertext segment size.
	DefaultSegmentSize = 1 << 20
	// MinSegmentSize and MaxSegmentSize bound segmentSize.
	MinSegmentSize = 16 << 10
	MaxSegmentSize = 16 << 20

	// CompressionZstd and CompressionNone are the compression values.
	CompressionZstd = "zstd"
	CompressionNone = "none"

	prefixLength = len(Magic) + 2 + 4
)

// Sentinel errors; the wrapping error names the artifact.
var (
	// ErrFormat: the bytes are not a valid artifact header.
	ErrFormat = errors.New("not a valid lifeboat artifact")
	// ErrAuthentication: a segment failed AEAD authentication: the artifact
	// was modified, truncated, extended or reordered, or the key is wrong.
	ErrAuthentication = errors.New("artifact failed authentication")
	// ErrWrongKey: the data key's ID differs from the header's dataKeyId.
	ErrWrongKey = errors.New("data key does not match the artifact")
	// ErrKeyObject: a key object is malformed, or names another backup.
	ErrKeyObject = errors.New("invalid key object")
	// ErrMismatch: the artifact's header or digests differ from what the
	// caller expected (another backup's artifact, a swapped name, a digest
	// that differs from the manifest).
	ErrMismatch = errors.New("artifact does not match what was expected")
)

// Header is an artifact's cleartext header (docs/format.md §2.1).
type Header struct {
	Backup      string    `json:"backup"`
	Artifact    string    `json:"artifact"`
	KEK         keys.Ref  `json:"kek"`
	DataKeyID   string    `json:"dataKeyId"`
	Compression string    `json:"compression"`
	AEAD        string    `json:"aead"`
	SegmentSize int       `json:"segmentSize"`
	Created     time.Time `json:"created"`
}

// validate checks every field against docs/format.md §2.1.
func (h *Header) validate() error {
	if err := validName("backup", h.Backup); err != nil {
		return err
	}
	if err := validName("artifact", h.Artifact); err != nil {
		return err
	}
	if h.KEK.Provider == "" || h.KEK.Key == "" || h.KEK.Version == "" {
		return errors.New("field kek: provider, key and version are required")
	}
	if !isKeyID(h.DataKeyID) {
		return errors.New("field dataKeyId: want 32 lowercase hex digits")
	}
	if h.Compression != CompressionZstd && h.Compression != CompressionNone {
		return fmt.Errorf("field compression: %q is not %s or %s", h.Compression, CompressionZstd, CompressionNone)
	}
	if h.AEAD != AEADName {
		return fmt.Errorf("field aead: %q is not %s", h.AEAD, AEADName)
	}
	if h.SegmentSize < MinSegmentSize || h.SegmentSize > MaxSegmentSize {
		return fmt.Errorf("field segmentSize: %d is outside [%d, %d]", h.SegmentSize, MinSegmentSize, MaxSegmentSize)
	}
	if h.Created.IsZero() {
		return errors.New("field created: missing")
	}
	return nil
}

// isKeyID reports whether s is a data key ID: 32 lowercase hex digits.
func isKeyID(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 16 && hex.EncodeToString(b) == s
}

// validName checks a backup or artifact name: 1-128 bytes of [A-Za-z0-9._-].
func validName(field, s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("field %s: must be 1 to 128 bytes, got %d", field, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("field %s: byte %d of %q is not one of [A-Za-z0-9._-]", field, i, s)
		}
	}
	if s == "." || s == ".." {
		return fmt.Errorf("field %s: %q is not a name", field, s)
	}
	return nil
}

// marshalHeader returns the artifact prefix: magic, version, length and the
// JSON header. These bytes are also the AEAD's associated data.
func marshalHeader(h *Header) ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	h.Created = h.Created.UTC()
	js, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode header: %w", err)
	}
	if len(js) > MaxHeaderLength {
		return nil, fmt.Errorf("%w: header is %d bytes, more than %d", ErrFormat, len(js), MaxHeaderLength)
	}
	out := make([]byte, 0, prefixLength+len(js))
	out = append(out, Magic...)
	out = binary.BigEndian.AppendUint16(out, FormatVersion)
	out = binary.BigEndian.AppendUint32(out, uint32(len(js)))
	return append(out, js...), nil
}

// ReadHeader reads and validates an artifact's header from r, leaving r at
// the start of the payload. It returns the header and its raw bytes (the
// AEAD's associated data).
func ReadHeader(r io.Reader) (Header, []byte, error) {
	prefix := make([]byte, prefixLength)
	if _, err := io.ReadFull(r, prefix); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, nil, fmt.Errorf("%w: shorter than the %d-byte prefix", ErrFormat, prefixLength)
		}
		return Header{}, nil, fmt.Errorf("read header: %w", err)
	}
	n, err := parsePrefix(prefix)
	if err != nil {
		return Header{}, nil, err
	}
	raw := make([]byte, prefixLength+n)
	copy(raw, prefix)
	if _, err := io.ReadFull(r, raw[prefixLength:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, nil, fmt.Errorf("%w: header cut short (want %d bytes)", ErrFormat, n)
		}
		return Header{}, nil, fmt.Errorf("read header: %w", err)
	}
	h, err := parseHeaderJSON(raw[prefixLength:])
	if err != nil {
		return Header{}, nil, err
	}
	return h, raw, nil
}

// ParseHeader parses a complete header held in b (which may continue with
// payload bytes) and returns the header and its length in b.
func ParseHeader(b []byte) (Header, int, error) {
	if len(b) < prefixLength {
		return Header{}, 0, fmt.Errorf("%w: shorter than the %d-byte prefix", ErrFormat, prefixLength)
	}
	n, err := parsePrefix(b[:prefixLength])
	if err != nil {
		return Header{}, 0, err
	}
	if len(b) < prefixLength+n {
		return Header{}, 0, fmt.Errorf("%w: header cut short (want %d bytes)", ErrFormat, n)
	}
	h, err := parseHeaderJSON(b[prefixLength : prefixLength+n])
	return h, prefixLength + n, err
}

func parsePrefix(p []byte) (int, error) {
	if !bytes.Equal(p[:len(Magic)], []byte(Magic)) {
		return 0, fmt.Errorf("%w: bad magic", ErrFormat)
	}
	if v := binary.BigEndian.Uint16(p[len(Magic):]); v != FormatVersion {
		return 0, fmt.Errorf("%w: format version %d, this lifeboat reads version %d", ErrFormat, v, FormatVersion)
	}
	n := binary.BigEndian.Uint32(p[len(Magic)+2:])
	if n < 1 || n > MaxHeaderLength {
		return 0, fmt.Errorf("%w: header length %d outside [1, %d]", ErrFormat, n, MaxHeaderLength)
	}
	return int(n), nil
}

func parseHeaderJSON(js []byte) (Header, error) {
	var h Header
	if err := strictjson.Unmarshal(js, &h); err != nil {
		return Header{}, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	if err := h.validate(); err != nil {
		return Header{}, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	return h, nil
}

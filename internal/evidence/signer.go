package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// maxKeyFileSize bounds how much of a key file is read; a PEM Ed25519 key
// is about 120 bytes.
const maxKeyFileSize = 64 << 10

// Signer signs evidence records and reports (docs/format.md §5.2): with
// an Ed25519 private key it holds, or through a service that holds the key
// (Vault transit, AWS KMS). It never logs, prints or returns a private key:
// String, GoString and LogValue show the key ID only.
type Signer struct {
	priv ed25519.PrivateKey
	pub  PublicKey
	// remote, when set, signs instead of priv: a key held by a service
	// that never sits on this host's disk.
	remote RemoteSign
}

// RemoteSign signs msg with a key held elsewhere and returns the
// signature: the 64 bytes of an Ed25519 signature, or the DER ECDSA
// signature over SHA-256 of msg for a P-256 key.
type RemoteSign func(msg []byte) ([]byte, error)

// NewRemoteSigner returns a Signer whose key is held by a service (Vault
// transit, AWS KMS; docs/format.md §5.2): sign asks it. An ECDSA signature
// is brought to its low-s form; every signature is checked against pub
// before it is used, so a service that signs with another key, or returns
// garbage, fails the record instead of producing one that does not verify.
func NewRemoteSigner(pub PublicKey, sign RemoteSign) (*Signer, error) {
	if pub.IsZero() || sign == nil {
		return nil, errors.New("evidence signer: a remote signer needs a public key and a sign function")
	}
	return &Signer{pub: pub, remote: sign}, nil
}

// NewSigner returns a Signer for priv, for callers (tests, other key
// stores) that hold the key themselves.
func NewSigner(priv ed25519.PrivateKey) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("evidence signer: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	return &Signer{priv: priv, pub: Ed25519Key(priv.Public().(ed25519.PublicKey))}, nil
}

// PublicKey returns the signer's public key.
func (s *Signer) PublicKey() PublicKey { return s.pub }

// KeyID returns the signer's key ID (PublicKey.KeyID).
func (s *Signer) KeyID() string { return s.pub.KeyID() }

// String shows the key ID, never the key.
func (s *Signer) String() string { return "evidence signer " + s.KeyID() }

// GoString shows the key ID, never the key (for %#v).
func (s *Signer) GoString() string { return "evidence.Signer{KeyID: " + s.KeyID() + "}" }

// LogValue shows the key ID, never the key.
func (s *Signer) LogValue() slog.Value { return slog.StringValue(s.KeyID()) }

func (s *Signer) sign(msg []byte) (string, error) {
	if s.remote == nil {
		return base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg)), nil
	}
	sig, err := s.remote(msg)
	if err != nil {
		return "", fmt.Errorf("evidence signer %s: %w", s.KeyID(), err)
	}
	if s.pub.Algorithm() == AlgECDSAP256 {
		if sig, err = normalizeECDSA(sig); err != nil {
			return "", fmt.Errorf("evidence signer %s: the signing service's answer: %w", s.KeyID(), err)
		}
	}
	if !s.pub.verify(msg, sig) {
		return "", fmt.Errorf("evidence signer %s: the signing service returned a signature that does not verify under the signer's public key", s.KeyID())
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// KeyID returns the key ID of a public key (docs/format.md §5.2).
func KeyID(pub PublicKey) string { return pub.KeyID() }

// LoadOrCreateSigner loads the private key file at path, creating it with
// a new key if it does not exist (docs/format.md §5.2). An existing file is
// never replaced. Loading refuses a file that is not a regular file or that
// its group or others may access (mode & 0o077 != 0).
func LoadOrCreateSigner(path string) (*Signer, error) {
	s, err := LoadSigner(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	if err := createKeyFile(path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("evidence signing key %s: create: %w", path, err)
	}
	// Load what is there now: the key just written, or the key of a
	// concurrent creator that won the race.
	return LoadSigner(path)
}

// LoadSigner loads an existing private key file; see LoadOrCreateSigner.
func LoadSigner(path string) (*Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("evidence signing key %s: open: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("evidence signing key %s: stat: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("evidence signing key %s: not a regular file (%s)", path, st.Mode().Type())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("evidence signing key %s: mode %04o lets group or others access it; run chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("evidence signing key %s: read: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("evidence signing key %s: larger than %d bytes", path, maxKeyFileSize)
	}
	// Errors below never quote the file's contents.
	block, rest := pem.Decode(data)
	if block == nil || !bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("evidence signing key %s: not one PEM block", path)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("evidence signing key %s: data outside the PEM block", path)
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("evidence signing key %s: PEM block is %q, want \"PRIVATE KEY\" (PKCS #8)", path, block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("evidence signing key %s: not a PKCS #8 private key", path)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("evidence signing key %s: %T is not an Ed25519 key", path, key)
	}
	return NewSigner(priv)
}

// createKeyFile writes a new key to a temporary file (created exclusively,
// mode 0600), fsyncs it and publishes it with link(2), which fails with
// fs.ErrExist rather than replace an existing file, so no reader ever sees
// a partly written key.
func createKeyFile(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	werr := tmp.Chmod(0o600)
	if werr == nil {
		_, werr = tmp.Write(data)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write temporary file: %w", werr)
	}
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fs.ErrExist
		}
		return fmt.Errorf("link into place: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}

// MarshalPublicKey returns the PEM "PUBLIC KEY" (SubjectPublicKeyInfo)
// encoding of pub, the public key file format of docs/format.md §5.2.
func MarshalPublicKey(pub PublicKey) ([]byte, error) { return pub.MarshalPEM() }

// ParsePublicKey parses a public key file (docs/format.md §5.2): one PEM
// "PUBLIC KEY" block holding an Ed25519 or ECDSA P-256 key (as `openssl
// pkey -pubout`, Vault and `aws kms get-public-key` give them), or one line
// with the base64 of the publicKey field (the 32 raw bytes of an Ed25519
// key, or the DER SubjectPublicKeyInfo of a P-256 key).
func ParsePublicKey(data []byte) (PublicKey, error) {
	if block, rest := pem.Decode(data); block != nil {
		if len(bytes.TrimSpace(rest)) != 0 || !bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN ")) {
			return PublicKey{}, errors.New("data outside the PEM block")
		}
		if block.Type != "PUBLIC KEY" {
			return PublicKey{}, fmt.Errorf("PEM block is %q, want \"PUBLIC KEY\"", block.Type)
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return PublicKey{}, fmt.Errorf("parse public key: %w", err)
		}
		return NewPublicKey(key)
	}
	text := strings.TrimSpace(string(data))
	pub, err := decodePublicKey(text)
	if err != nil {
		return PublicKey{}, fmt.Errorf("neither a PEM \"PUBLIC KEY\" block nor the base64 of a public key: %w", err)
	}
	return pub, nil
}

// ReadPublicKeyFile reads and parses a public key file.
func ReadPublicKeyFile(path string) (PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key %s: read: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return PublicKey{}, fmt.Errorf("public key %s: larger than %d bytes", path, maxKeyFileSize)
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key %s: %w", path, err)
	}
	return pub, nil
}

// decodeBase64 decodes the canonical standard base64 text of exactly n
// bytes (docs/format.md §5.1): padded, no line breaks, unused bits zero.
func decodeBase64(s string, n int) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical standard base64")
	}
	if len(b) != n {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", len(b), n)
	}
	return b, nil
}

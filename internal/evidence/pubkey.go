package evidence

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// The signature algorithms of docs/format.md §5.2, as PublicKey.Algorithm
// names them.
const (
	// AlgEd25519 is pure Ed25519 (RFC 8032): a key file, or a Vault transit
	// key of type ed25519.
	AlgEd25519 = "ed25519"
	// AlgECDSAP256 is ECDSA on P-256 over the SHA-256 of the message, the
	// signature DER-encoded with a low s: an AWS KMS key of spec
	// ECC_NIST_P256 signing with ECDSA_SHA_256.
	AlgECDSAP256 = "ecdsa-p256-sha256"
)

// ecdsaSPKISize is the length of the DER SubjectPublicKeyInfo of an
// uncompressed P-256 key, which is what publicKey carries for one.
const ecdsaSPKISize = 91

// maxECDSASignature bounds a DER ECDSA P-256 signature: SEQUENCE of two
// INTEGERs of at most 33 bytes each.
const maxECDSASignature = 72

// PublicKey is a signer's public key: Ed25519, or ECDSA P-256
// (docs/format.md §5.2). Its zero value is no key. Compare keys with Equal.
type PublicKey struct {
	raw []byte // the bytes of the publicKey field: 32 raw bytes, or the SPKI DER
	ed  ed25519.PublicKey
	ec  *ecdsa.PublicKey
}

// NewPublicKey returns the PublicKey of an ed25519.PublicKey or an
// *ecdsa.PublicKey on P-256; any other key is an error.
func NewPublicKey(k crypto.PublicKey) (PublicKey, error) {
	switch k := k.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return PublicKey{}, fmt.Errorf("an Ed25519 public key is %d bytes, not %d", ed25519.PublicKeySize, len(k))
		}
		return PublicKey{raw: bytes.Clone(k), ed: bytes.Clone(k)}, nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return PublicKey{}, errors.New("an ECDSA public key must be on P-256")
		}
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return PublicKey{}, fmt.Errorf("encode ECDSA public key: %w", err)
		}
		return PublicKey{raw: der, ec: k}, nil
	default:
		return PublicKey{}, fmt.Errorf("%T is neither an Ed25519 nor an ECDSA P-256 public key", k)
	}
}

// Ed25519Key returns the PublicKey of an Ed25519 key; it panics when pub
// is not 32 bytes, a programming error.
func Ed25519Key(pub ed25519.PublicKey) PublicKey {
	k, err := NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
}

// IsZero reports whether k is no key.
func (k PublicKey) IsZero() bool { return len(k.raw) == 0 }

// Equal reports whether k and o are the same key.
func (k PublicKey) Equal(o PublicKey) bool { return !k.IsZero() && bytes.Equal(k.raw, o.raw) }

// Algorithm names the signature algorithm of k: AlgEd25519 or AlgECDSAP256.
func (k PublicKey) Algorithm() string {
	if k.ec != nil {
		return AlgECDSAP256
	}
	return AlgEd25519
}

// Bytes returns the bytes the publicKey field of a record carries: the 32
// raw bytes of an Ed25519 key, or the DER SubjectPublicKeyInfo of an ECDSA
// key.
func (k PublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// Base64 returns the publicKey field's text: base64 of Bytes.
func (k PublicKey) Base64() string { return base64.StdEncoding.EncodeToString(k.raw) }

// KeyID returns the key ID (docs/format.md §5.2): the lowercase hex of the
// first 16 bytes of SHA-256 of Bytes.
func (k PublicKey) KeyID() string {
	sum := sha256.Sum256(k.raw)
	return hex.EncodeToString(sum[:16])
}

// Crypto returns the key as the standard library holds it.
func (k PublicKey) Crypto() crypto.PublicKey {
	if k.ec != nil {
		return k.ec
	}
	return k.ed
}

// MarshalPEM returns the PEM "PUBLIC KEY" (SubjectPublicKeyInfo) encoding
// of k, the public key file format of docs/format.md §5.2.
func (k PublicKey) MarshalPEM() ([]byte, error) {
	if k.IsZero() {
		return nil, errors.New("encode public key: no key")
	}
	der, err := x509.MarshalPKIXPublicKey(k.Crypto())
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// verify reports whether sig is a valid signature of msg under k, in the
// encoding of docs/format.md §5.2.
func (k PublicKey) verify(msg, sig []byte) bool {
	switch {
	case k.ed != nil:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.ed, msg, sig)
	case k.ec != nil:
		if !lowSDER(sig) {
			return false
		}
		sum := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k.ec, sum[:], sig)
	}
	return false
}

// String shows the algorithm and key ID.
func (k PublicKey) String() string {
	if k.IsZero() {
		return "no key"
	}
	return k.Algorithm() + " key " + k.KeyID()
}

// decodePublicKey decodes the publicKey field: canonical base64 of 32 raw
// Ed25519 bytes, or of the 91-byte DER SubjectPublicKeyInfo of an ECDSA
// P-256 key.
func decodePublicKey(s string) (PublicKey, error) {
	b, err := decodeBase64Range(s, ed25519.PublicKeySize, ecdsaSPKISize)
	if err != nil {
		return PublicKey{}, err
	}
	switch len(b) {
	case ed25519.PublicKeySize:
		return NewPublicKey(ed25519.PublicKey(b))
	case ecdsaSPKISize:
		k, err := x509.ParsePKIXPublicKey(b)
		if err != nil {
			return PublicKey{}, fmt.Errorf("91 bytes that are not a SubjectPublicKeyInfo: %w", err)
		}
		ec, ok := k.(*ecdsa.PublicKey)
		if !ok {
			return PublicKey{}, fmt.Errorf("a SubjectPublicKeyInfo of %T, not ECDSA P-256", k)
		}
		pk, err := NewPublicKey(ec)
		if err != nil {
			return PublicKey{}, err
		}
		if !bytes.Equal(pk.raw, b) {
			return PublicKey{}, errors.New("not the canonical DER of the ECDSA key (uncompressed point)")
		}
		return pk, nil
	default:
		return PublicKey{}, fmt.Errorf("decodes to %d bytes, want %d (Ed25519) or %d (ECDSA P-256 SubjectPublicKeyInfo)", len(b), ed25519.PublicKeySize, ecdsaSPKISize)
	}
}

// decodeSignature decodes the signature field for k's algorithm.
func decodeSignature(k PublicKey, s string) ([]byte, error) {
	if k.ec != nil {
		b, err := decodeBase64Range(s, 8, maxECDSASignature)
		if err != nil {
			return nil, err
		}
		if !lowSDER(b) {
			return nil, errors.New("not a DER ECDSA signature with a low s (docs/format.md §5.2)")
		}
		return b, nil
	}
	return decodeBase64(s, ed25519.SignatureSize)
}

type ecdsaSig struct{ R, S *big.Int }

// p256HalfOrder is n/2 for P-256: a low-s signature has s ≤ n/2.
var p256HalfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// lowSDER reports whether sig is the DER encoding (exactly: re-encoding
// gives the same bytes) of an ECDSA-Sig-Value with positive r and s and
// s ≤ n/2.
func lowSDER(sig []byte) bool {
	var v ecdsaSig
	rest, err := asn1.Unmarshal(sig, &v)
	if err != nil || len(rest) != 0 || v.R == nil || v.S == nil || v.R.Sign() <= 0 || v.S.Sign() <= 0 {
		return false
	}
	if v.S.Cmp(p256HalfOrder) > 0 {
		return false
	}
	again, err := asn1.Marshal(v)
	return err == nil && bytes.Equal(again, sig)
}

// normalizeECDSA returns the DER signature sig (as AWS KMS returns it)
// with s replaced by n − s when s > n/2, so that it is the one low-s
// encoding docs/format.md §5.2 accepts; both verify the same message.
func normalizeECDSA(sig []byte) ([]byte, error) {
	var v ecdsaSig
	rest, err := asn1.Unmarshal(sig, &v)
	if err != nil || len(rest) != 0 || v.R == nil || v.S == nil || v.R.Sign() <= 0 || v.S.Sign() <= 0 {
		return nil, errors.New("not a DER ECDSA signature")
	}
	if v.S.Cmp(p256HalfOrder) > 0 {
		v.S = new(big.Int).Sub(elliptic.P256().Params().N, v.S)
	}
	return asn1.Marshal(v)
}

// decodeBase64Range decodes canonical standard base64 (docs/format.md
// §5.1) of min to max bytes.
func decodeBase64Range(s string, min, max int) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical standard base64")
	}
	if len(b) < min || len(b) > max {
		return nil, fmt.Errorf("decodes to %d bytes, want %d to %d", len(b), min, max)
	}
	return b, nil
}

package evidence

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
)

// ecdsaRemote returns a signer that plays AWS KMS with an ECDSA P-256 key:
// it signs SHA-256 of the message and, when highS is set, always answers
// the high-s form of the signature, which KMS may return.
func ecdsaRemote(t testing.TB, highS bool) (*Signer, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewRemoteSigner(pub, func(msg []byte) ([]byte, error) {
		sum := sha256.Sum256(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
		if err != nil || !highS {
			return sig, err
		}
		return flipS(sig), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

// flipS returns sig with s replaced by n − s: the other encoding of the
// same signature.
func flipS(sig []byte) []byte {
	var v ecdsaSig
	if _, err := asn1.Unmarshal(sig, &v); err != nil {
		panic(err)
	}
	v.S = new(big.Int).Sub(elliptic.P256().Params().N, v.S)
	out, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return out
}

// TestECDSASignerChain: a log signed by an ECDSA P-256 remote signer (as
// with AWS KMS) verifies under the public key from its PEM file; the
// signer brings KMS's high-s answers to low s; and a record whose
// signature is swapped for its high-s twin, or signed by another key, is
// refused naming the field.
func TestECDSASignerChain(t *testing.T) {
	ctx := context.Background()
	for _, highS := range []bool{false, true} {
		st := newMemStore()
		s, _ := ecdsaRemote(t, highS)
		if s.PublicKey().Algorithm() != AlgECDSAP256 {
			t.Fatalf("algorithm %s", s.PublicKey().Algorithm())
		}
		l := NewLog(st, s, newTestClock().Now)
		appendN(t, l, 0, 5)
		pemData, err := MarshalPublicKey(s.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		trusted, err := ParsePublicKey(pemData)
		if err != nil || !trusted.Equal(s.PublicKey()) || trusted.KeyID() != s.KeyID() {
			t.Fatalf("public key file round trip: %v", err)
		}
		oneLine, err := ParsePublicKey([]byte(s.PublicKey().Base64() + "\n"))
		if err != nil || !oneLine.Equal(trusted) {
			t.Fatalf("one-line public key: %v", err)
		}
		res, err := NewLog(st, nil, nil).Verify(ctx, trusted)
		if err != nil || res.Records != 5 || res.Signers[0] != s.KeyID() {
			t.Fatalf("verify (highS %v): %+v, %v", highS, res, err)
		}
	}

	// A verifier refuses the high-s twin of a valid signature.
	st := newMemStore()
	s, _ := ecdsaRemote(t, false)
	appendN(t, NewLog(st, s, newTestClock().Now), 0, 1)
	key := "evidence/seq/0000000001.json"
	r, _, err := parseRecord(st.objs[key])
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(r.Signature)
	twin := base64.StdEncoding.EncodeToString(flipS(sig))
	st.objs[key] = []byte(strings.Replace(string(st.objs[key]), r.Signature, twin, 1))
	if _, _, err := parseRecord(st.objs[key]); err == nil || !strings.Contains(err.Error(), "signature") || !strings.Contains(err.Error(), "low s") {
		t.Fatalf("high-s twin: %v", err)
	}

	// A service that signs with another key fails the append.
	other, _ := ecdsaRemote(t, false)
	bad, err := NewRemoteSigner(s.PublicKey(), func(msg []byte) ([]byte, error) { return other.remote(msg) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLog(newMemStore(), bad, newTestClock().Now).Append(ctx, sampleRecord(0)); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("foreign signature: %v", err)
	}
	// Garbage from the service fails too.
	junk, _ := NewRemoteSigner(s.PublicKey(), func([]byte) ([]byte, error) { return []byte("not DER"), nil })
	if _, err := NewLog(newMemStore(), junk, newTestClock().Now).Append(ctx, sampleRecord(0)); err == nil {
		t.Fatal("garbage signature accepted")
	}
	failing, _ := NewRemoteSigner(s.PublicKey(), func([]byte) ([]byte, error) { return nil, errors.New("AccessDenied") })
	if _, err := NewLog(newMemStore(), failing, newTestClock().Now).Append(ctx, sampleRecord(0)); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("failing service: %v", err)
	}
}

// TestPublicKeyRefusals: keys of other curves and algorithms, and encodings
// that are not canonical, are refused.
func TestPublicKeyRefusals(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewPublicKey(&p384.PublicKey); err == nil {
		t.Error("P-384 accepted")
	}
	pem384, _ := MarshalPublicKey(PublicKey{raw: []byte{1}, ec: &p384.PublicKey})
	if _, err := ParsePublicKey(pem384); err == nil {
		t.Error("P-384 PEM accepted")
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, _ := NewPublicKey(&p256.PublicKey)
	if len(k.Bytes()) != ecdsaSPKISize {
		t.Fatalf("P-256 SubjectPublicKeyInfo is %d bytes", len(k.Bytes()))
	}
	for name, b := range map[string][]byte{
		"33 bytes":   make([]byte, 33),
		"90 bytes":   k.Bytes()[:90],
		"91 garbage": make([]byte, ecdsaSPKISize),
	} {
		if _, err := decodePublicKey(base64.StdEncoding.EncodeToString(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, sig := range map[string][]byte{
		"empty":     nil,
		"trailing":  append(mustSign(t, p256), 0),
		"zero r":    mustMarshal(t, ecdsaSig{R: big.NewInt(0), S: big.NewInt(1)}),
		"negative":  mustMarshal(t, ecdsaSig{R: big.NewInt(-5), S: big.NewInt(1)}),
		"high s":    mustMarshal(t, ecdsaSig{R: big.NewInt(5), S: new(big.Int).Sub(elliptic.P256().Params().N, big.NewInt(1))}),
		"not a seq": []byte{0x02, 0x01, 0x01},
	} {
		if lowSDER(sig) {
			t.Errorf("%s: accepted as a low-s DER signature", name)
		}
	}
}

func mustSign(t *testing.T, k *ecdsa.PrivateKey) []byte {
	sum := sha256.Sum256([]byte("x"))
	sig, err := ecdsa.SignASN1(rand.Reader, k, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	n, err := normalizeECDSA(sig)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustMarshal(t *testing.T, v ecdsaSig) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestECDSAVector checks the test vector of docs/format.md §5.2: a record
// signed by an ECDSA P-256 key verifies under the public key file beside
// it, has the key ID the document gives, and fails once any byte of its
// signature changes.
func TestECDSAVector(t *testing.T) {
	data, err := os.ReadFile("testdata/record-ecdsa-p256.json")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublicKeyFile("testdata/signer-ecdsa-p256.pub")
	if err != nil {
		t.Fatal(err)
	}
	r, got, err := parseRecord(data)
	if err != nil {
		t.Fatalf("vector: %v", err)
	}
	const wantID = "98cd31bd81ead63e20fe415c318e121c"
	if !got.Equal(pub) || r.Signer != wantID || pub.KeyID() != wantID {
		t.Fatalf("vector signer %s, file key %s, want %s", r.Signer, pub.KeyID(), wantID)
	}
	i := strings.Index(string(data), r.Signature) + 10
	for _, c := range []byte("ABab") {
		if data[i] == c {
			continue
		}
		bad := append([]byte(nil), data...)
		bad[i] = c
		if _, _, err := parseRecord(bad); err == nil {
			t.Fatal("changed signature accepted")
		}
		break
	}
}

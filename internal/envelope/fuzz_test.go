package envelope_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
)

// FuzzParseHeader: the header parser never panics, and what it accepts it
// accepts identically from a stream.
func FuzzParseHeader(f *testing.F) {
	key, _ := envelope.NewDataKey()
	var ct bytes.Buffer
	envelope.Encrypt(context.Background(), &ct, bytes.NewReader([]byte("x")), key, opts("a", "", 0))
	f.Add(ct.Bytes())
	f.Add([]byte(envelope.Magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := envelope.ParseHeader(b)
		h2, raw, err2 := envelope.ReadHeader(bytes.NewReader(b))
		if (err == nil) != (err2 == nil) {
			t.Fatalf("ParseHeader err %v, ReadHeader err %v", err, err2)
		}
		if err == nil && (h != h2 || n != len(raw) || !bytes.Equal(raw, b[:n])) {
			t.Fatal("ParseHeader and ReadHeader disagree")
		}
	})
}

// FuzzDecrypt: any change to a valid artifact fails to decrypt, and
// nothing panics.
func FuzzDecrypt(f *testing.F) {
	key, _ := envelope.NewDataKey()
	var ct bytes.Buffer
	envelope.Encrypt(context.Background(), &ct, bytes.NewReader(bytes.Repeat([]byte("phi "), 30000)), key, opts("a", "", envelope.MinSegmentSize))
	valid := ct.Bytes()
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := envelope.Decrypt(context.Background(), io.Discard, bytes.NewReader(b), key, envelope.Expect{})
		if err == nil && !bytes.Equal(b, valid) {
			t.Fatal("a modified artifact decrypted")
		}
	})
}

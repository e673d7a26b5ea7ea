package envelope_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

// goldenKey is the test-only data key of testdata/golden-v1.lbenv: the
// bytes 00..1f.
func goldenKey(t *testing.T) envelope.DataKey {
	t.Helper()
	b, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	k, err := envelope.DataKeyFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGoldenArtifact decrypts an artifact written by an earlier build. If
// this fails, the format changed: bump FormatVersion and docs/format.md,
// and keep reading version 1.
func TestGoldenArtifact(t *testing.T) {
	ct, err := os.ReadFile("testdata/golden-v1.lbenv")
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("lifeboat golden vector: not PHI.\n"), 2000)
	var out bytes.Buffer
	res, err := envelope.Decrypt(context.Background(), &out, bytes.NewReader(ct), goldenKey(t),
		envelope.Expect{Backup: "golden", Artifact: "vector.txt", Result: envelope.Result{PlaintextSHA256: sum(want)}})
	if err != nil {
		t.Fatalf("decrypt golden artifact: %v", err)
	}
	if !bytes.Equal(out.Bytes(), want) || res.CiphertextSHA256 != sum(ct) {
		t.Fatal("golden artifact decrypted to other bytes")
	}
	h, _, _ := envelope.ParseHeader(ct)
	if h.SegmentSize != envelope.MinSegmentSize || h.KEK != (keys.Ref{Provider: "local", Key: "golden", Version: "1"}) || h.Compression != "zstd" {
		t.Fatalf("golden header %+v", h)
	}
}

// TestKnownAnswers pins values docs/format.md defines, computed
// independently (Python's hmac and hashlib).
func TestKnownAnswers(t *testing.T) {
	if got := goldenKey(t).ID(); got != "119f74e3d8e69fc97855213352ee2b4a" {
		t.Fatalf("data key ID %s", got)
	}
	for ref, want := range map[keys.Ref]string{
		{Provider: "local", Key: "kek", Version: "3"}: "local-3-f6ec9d87e376.json",
		{Provider: "awskms", Key: "arn:aws:kms:us-east-1:111122223333:key/abc", Version: "arn:aws:kms:us-east-1:111122223333:key/abc"}: "awskms-arn_aws_kms_us-east-1_111122223333_key_abc-4dfe84f40b36.json",
	} {
		if got := envelope.KeyObjectName(ref); got != want {
			t.Errorf("KeyObjectName(%s) = %s, want %s", ref, got, want)
		}
	}
	long := keys.Ref{Provider: "p", Key: "k", Version: string(bytes.Repeat([]byte("v"), 100))}
	if got := envelope.KeyObjectName(long); len(got) != len("p-")+64+len("-")+12+len(".json") {
		t.Errorf("long version not cut to 64 bytes: %s", got)
	}
}

// TestFailedEncryptNeverDecrypts: a source that fails half-way must not
// leave an artifact that authenticates, whichever way the writer is
// driven.
func TestFailedEncryptNeverDecrypts(t *testing.T) {
	key := newKey(t)
	data := random(t, 100<<10)
	boom := errors.New("etcd stream reset")
	t.Run("Encrypt", func(t *testing.T) {
		var out bytes.Buffer
		_, err := envelope.Encrypt(context.Background(), &out, &failingReader{bytes.NewReader(data), 30 << 10, boom}, key, opts("etcd.snapshot", "", envelope.MinSegmentSize))
		if !errors.Is(err, boom) {
			t.Fatalf("Encrypt: got %v, want the source's error", err)
		}
		if _, err := envelope.Decrypt(context.Background(), io.Discard, bytes.NewReader(out.Bytes()), key, envelope.Expect{}); !errors.Is(err, envelope.ErrAuthentication) {
			t.Fatalf("output of a failed Encrypt: got %v, want ErrAuthentication", err)
		}
	})
	t.Run("io.Copy then Close", func(t *testing.T) {
		var out bytes.Buffer
		w, err := envelope.NewWriter(&out, key, opts("etcd.snapshot", "", envelope.MinSegmentSize))
		if err != nil {
			t.Fatal(err)
		}
		_, cerr := io.Copy(w, &failingReader{bytes.NewReader(data), 30 << 10, boom})
		if !errors.Is(cerr, boom) {
			t.Fatalf("io.Copy: got %v", cerr)
		}
		if err := w.Close(); !errors.Is(err, boom) {
			t.Fatalf("Close after a failed source: got %v, want the source's error", err)
		}
		if _, err := envelope.Decrypt(context.Background(), io.Discard, bytes.NewReader(out.Bytes()), key, envelope.Expect{}); !errors.Is(err, envelope.ErrAuthentication) {
			t.Fatalf("got %v, want ErrAuthentication", err)
		}
	})
	t.Run("Abort", func(t *testing.T) {
		var out bytes.Buffer
		w, _ := envelope.NewWriter(&out, key, opts("etcd.snapshot", envelope.CompressionNone, envelope.MinSegmentSize))
		w.Write(data[:50<<10])
		w.Abort(boom)
		if err := w.Close(); !errors.Is(err, boom) {
			t.Fatalf("Close after Abort: got %v", err)
		}
		if _, err := envelope.Decrypt(context.Background(), io.Discard, bytes.NewReader(out.Bytes()), key, envelope.Expect{}); !errors.Is(err, envelope.ErrAuthentication) {
			t.Fatalf("got %v, want ErrAuthentication", err)
		}
	})
}

// TestHeaderIsAuthenticated edits an informational header field with the
// right key: the header still parses, the ID check passes, the AEAD fails.
func TestHeaderIsAuthenticated(t *testing.T) {
	key := newKey(t)
	ct, _ := encrypt(t, key, opts("etcd.snapshot", "", 0), []byte("phi"))
	for _, edit := range [][2]string{
		{`"version":"1"`, `"version":"2"`},
		{`"created":"2026-11-25T00:00:00Z"`, `"created":"2026-11-26T00:00:00Z"`},
	} {
		c := bytes.Replace(ct, []byte(edit[0]), []byte(edit[1]), 1)
		if bytes.Equal(c, ct) {
			t.Fatalf("edit %s not applied", edit[0])
		}
		if _, _, err := envelope.ParseHeader(c); err != nil {
			t.Fatalf("edited header no longer parses: %v", err)
		}
		decryptErr(t, c, key, envelope.ErrAuthentication)
	}
}

func TestDestroy(t *testing.T) {
	key := newKey(t)
	cp := key
	key.Destroy()
	if cp.Valid() || cp.Bytes() != nil || cp.ID() != "" {
		t.Fatal("a copy of a destroyed key is still usable")
	}
	if _, err := envelope.NewWriter(io.Discard, cp, opts("a", "", 0)); err == nil {
		t.Fatal("NewWriter accepted a destroyed key")
	}
}

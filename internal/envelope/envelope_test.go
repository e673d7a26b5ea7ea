package envelope_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

var kek = keys.Ref{Provider: "local", Key: "test-kek", Version: "1"}

func newKey(t testing.TB) envelope.DataKey {
	t.Helper()
	k, err := envelope.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func opts(artifact string, compression string, seg int) envelope.Options {
	return envelope.Options{
		Backup: "b-20261125T000000Z", Artifact: artifact, KEK: kek,
		Compression: compression, SegmentSize: seg,
		Created: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
	}
}

// compressible returns n bytes that look like a keyspace dump: some
// structure, some randomness.
func compressible(t testing.TB, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	rnd := make([]byte, 16)
	for i := 0; b.Len() < n; i++ {
		rand.Read(rnd)
		fmt.Fprintf(&b, "/registry/secrets/ns-%d/secret-%d {\"data\":\"%x\",\"kind\":\"Secret\"}\n", i%37, i, rnd)
	}
	return b.Bytes()[:n]
}

func random(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func encrypt(t testing.TB, key envelope.DataKey, o envelope.Options, plain []byte) ([]byte, envelope.Result) {
	t.Helper()
	var out bytes.Buffer
	res, err := envelope.Encrypt(context.Background(), &out, bytes.NewReader(plain), key, o)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return out.Bytes(), res
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestRoundTrip(t *testing.T) {
	key := newKey(t)
	const seg = envelope.MinSegmentSize
	for _, comp := range []string{envelope.CompressionZstd, envelope.CompressionNone} {
		for _, n := range []int{0, 1, seg - 40 - 16 - 1, seg - 40 - 16, seg - 40 - 16 + 1, 3*seg + 7, 3<<20 + 5} {
			for kind, data := range map[string][]byte{"compressible": compressible(t, n), "random": random(t, n)} {
				t.Run(fmt.Sprintf("%s/%d/%s", comp, n, kind), func(t *testing.T) {
					ct, res := encrypt(t, key, opts("etcd.snapshot", comp, seg), data)
					if res.PlaintextSize != int64(n) || res.PlaintextSHA256 != sum(data) {
						t.Fatalf("plaintext result %d %s, want %d %s", res.PlaintextSize, res.PlaintextSHA256, n, sum(data))
					}
					if res.CiphertextSize != int64(len(ct)) || res.CiphertextSHA256 != sum(ct) {
						t.Fatal("ciphertext result does not describe the bytes written")
					}
					var out bytes.Buffer
					got, err := envelope.Decrypt(context.Background(), &out, bytes.NewReader(ct), key,
						envelope.Expect{Backup: "b-20261125T000000Z", Artifact: "etcd.snapshot", Result: res})
					if err != nil {
						t.Fatalf("Decrypt: %v", err)
					}
					if !bytes.Equal(out.Bytes(), data) {
						t.Fatal("decrypted bytes differ")
					}
					if got != res {
						t.Fatalf("Decrypt result %+v, want %+v", got, res)
					}
					if n > 64 && bytes.Contains(ct, data[:64]) {
						t.Fatal("ciphertext contains plaintext")
					}
				})
			}
		}
	}
}

func TestHeader(t *testing.T) {
	key := newKey(t)
	ct, _ := encrypt(t, key, opts("manifests.tar", "", 0), []byte("hello"))
	h, n, err := envelope.ParseHeader(ct)
	if err != nil {
		t.Fatal(err)
	}
	want := envelope.Header{
		Backup: "b-20261125T000000Z", Artifact: "manifests.tar", KEK: kek, DataKeyID: key.ID(),
		Compression: "zstd", AEAD: envelope.AEADName, SegmentSize: envelope.DefaultSegmentSize,
		Created: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
	}
	if h != want {
		t.Fatalf("header %+v, want %+v", h, want)
	}
	if !bytes.HasPrefix(ct, []byte(envelope.Magic)) || n <= len(envelope.Magic)+6 {
		t.Fatalf("bad prefix or length %d", n)
	}
	h2, raw, err := envelope.ReadHeader(bytes.NewReader(ct))
	if err != nil || h2 != h || !bytes.Equal(raw, ct[:n]) {
		t.Fatalf("ReadHeader disagrees with ParseHeader: %v", err)
	}
}

func TestHeaderRejects(t *testing.T) {
	key := newKey(t)
	ct, _ := encrypt(t, key, opts("a", "", 0), []byte("x"))
	_, n, _ := envelope.ParseHeader(ct)
	js := string(ct[14:n])
	build := func(version uint16, body string) []byte {
		b := []byte(envelope.Magic)
		b = binary.BigEndian.AppendUint16(b, version)
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
		return append(b, body...)
	}
	cases := map[string][]byte{
		"empty":          nil,
		"short":          ct[:10],
		"magic":          append([]byte("LBENV\x00\n\n"), ct[8:]...),
		"version":        build(2, js),
		"zero length":    build(1, ""),
		"huge length":    append(append([]byte(envelope.Magic), 0, 1), 0xff, 0xff, 0xff, 0xff),
		"cut header":     ct[:n-1],
		"not json":       build(1, "not json"),
		"unknown field":  build(1, strings.Replace(js, `"backup"`, `"extra":1,"backup"`, 1)),
		"trailing":       build(1, js+"{}"),
		"duplicate key":  build(1, strings.Replace(js, `"backup":"b-20261125T000000Z"`, `"backup":"b-20261125T000000Z","backup":"other"`, 1)),
		"bad aead":       build(1, strings.Replace(js, envelope.AEADName, "CHACHA", 1)),
		"bad comp":       build(1, strings.Replace(js, `"zstd"`, `"gzip"`, 1)),
		"small segment":  build(1, strings.Replace(js, `"segmentSize":1048576`, `"segmentSize":16`, 1)),
		"bad name":       build(1, strings.Replace(js, `"artifact":"a"`, `"artifact":"../a"`, 1)),
		"bad key id":     build(1, strings.Replace(js, key.ID(), "zz", 1)),
		"no kek version": build(1, strings.Replace(js, `"version":"1"`, `"version":""`, 1)),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, _, err := envelope.ParseHeader(b); !errors.Is(err, envelope.ErrFormat) {
				t.Fatalf("ParseHeader: got %v, want ErrFormat", err)
			}
			if _, _, err := envelope.ReadHeader(bytes.NewReader(b)); !errors.Is(err, envelope.ErrFormat) {
				t.Fatalf("ReadHeader: got %v, want ErrFormat", err)
			}
		})
	}
}

// decryptErr decrypts and requires an error wrapping want that names the
// artifact.
func decryptErr(t *testing.T, ct []byte, key envelope.DataKey, want error) {
	t.Helper()
	_, err := envelope.Decrypt(context.Background(), io.Discard, bytes.NewReader(ct), key, envelope.Expect{Artifact: "etcd.snapshot"})
	if !errors.Is(err, want) {
		t.Fatalf("Decrypt: got %v, want %v", err, want)
	}
	if !strings.Contains(err.Error(), `"etcd.snapshot"`) {
		t.Fatalf("error %q does not name the artifact", err)
	}
}

func TestTamper(t *testing.T) {
	key := newKey(t)
	const seg = envelope.MinSegmentSize
	for _, comp := range []string{envelope.CompressionZstd, envelope.CompressionNone} {
		t.Run(comp, func(t *testing.T) {
			ct, _ := encrypt(t, key, opts("etcd.snapshot", comp, seg), random(t, 5*seg))
			_, n, _ := envelope.ParseHeader(ct)
			positions := map[string]int{
				"header json":      n - 3,
				"tink salt":        n + 5,
				"tink nonce":       n + 36,
				"first segment":    n + 40 + 100,
				"first tag":        n + seg - 1,
				"middle segment":   n + 2*seg + 77,
				"last byte":        len(ct) - 1,
				"last segment tag": len(ct) - 8,
			}
			for name, pos := range positions {
				t.Run("flip "+name, func(t *testing.T) {
					c := bytes.Clone(ct)
					c[pos] ^= 0x80
					want := envelope.ErrAuthentication
					if name == "header json" {
						// A change inside the JSON either breaks parsing
						// or fails authentication; both must fail.
						_, err := envelope.Decrypt(context.Background(), io.Discard, bytes.NewReader(c), key, envelope.Expect{Artifact: "etcd.snapshot"})
						if err == nil {
							t.Fatal("Decrypt of a changed header succeeded")
						}
						return
					}
					decryptErr(t, c, key, want)
				})
			}
			for name, cut := range map[string]int{
				"at segment boundary": n + seg*3,
				"mid segment":         n + seg*2 + 100,
				"after tink header":   n + 40,
				"one byte short":      len(ct) - 1,
			} {
				t.Run("truncate "+name, func(t *testing.T) { decryptErr(t, ct[:cut], key, envelope.ErrAuthentication) })
			}
			t.Run("extended", func(t *testing.T) {
				decryptErr(t, append(bytes.Clone(ct), 0), key, envelope.ErrAuthentication)
				decryptErr(t, append(bytes.Clone(ct), ct[n:n+seg]...), key, envelope.ErrAuthentication)
			})
			t.Run("reordered", func(t *testing.T) {
				c := bytes.Clone(ct)
				// Segment 0 is seg-40 bytes after the Tink header; segments 1
				// and 2 are full; swap them.
				s1 := n + seg
				s2 := s1 + seg
				copy(c[s1:s2], ct[s2:s2+seg])
				copy(c[s2:s2+seg], ct[s1:s2])
				decryptErr(t, c, key, envelope.ErrAuthentication)
			})
		})
	}
}

func TestNoUnauthenticatedPlaintext(t *testing.T) {
	// A reader must never hand out bytes of a segment whose tag failed:
	// flip a byte in segment 2 and check the output holds exactly the
	// bytes of segments 0 and 1.
	key := newKey(t)
	const seg = envelope.MinSegmentSize
	data := random(t, 4*seg)
	ct, _ := encrypt(t, key, opts("etcd.snapshot", envelope.CompressionNone, seg), data)
	_, n, _ := envelope.ParseHeader(ct)
	c := bytes.Clone(ct)
	c[n+2*seg+10] ^= 1
	var out bytes.Buffer
	_, err := envelope.Decrypt(context.Background(), &out, bytes.NewReader(c), key, envelope.Expect{})
	if !errors.Is(err, envelope.ErrAuthentication) {
		t.Fatalf("got %v", err)
	}
	plainPerSeg := seg - 16
	authentic := (seg - 40 - 16) + plainPerSeg
	if out.Len() > authentic || !bytes.Equal(out.Bytes(), data[:out.Len()]) {
		t.Fatalf("reader released %d bytes; at most the %d authenticated bytes may come out", out.Len(), authentic)
	}
}

func TestWrongKey(t *testing.T) {
	ct, _ := encrypt(t, newKey(t), opts("etcd.snapshot", "", 0), []byte("phi"))
	decryptErr(t, ct, newKey(t), envelope.ErrWrongKey)
}

func TestForgedKeyIDStillFails(t *testing.T) {
	// An attacker who rewrites dataKeyId to match another key gets past
	// the ID check but not the AEAD.
	key, other := newKey(t), newKey(t)
	ct, _ := encrypt(t, key, opts("etcd.snapshot", "", 0), []byte("phi"))
	c := bytes.Replace(ct, []byte(key.ID()), []byte(other.ID()), 1)
	decryptErr(t, c, other, envelope.ErrAuthentication)
}

func TestSplicedHeader(t *testing.T) {
	key := newKey(t)
	a, _ := encrypt(t, key, opts("etcd.snapshot", "", 0), []byte("snapshot bytes"))
	b, _ := encrypt(t, key, opts("manifests.tar", "", 0), []byte("manifest bytes"))
	_, na, _ := envelope.ParseHeader(a)
	_, nb, _ := envelope.ParseHeader(b)
	// a's header with b's payload: the names match the caller's
	// expectation, the payload is authentic for another header.
	spliced := append(bytes.Clone(a[:na]), b[nb:]...)
	decryptErr(t, spliced, key, envelope.ErrAuthentication)
}

func TestExpectMismatch(t *testing.T) {
	key := newKey(t)
	ct, res := encrypt(t, key, opts("etcd.snapshot", "", 0), []byte("phi"))
	for name, exp := range map[string]envelope.Expect{
		"artifact":         {Artifact: "other"},
		"backup":           {Backup: "other"},
		"plaintext digest": {Result: envelope.Result{PlaintextSHA256: sum([]byte("x"))}},
		"cipher digest":    {Result: envelope.Result{CiphertextSHA256: sum([]byte("x"))}},
		"plaintext size":   {Result: envelope.Result{PlaintextSize: res.PlaintextSize + 1}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := envelope.Decrypt(context.Background(), io.Discard, bytes.NewReader(ct), key, exp)
			if !errors.Is(err, envelope.ErrMismatch) {
				t.Fatalf("got %v, want ErrMismatch", err)
			}
		})
	}
}

type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestSourceErrorIsNotAuthentication(t *testing.T) {
	key := newKey(t)
	ct, _ := encrypt(t, key, opts("etcd.snapshot", "", envelope.MinSegmentSize), random(t, 200<<10))
	boom := errors.New("connection reset")
	_, err := envelope.Decrypt(context.Background(), io.Discard, &failingReader{bytes.NewReader(ct), 100 << 10, boom}, key, envelope.Expect{})
	if !errors.Is(err, boom) || errors.Is(err, envelope.ErrAuthentication) {
		t.Fatalf("got %v, want the source's error and not ErrAuthentication", err)
	}
	// The artifact is compressed: the failed read is the source's, not a
	// decompression error (a store's integrity check fails this way).
	if !strings.Contains(err.Error(), ": read: connection reset") || strings.Contains(err.Error(), "decompress") {
		t.Fatalf("the source's failure is not named as a read: %v", err)
	}
	// A body cut short, as Go's HTTP client reports it: the source's
	// io.ErrUnexpectedEOF, never taken for the end of the stream.
	_, err = envelope.Decrypt(context.Background(), io.Discard, &failingReader{bytes.NewReader(ct), 100 << 10, io.ErrUnexpectedEOF}, key, envelope.Expect{})
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, envelope.ErrAuthentication) {
		t.Fatalf("cut short: got %v, want io.ErrUnexpectedEOF and not ErrAuthentication", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := envelope.Decrypt(ctx, io.Discard, bytes.NewReader(ct), key, envelope.Expect{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: got %v", err)
	}
	if _, err := envelope.Encrypt(ctx, io.Discard, bytes.NewReader(ct), key, opts("x", "", 0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled encrypt: got %v", err)
	}
}

func TestDataKeyNeverPrinted(t *testing.T) {
	key := newKey(t)
	secret := hex.EncodeToString(key.Bytes())
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		s := fmt.Sprintf(verb, key)
		if strings.Contains(strings.ToLower(s), secret) || strings.Contains(s, string(key.Bytes())) {
			t.Fatalf("%s printed the key material", verb)
		}
		s = fmt.Sprintf(verb, struct{ K envelope.DataKey }{key})
		if strings.Contains(strings.ToLower(s), secret) {
			t.Fatalf("%s of a struct printed the key material", verb)
		}
	}
	if _, err := envelope.DataKeyFromBytes(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte data key was accepted")
	}
}

// TestSkipCiphertextSHA256: a writer told that the store hashes what it
// stores counts the artifact's bytes but leaves its digest empty; the
// artifact is the same one and decrypts with the store's digest.
func TestSkipCiphertextSHA256(t *testing.T) {
	key := newKey(t)
	data := compressible(t, 3<<20+5)
	o := opts("etcd.snapshot", envelope.CompressionZstd, envelope.MinSegmentSize)
	o.SkipCiphertextSHA256 = true
	ct, res := encrypt(t, key, o, data)
	if res.CiphertextSHA256 != "" || res.CiphertextSize != int64(len(ct)) {
		t.Fatalf("result %+v for %d bytes written, want their count and no digest", res, len(ct))
	}
	if res.PlaintextSize != int64(len(data)) || res.PlaintextSHA256 != sum(data) {
		t.Fatalf("plaintext result %+v", res)
	}
	res.CiphertextSHA256 = sum(ct)
	var out bytes.Buffer
	if _, err := envelope.Decrypt(context.Background(), &out, bytes.NewReader(ct), key,
		envelope.Expect{Backup: "b-20261125T000000Z", Artifact: "etcd.snapshot", Result: res}); err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("decrypted bytes differ")
	}
}

// TestZstdWindowBound: a reader refuses a frame whose window is over the
// 64 MiB bound (docs/format.md §2.2), and reads
// frames at the bound and at the window lifeboat writes.
func TestZstdWindowBound(t *testing.T) {
	key := newKey(t)
	data := compressible(t, 5<<20+3)
	for _, c := range []struct {
		window int
		ok     bool
	}{{4 << 20, true}, {64 << 20, true}, {128 << 20, false}} {
		t.Run(fmt.Sprintf("%dMiB", c.window>>20), func(t *testing.T) {
			restore := envelope.SetZstdWindow(c.window)
			ct, res := encrypt(t, key, opts("etcd.snapshot", envelope.CompressionZstd, envelope.MinSegmentSize), data)
			restore()
			var out bytes.Buffer
			_, err := envelope.Decrypt(context.Background(), &out, bytes.NewReader(ct), key,
				envelope.Expect{Backup: "b-20261125T000000Z", Artifact: "etcd.snapshot", Result: res})
			switch {
			case c.ok && err != nil:
				t.Fatalf("Decrypt of a %d MiB window: %v", c.window>>20, err)
			case c.ok && !bytes.Equal(out.Bytes(), data):
				t.Fatal("decrypted bytes differ")
			case !c.ok && err == nil:
				t.Fatalf("Decrypt read a frame with a %d MiB window; the bound is 64 MiB", c.window>>20)
			case !c.ok && out.Len() > 0:
				t.Fatalf("Decrypt released %d bytes of a refused frame", out.Len())
			}
			if err != nil {
				t.Logf("refused: %v", err)
			}
		})
	}
}

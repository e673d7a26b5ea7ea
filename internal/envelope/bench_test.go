package envelope_test

import (
	"context"
	"crypto/sha256"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/tink-crypto/tink-go/v2/streamingaead/subtle"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
)

// source yields n bytes by cycling through a 16 MiB block of keyspace-like
// text. 16 MiB is more than zstd's default window (8 MiB), so repetitions of
// the block are not found as matches and the data compresses as the block
// does (about 2.5:1), not as a repeated string.
type source struct {
	block []byte
	off   int
	left  int64
}

var benchBlock []byte

func newSource(b *testing.B, n int64) *source {
	if benchBlock == nil {
		benchBlock = compressible(b, 16<<20)
	}
	return &source{block: benchBlock, left: n}
}

func (s *source) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n := copy(p, s.block[s.off:])
	s.off = (s.off + n) % len(s.block)
	s.left -= int64(n)
	return n, nil
}

const benchSize = 256 << 20

func BenchmarkEncrypt(b *testing.B) {
	key := newKey(b)
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := envelope.Encrypt(context.Background(), io.Discard, newSource(b, benchSize), key, opts("a", "", 0)); err != nil {
			b.Fatal(err)
		}
	}
}

// encryptedSource returns an artifact of benchSize plaintext bytes.
type sink struct{ b []byte }

func (s *sink) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }

func BenchmarkDecrypt(b *testing.B) {
	key := newKey(b)
	var ct sink
	if _, err := envelope.Encrypt(context.Background(), &ct, newSource(b, benchSize), key, opts("a", "", 0)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := envelope.Decrypt(context.Background(), io.Discard, &byteReader{b: ct.b}, key, envelope.Expect{}); err != nil {
			b.Fatal(err)
		}
	}
}

type byteReader struct {
	b   []byte
	off int
}

func (r *byteReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// BenchmarkPipelineRatio measures, on the same bytes in the same process,
// zstd alone, Tink's AES-GCM-HKDF stream alone, SHA-256 alone and the whole
// envelope pipeline (which also computes two SHA-256 digests), and reports
// the pipeline's throughput as a fraction of the slowest single stage.
func BenchmarkPipelineRatio(b *testing.B) {
	key := newKey(b)
	const n = 256 << 20
	measure := func(run func(io.Reader) error) float64 {
		start := time.Now()
		if err := run(newSource(b, n)); err != nil {
			b.Fatal(err)
		}
		return float64(n) / time.Since(start).Seconds() / 1e6
	}
	var zs, gcm, sha, pipe float64
	for b.Loop() {
		zs = measure(func(r io.Reader) error {
			z, err := zstd.NewWriter(io.Discard, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false))
			if err != nil {
				return err
			}
			if _, err := z.ReadFrom(r); err != nil {
				return err
			}
			return z.Close()
		})
		gcm = measure(func(r io.Reader) error {
			a, err := subtle.NewAESGCMHKDF(key.Bytes(), "SHA256", 32, envelope.DefaultSegmentSize, 0)
			if err != nil {
				return err
			}
			w, err := a.NewEncryptingWriter(io.Discard, []byte("ad"))
			if err != nil {
				return err
			}
			if _, err := io.CopyBuffer(w, r, make([]byte, 256<<10)); err != nil {
				return err
			}
			return w.Close()
		})
		sha = measure(func(r io.Reader) error {
			_, err := io.CopyBuffer(sha256.New(), r, make([]byte, 256<<10))
			return err
		})
		pipe = measure(func(r io.Reader) error {
			_, err := envelope.Encrypt(context.Background(), io.Discard, r, key, opts("a", "", 0))
			return err
		})
	}
	slowest := min(zs, gcm)
	b.ReportMetric(zs, "zstd-MB/s")
	b.ReportMetric(gcm, "aesgcm-MB/s")
	b.ReportMetric(sha, "sha256-MB/s")
	b.ReportMetric(pipe, "pipeline-MB/s")
	b.ReportMetric(pipe/slowest, "ratio-vs-slowest")
}

// BenchmarkStream1GiB encrypts then decrypts a 1 GiB stream and reports the
// process's peak RSS. Run it alone (make bench does) so the peak belongs to
// it: go test -run '^$' -bench Stream1GiB -benchtime 1x ./internal/envelope
func BenchmarkStream1GiB(b *testing.B) {
	key := newKey(b)
	const n = 1 << 30
	b.SetBytes(2 * n)
	for b.Loop() {
		pr, pw := io.Pipe()
		errc := make(chan error, 1)
		go func() {
			_, err := envelope.Encrypt(context.Background(), pw, newSource(b, n), key, opts("a", "", 0))
			pw.CloseWithError(err)
			errc <- err
		}()
		res, err := envelope.Decrypt(context.Background(), io.Discard, pr, key, envelope.Expect{})
		if err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		if res.PlaintextSize != n {
			b.Fatalf("round trip of %d bytes, want %d", res.PlaintextSize, n)
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
}

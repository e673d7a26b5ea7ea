package s3_test

import (
	"context"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/lifeboat-dr/lifeboat/internal/store"
	s3store "github.com/lifeboat-dr/lifeboat/internal/store/s3"
)

// prng yields n pseudo-random bytes (encrypted artifacts look random) at a
// few GB/s, so the source is not what is measured.
type prng struct {
	r *rand.ChaCha8
	n int64
}

func (p *prng) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	p.r.Read(b)
	p.n -= int64(len(b))
	return len(b), nil
}

func newPRNG(n int64) *prng { return &prng{r: rand.NewChaCha8([32]byte{1}), n: n} }

const benchObject = 1 << 30

func peakRSS(b *testing.B) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
}

// BenchmarkPut1GiB uploads a 1 GiB artifact into versitygw, through the
// lifeboat store (8 MiB parts, 4 in flight, Object Lock, SHA-256 per part)
// and through the SDK's own upload manager (same part size and
// concurrency, no lock, its default CRC32 checksums) on the same server.
// Run each alone so its peak RSS is its own:
//
//	go test -run '^$' -bench 'Put1GiB/lifeboat' -benchtime 2x ./internal/store/s3
//	go test -run '^$' -bench 'Put1GiB/sdk' -benchtime 2x ./internal/store/s3
func BenchmarkPut1GiB(b *testing.B) {
	e := newEnv(b)
	b.Run("lifeboat", func(b *testing.B) {
		st, _ := e.store(b, nil)
		b.SetBytes(benchObject)
		i := 0
		for b.Loop() {
			i++
			_, err := st.Put(context.Background(), "backups/b/artifacts/a"+string(rune('a'+i)), newPRNG(benchObject), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
			if err != nil {
				b.Fatal(err)
			}
		}
		peakRSS(b)
	})
	b.Run("sdk-upload-manager", func(b *testing.B) {
		st, bucket := e.store(b, nil)
		up := manager.NewUploader(st.Client(), func(u *manager.Uploader) {
			u.PartSize = s3store.DefaultPartSize
			u.Concurrency = s3store.DefaultConcurrency
		})
		b.SetBytes(benchObject)
		i := 0
		for b.Loop() {
			i++
			_, err := up.Upload(context.Background(), &s3.PutObjectInput{
				Bucket: aws.String(bucket), Key: aws.String("sdk/a" + string(rune('a'+i))), Body: newPRNG(benchObject),
				ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		peakRSS(b)
	})
}

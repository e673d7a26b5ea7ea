package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/lifeboat-dr/lifeboat/internal/store"
	s3store "github.com/lifeboat-dr/lifeboat/internal/store/s3"
	"github.com/lifeboat-dr/lifeboat/internal/store/storetest"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

var bucketSeq atomic.Int64

// env is one versitygw server shared by a test's subtests.
type env struct {
	srv *testenv.S3
}

func newEnv(t testing.TB) *env {
	return &env{srv: testenv.StartS3(t)}
}

func (e *env) opts(bucket string) s3store.Options {
	return s3store.Options{
		Bucket: bucket, Endpoint: e.srv.Endpoint, Region: e.srv.Region, ForcePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(e.srv.AccessKey, e.srv.SecretKey, ""),
	}
}

// bucket creates a fresh bucket, with Object Lock (COMPLIANCE, 1 day
// default) unless unlocked.
func (e *env) bucket(t testing.TB, locked bool) string {
	t.Helper()
	name := fmt.Sprintf("lifeboat-test-%d", bucketSeq.Add(1))
	c := e.raw(t, name)
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if locked {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	if _, err := c.CreateBucket(t.Context(), in); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	if locked {
		_, err := c.PutObjectLockConfiguration(t.Context(), &s3.PutObjectLockConfigurationInput{
			Bucket: aws.String(name),
			ObjectLockConfiguration: &types.ObjectLockConfiguration{
				ObjectLockEnabled: types.ObjectLockEnabledEnabled,
				Rule:              &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeCompliance, Days: aws.Int32(1)}},
			},
		})
		if err != nil {
			t.Fatalf("put object lock configuration on %s: %v", name, err)
		}
	}
	return name
}

func (e *env) raw(t testing.TB, bucket string) *s3.Client {
	st, err := s3store.New(t.Context(), e.opts(bucket))
	if err != nil {
		t.Fatal(err)
	}
	return st.Client()
}

func (e *env) store(t testing.TB, mutate func(*s3store.Options)) (*s3store.Store, string) {
	t.Helper()
	b := e.bucket(t, true)
	o := e.opts(b)
	if mutate != nil {
		mutate(&o)
	}
	st, err := s3store.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return st, b
}

func TestConformance(t *testing.T) {
	e := newEnv(t)
	storetest.Run(t, storetest.Harness{New: func(t *testing.T) store.Store {
		st, _ := e.store(t, func(o *s3store.Options) { o.Prefix = "cluster-a" })
		return st
	}})
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func sum(b []byte) string { d := sha256.Sum256(b); return hex.EncodeToString(d[:]) }

// recorder records the HTTP methods the store sends.
type recorder struct {
	mu      sync.Mutex
	methods []string
	inner   http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.methods = append(r.methods, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery)
	r.mu.Unlock()
	return r.inner.RoundTrip(req)
}

func (r *recorder) sent(method string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.methods {
		if strings.HasPrefix(m, method+" ") {
			out = append(out, m)
		}
	}
	return out
}

func TestLockedObject(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{inner: http.DefaultTransport}
	st, bucket := e.store(t, func(o *s3store.Options) { o.HTTPClient = &http.Client{Transport: rec} })
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	if _, err := st.Put(t.Context(), "backups/b1/artifacts/etcd.snapshot", strings.NewReader("snapshot"), store.PutOptions{RetainUntil: until}); err != nil {
		t.Fatal(err)
	}
	raw := e.raw(t, bucket)
	head, err := raw.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("backups/b1/artifacts/etcd.snapshot")})
	if err != nil {
		t.Fatal(err)
	}
	if head.ObjectLockMode != types.ObjectLockModeCompliance || head.ObjectLockRetainUntilDate == nil || !head.ObjectLockRetainUntilDate.Equal(until) {
		t.Fatalf("object lock on the object: mode %q until %v, want COMPLIANCE until %v", head.ObjectLockMode, head.ObjectLockRetainUntilDate, until)
	}

	// The server itself refuses to delete the locked version.
	_, err = raw.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("backups/b1/artifacts/etcd.snapshot"), VersionId: head.VersionId})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
		t.Fatalf("DeleteObject of a locked version: got %v, want the server's AccessDenied", err)
	}

	// lifeboat refuses before sending anything.
	err = st.Delete(t.Context(), "backups/b1/artifacts/etcd.snapshot")
	if !errors.Is(err, store.ErrRetained) {
		t.Fatalf("Delete before retention: got %v, want ErrRetained", err)
	}
	if d := rec.sent(http.MethodDelete); len(d) != 0 {
		t.Fatalf("the store sent %v before retention ended", d)
	}

	// And it never overwrites: the second Put is refused.
	if _, err := st.Put(t.Context(), "backups/b1/artifacts/etcd.snapshot", strings.NewReader("other"), store.PutOptions{RetainUntil: until}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Put: got %v, want ErrExists", err)
	}
}

// TestServerHonoursIfNoneMatch checks the premise the store relies on, with
// the SDK alone: versitygw refuses a conditional PutObject on an existing key.
func TestServerHonoursIfNoneMatch(t *testing.T) {
	e := newEnv(t)
	bucket := e.bucket(t, true)
	raw := e.raw(t, bucket)
	put := func() error {
		_, err := raw.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"), Body: strings.NewReader("x"), IfNoneMatch: aws.String("*")})
		return err
	}
	if err := put(); err != nil {
		t.Fatal(err)
	}
	var ae smithy.APIError
	if err := put(); !errors.As(err, &ae) || ae.ErrorCode() != "PreconditionFailed" {
		t.Fatalf("conditional PutObject on an existing key: got %v, want PreconditionFailed", err)
	}
}

// headNotFound answers every HEAD with 404, so the store's early existence
// check passes and the write reaches the server.
type headNotFound struct{ inner http.RoundTripper }

func (h headNotFound) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodHead {
		return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
	}
	return h.inner.RoundTrip(req)
}

// dropIfNoneMatch removes the condition from PutObject before it is
// signed: the server then behaves like one that ignores If-None-Match.
func dropIfNoneMatch(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("dropIfNoneMatch",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if p, ok := in.Parameters.(*s3.PutObjectInput); ok {
				p.IfNoneMatch = nil
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

func TestServerIgnoringIfNoneMatchIsCaught(t *testing.T) {
	e := newEnv(t)
	bucket := e.bucket(t, true)
	ok, err := s3store.New(t.Context(), e.opts(bucket))
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	if _, err := ok.Put(t.Context(), "manifest.json", strings.NewReader("first"), store.PutOptions{RetainUntil: until}); err != nil {
		t.Fatal(err)
	}
	o := e.opts(bucket)
	o.HTTPClient = &http.Client{Transport: headNotFound{http.DefaultTransport}}
	o.APIOptions = append(o.APIOptions, dropIfNoneMatch)
	bad, err := s3store.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Put(t.Context(), "manifest.json", strings.NewReader("second"), store.PutOptions{RetainUntil: until})
	if err == nil || !strings.Contains(err.Error(), "ignored If-None-Match") || !strings.Contains(err.Error(), "manifest.json") {
		t.Fatalf("Put through a server that ignores If-None-Match: got %v, want an error saying so and naming the key", err)
	}
}

func TestMultipartAndResume(t *testing.T) {
	e := newEnv(t)
	st, _ := e.store(t, func(o *s3store.Options) { o.PartSize = s3store.MinPartSize; o.Concurrency = 3 })
	data := randomBytes(t, 23<<20+17)
	info, err := st.Put(t.Context(), "backups/b1/artifacts/big", bytes.NewReader(data), store.PutOptions{RetainUntil: time.Now().Add(time.Hour), SHA256: sum(data), Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) || info.SHA256 != sum(data) {
		t.Fatalf("Put returned %+v", info)
	}
	rc, err := st.Get(t.Context(), "backups/b1/artifacts/big", store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("full read: %v (equal %v)", err, bytes.Equal(got, data))
	}
	// Resume after an interruption at 9 MiB + 3.
	off := int64(9<<20 + 3)
	rc, err = st.Get(t.Context(), "backups/b1/artifacts/big", store.GetOptions{Offset: off})
	if err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(rest, data[off:]) {
		t.Fatalf("ranged read from %d: %v", off, err)
	}
}

func TestMultipartDigestMismatchCommitsNothing(t *testing.T) {
	e := newEnv(t)
	st, _ := e.store(t, func(o *s3store.Options) { o.PartSize = s3store.MinPartSize })
	data := randomBytes(t, 11<<20)
	_, err := st.Put(t.Context(), "a", bytes.NewReader(data), store.PutOptions{RetainUntil: time.Now().Add(time.Hour), SHA256: sum([]byte("other"))})
	if !errors.Is(err, store.ErrIntegrity) {
		t.Fatalf("got %v, want ErrIntegrity", err)
	}
	if _, err := st.Stat(t.Context(), "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after a refused multipart Put: Stat got %v, want ErrNotFound", err)
	}
	assertNoUploads(t, st)
}

func assertNoUploads(t *testing.T, st *s3store.Store) {
	t.Helper()
	out, err := st.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(st.Bucket())})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	if len(out.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left open; a failed Put must abort its upload", len(out.Uploads))
	}
}

// killAfter is a source that stops the S3 server once n bytes were read.
type killAfter struct {
	r    io.Reader
	n    int64
	kill func()
	once sync.Once
}

func (k *killAfter) Read(p []byte) (int, error) {
	if k.n <= 0 {
		k.once.Do(k.kill)
	}
	n, err := k.r.Read(p)
	k.n -= int64(n)
	return n, err
}

func TestServerDownMidUpload(t *testing.T) {
	e := newEnv(t)
	st, _ := e.store(t, func(o *s3store.Options) { o.PartSize = s3store.MinPartSize; o.Concurrency = 2 })
	data := randomBytes(t, 30<<20)
	const key = "backups/b1/artifacts/etcd.snapshot"
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	_, err := st.Put(ctx, key, &killAfter{r: bytes.NewReader(data), n: 12 << 20, kill: e.srv.Kill}, store.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("Put with the server killed mid-upload: got %v, want an error naming %s", err, key)
	}
	e.srv.Restart(e.srv.Ready)
	if _, err := st.Stat(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after the failed upload: Stat got %v, want ErrNotFound (nothing committed)", err)
	}
	// The backup can be re-run.
	info, err := st.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{RetainUntil: time.Now().Add(time.Hour), SHA256: sum(data)})
	if err != nil {
		t.Fatalf("re-run after restart: %v", err)
	}
	if info.SHA256 != sum(data) {
		t.Fatal("re-run stored other bytes")
	}
	rc, err := st.Get(t.Context(), key, store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back after re-run: %v", err)
	}
}

func TestCheckBucket(t *testing.T) {
	e := newEnv(t)
	locked, _ := e.store(t, nil)
	st, err := locked.CheckBucket(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !st.ObjectLock || st.DefaultMode != "COMPLIANCE" || st.DefaultRetention != 24*time.Hour {
		t.Fatalf("locked bucket: %+v", st)
	}
	ub := e.bucket(t, false)
	unlocked, err := s3store.New(t.Context(), e.opts(ub))
	if err != nil {
		t.Fatal(err)
	}
	st, err = unlocked.CheckBucket(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.ObjectLock {
		t.Fatalf("unlocked bucket reported as locked: %+v", st)
	}
}

// corruptBodies flips one byte of every request body it forwards,
// leaving the signed headers (and the declared checksum) as they were.
type corruptBodies struct{ inner http.RoundTripper }

func (c corruptBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.Body != nil && req.ContentLength > 0 {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		b[len(b)/2] ^= 0x01
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	return c.inner.RoundTrip(req)
}

// TestCorruptedUploadRejected: bytes changed in transit are refused by the
// server's SHA-256 check, for single-part and multipart uploads alike, and
// nothing is committed.
func TestCorruptedUploadRejected(t *testing.T) {
	e := newEnv(t)
	for _, size := range []int{1 << 20, 12 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			st, _ := e.store(t, func(o *s3store.Options) {
				o.PartSize = s3store.MinPartSize
				o.HTTPClient = &http.Client{Transport: corruptBodies{http.DefaultTransport}}
			})
			_, err := st.Put(t.Context(), "backups/b1/artifacts/a", bytes.NewReader(randomBytes(t, size)), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
			if err == nil {
				t.Fatal("Put of bytes corrupted in transit succeeded")
			}
			t.Logf("refused as expected: %v", err)
			if _, err := st.Stat(t.Context(), "backups/b1/artifacts/a"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("after a rejected upload: Stat got %v, want ErrNotFound", err)
			}
			assertNoUploads(t, st)
		})
	}
}

// TestUnlockedBucket: with Unlocked (a plan's allowUnlocked), writes go to
// a bucket without Object Lock, the intended retention is kept in
// metadata, and Delete still refuses before it ends.
func TestUnlockedBucket(t *testing.T) {
	e := newEnv(t)
	b := e.bucket(t, false)
	o := e.opts(b)
	o.Unlocked = true
	st, err := s3store.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	if _, err := st.Put(t.Context(), "k", strings.NewReader("x"), store.PutOptions{RetainUntil: until}); err != nil {
		t.Fatalf("Put into an unlocked bucket: %v", err)
	}
	info, err := st.Stat(t.Context(), "k")
	if err != nil || !info.RetainUntil.Equal(until) {
		t.Fatalf("Stat: %+v %v, want RetainUntil %v from metadata", info, err, until)
	}
	if err := st.Delete(t.Context(), "k"); !errors.Is(err, store.ErrRetained) {
		t.Fatalf("Delete before the recorded retention: got %v, want ErrRetained", err)
	}
	locked, err := s3store.New(t.Context(), e.opts(b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locked.Put(t.Context(), "k2", strings.NewReader("x"), store.PutOptions{RetainUntil: until}); err == nil {
		t.Fatal("a locked Put into a bucket without Object Lock succeeded; the store must not pretend objects are locked")
	}
}

// dropPartChecksum hides the checksum a server confirms for each part, as
// a server that ignores x-amz-checksum-sha256 would.
func dropPartChecksum(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("dropPartChecksum",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			if r, ok := out.Result.(*s3.UploadPartOutput); ok {
				r.ChecksumSHA256 = nil
			}
			return out, md, err
		}), middleware.Before)
}

// TestUnconfirmedPartChecksumRefused: a multipart upload whose parts the
// server does not confirm by SHA-256 is aborted; nothing is committed.
func TestUnconfirmedPartChecksumRefused(t *testing.T) {
	e := newEnv(t)
	// The three parts (11 MiB in parts of 5 MiB) are held until all are
	// on their way, so that when the first fails the others are in flight.
	var (
		mu       sync.Mutex
		partErrs []error
		arrived  atomic.Int32
		allSent  = make(chan struct{})
	)
	recordParts := func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("recordParts",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if _, ok := in.Parameters.(*s3.UploadPartInput); !ok {
					return next.HandleInitialize(ctx, in)
				}
				if arrived.Add(1) == 3 {
					close(allSent)
				}
				select {
				case <-allSent:
				case <-time.After(10 * time.Second):
				}
				out, md, err := next.HandleInitialize(ctx, in)
				mu.Lock()
				partErrs = append(partErrs, err)
				mu.Unlock()
				return out, md, err
			}), middleware.Before)
	}
	st, _ := e.store(t, func(o *s3store.Options) {
		o.PartSize = s3store.MinPartSize
		o.APIOptions = append(o.APIOptions, dropPartChecksum, recordParts)
	})
	_, err := st.Put(t.Context(), "a", bytes.NewReader(randomBytes(t, 11<<20)), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
	if !errors.Is(err, store.ErrIntegrity) || !strings.Contains(err.Error(), "does not verify part checksums") {
		t.Fatalf("got %v, want ErrIntegrity saying the server does not verify part checksums", err)
	}
	// The parts already sent were let finish, not cut off: a part cut off
	// client-side may still be landing on the server when the abort
	// arrives.
	if len(partErrs) != 3 {
		t.Fatalf("%d parts sent, want all 3 in flight at once", len(partErrs))
	}
	for _, err := range partErrs {
		if errors.Is(err, context.Canceled) {
			t.Errorf("a part in flight was cancelled when another failed: %v", err)
		}
	}
	if _, err := st.Stat(t.Context(), "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat after the refused upload: %v", err)
	}
	assertNoUploads(t, st)
}

// TestStalledPartCutOffAfterGrace: the parts in flight when another fails
// are let finish, but not for ever: one that a stalled server never
// answers is cut off after the grace period, and the Put fails with the
// first part's error and leaves no upload.
func TestStalledPartCutOffAfterGrace(t *testing.T) {
	defer s3store.SetPartGrace(200 * time.Millisecond)()
	e := newEnv(t)
	// The first part to go out waits until the second is on its way; the
	// second then never gets an answer.
	var n atomic.Int32
	secondSent := make(chan struct{})
	stallSecond := func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("stallSecond",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if _, ok := in.Parameters.(*s3.UploadPartInput); ok {
					switch n.Add(1) {
					case 1:
						<-secondSent
					case 2:
						close(secondSent)
						<-ctx.Done() // a server that never answers
						return middleware.InitializeOutput{}, middleware.Metadata{}, ctx.Err()
					}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}
	st, _ := e.store(t, func(o *s3store.Options) {
		o.PartSize = s3store.MinPartSize
		o.APIOptions = append(o.APIOptions, dropPartChecksum, stallSecond)
	})
	done := make(chan error, 1)
	go func() {
		_, err := st.Put(t.Context(), "a", bytes.NewReader(randomBytes(t, 11<<20)), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrIntegrity) || !strings.Contains(err.Error(), "does not verify part checksums") {
			t.Fatalf("got %v, want the first failed part's ErrIntegrity", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Put still waits for a stalled part long after the grace period")
	}
	assertNoUploads(t, st)
}

// TestAbortOutlivesALatePart: a part that the server was still receiving
// when the upload was aborted can land after the abort and bring the
// upload back (S3 documents that such a part may succeed; versitygw did
// so in CI, listing the upload again). A failed Put checks that its upload
// is gone and aborts again until it is. Here the first abort the store
// sends leaves the upload in place, as that late part would.
func TestAbortOutlivesALatePart(t *testing.T) {
	e := newEnv(t)
	var aborts atomic.Int32
	firstAbortLost := func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("firstAbortLost",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if _, ok := in.Parameters.(*s3.AbortMultipartUploadInput); ok && aborts.Add(1) == 1 {
					return middleware.InitializeOutput{Result: &s3.AbortMultipartUploadOutput{}}, middleware.Metadata{}, nil
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}
	st, _ := e.store(t, func(o *s3store.Options) {
		o.PartSize = s3store.MinPartSize
		o.APIOptions = append(o.APIOptions, dropPartChecksum, firstAbortLost)
	})
	_, err := st.Put(t.Context(), "a", bytes.NewReader(randomBytes(t, 11<<20)), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
	if !errors.Is(err, store.ErrIntegrity) {
		t.Fatalf("got %v, want ErrIntegrity", err)
	}
	if n := aborts.Load(); n != 2 {
		t.Errorf("the store sent %d aborts, want 2 (the upload was still there after the first)", n)
	}
	assertNoUploads(t, st)
}

// TestReadsTheVersionLifeboatWrote is issue 11's attack on a real S3 server
// with Object Lock: someone with s3:PutObject publishes a new version of a
// key lifeboat wrote, then a delete marker on top. Object Lock keeps the
// first version; the store reads only that one (never the newest), and
// AuditVersions names the key with its extra version and marker.
func TestReadsTheVersionLifeboatWrote(t *testing.T) {
	e := newEnv(t)
	st, bucket := e.store(t, func(o *s3store.Options) { o.Prefix = "cluster-a" })
	ctx := t.Context()
	genuine := []byte(`{"takenAt":"2026-11-25T02:00:00Z"}`)
	if _, err := st.Put(ctx, "backups/b/manifest.json", bytes.NewReader(genuine), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	raw := e.raw(t, bucket)
	forged := []byte(`{"takenAt":"2026-12-01T02:00:00Z"}`)
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("cluster-a/backups/b/manifest.json"), Body: bytes.NewReader(forged)}); err != nil {
		t.Fatalf("the attacker's PutObject of a second version was refused (%v): the test needs a server that versions", err)
	}
	read := func() []byte {
		t.Helper()
		rc, err := st.Get(ctx, "backups/b/manifest.json", store.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got := read(); !bytes.Equal(got, genuine) {
		t.Fatalf("read %s, want the version lifeboat wrote %s", got, genuine)
	}
	if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("cluster-a/backups/b/manifest.json")}); err != nil {
		t.Fatalf("the attacker's delete marker was refused (%v): the test needs a server that versions", err)
	}
	if got := read(); !bytes.Equal(got, genuine) {
		t.Fatalf("after a delete marker: read %s, want %s", got, genuine)
	}
	// The delete marker does not hide the key from List either (a backup
	// hidden from `backup list` and `latest`), and List describes the
	// first version.
	var listed []store.ObjectInfo
	for info, err := range st.List(ctx, "backups/") {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, info)
	}
	if len(listed) != 1 || listed[0].Key != "backups/b/manifest.json" || listed[0].Size != int64(len(genuine)) || listed[0].RetainUntil.IsZero() {
		t.Fatalf("List after a forged version and a delete marker = %+v, want backups/b/manifest.json as lifeboat wrote it", listed)
	}
	// The same with pages of two or three entries, so that the key's
	// versions and its marker straddle pages, between untouched keys.
	// (versitygw repeats a page's start marker at the top of the next
	// page, which List skips; with pages of one entry it cannot advance
	// at all there, and List fails instead of looping.)
	for _, k := range []string{"backups/a/manifest.json", "backups/c/manifest.json"} {
		if _, err := st.Put(ctx, k, bytes.NewReader([]byte("x")), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, size := range []int32{2, 3} {
		st.SetListPage(size)
		var keys []string
		for info, err := range st.List(ctx, "backups/") {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, fmt.Sprintf("%s:%d", info.Key, info.Size))
		}
		want := fmt.Sprintf("[backups/a/manifest.json:1 backups/b/manifest.json:%d backups/c/manifest.json:1]", len(genuine))
		if fmt.Sprint(keys) != want {
			t.Fatalf("List with pages of %d = %v, want %s", size, keys, want)
		}
	}
	st.SetListPage(0)
	findings, err := st.AuditVersions(ctx, "backups/")
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 1 || findings[0].Key != "backups/b/manifest.json" || findings[0].Versions != 2 || findings[0].DeleteMarkers != 1 {
		t.Fatalf("AuditVersions = %+v, want backups/b/manifest.json with 2 versions", findings)
	}
	t.Logf("finding: %s", findings[0])
	// A key with one version is no finding.
	if findings, _ := st.AuditVersions(ctx, "backups/c/"); len(findings) != 0 {
		t.Fatalf("AuditVersions of an untouched key = %+v", findings)
	}
}

// TestAbortStaleUploads: a multipart upload left open by a Put that was
// killed is aborted once it is older than the bound, never before (a
// running Put's upload is young), and only under the store's prefix.
func TestAbortStaleUploads(t *testing.T) {
	e := newEnv(t)
	st, bucket := e.store(t, func(o *s3store.Options) { o.Prefix = "cluster-a" })
	ctx := t.Context()
	raw := e.raw(t, bucket)
	open := func(key string) string {
		t.Helper()
		up, err := raw.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(1), Body: bytes.NewReader(randomBytes(t, 1<<10))}); err != nil {
			t.Fatal(err)
		}
		return aws.ToString(up.UploadId)
	}
	mine := open("cluster-a/backups/b/artifacts/etcd-snapshot.db")
	other := open("cluster-b/backups/c/artifacts/etcd-snapshot.db")
	if got, err := st.AbortStaleUploads(ctx, store.StaleUploadAge, time.Now()); err != nil || len(got) != 0 {
		t.Fatalf("a fresh upload aborted: %+v %v", got, err)
	}
	got, err := st.AbortStaleUploads(ctx, store.StaleUploadAge, time.Now().Add(store.StaleUploadAge+time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key != "backups/b/artifacts/etcd-snapshot.db" || got[0].UploadID != mine {
		t.Fatalf("aborted %+v, want only this store's upload %s", got, mine)
	}
	left, err := raw.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Uploads) != 1 || aws.ToString(left.Uploads[0].UploadId) != other {
		t.Fatalf("uploads left: %+v, want only the other prefix's", left.Uploads)
	}
	has, err := st.AbortsIncompleteUploads(ctx)
	t.Logf("lifecycle rule aborting incomplete uploads: %v (%v)", has, err)
}

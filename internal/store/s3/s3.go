package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Lock modes.
const (
	ModeCompliance = "COMPLIANCE"
	ModeGovernance = "GOVERNANCE"
)

// Defaults and limits.
const (
	DefaultPartSize    = 8 << 20
	MinPartSize        = 5 << 20 // S3's minimum for all parts but the last
	MaxParts           = 10000
	DefaultConcurrency = 4

	metaSHA256      = "lifeboat-sha256"
	metaRetainUntil = "lifeboat-retain-until"
)

// Options configure a Store.
type Options struct {
	// Bucket is the bucket name.
	Bucket string
	// Prefix is prepended, with a "/", to every key; empty for none.
	Prefix string
	// Endpoint overrides the S3 endpoint (an S3-compatible server).
	Endpoint string
	// Region is the bucket's region; empty means the SDK's default chain.
	Region string
	// ForcePathStyle addresses buckets as endpoint/bucket, as most
	// S3-compatible servers need.
	ForcePathStyle bool
	// LockMode is ModeCompliance (the default) or ModeGovernance.
	LockMode string
	// Unlocked writes objects without Object Lock headers, for a bucket
	// without Object Lock that the plan allows (allowUnlocked). The
	// intended retention is still recorded in each object's metadata, and
	// Delete still refuses before it ends; only the server no longer
	// enforces it.
	Unlocked bool
	// PartSize is the multipart part size; zero means DefaultPartSize.
	PartSize int64
	// Concurrency is how many parts upload at once; zero means
	// DefaultConcurrency.
	Concurrency int
	// Credentials overrides the SDK's default credential chain.
	Credentials aws.CredentialsProvider
	// HTTPClient overrides the SDK's HTTP client.
	HTTPClient *http.Client
	// APIOptions are added to the SDK client's middleware stack (tracing,
	// metrics, fault injection in tests).
	APIOptions []func(*middleware.Stack) error
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Store is an S3 store. It is safe for concurrent use.
type Store struct {
	client      *s3.Client
	bucket      string
	prefix      string
	mode        types.ObjectLockMode
	unlocked    bool
	partSize    int64
	concurrency int
	now         func() time.Time
	log         *slog.Logger
	// listPage is the MaxKeys of List's listings; 0 is the server's
	// default (1000). Tests make it small to cross page boundaries.
	listPage int32
}

var _ store.Store = (*Store)(nil)

// New returns a store for opts.Bucket. It does no I/O beyond loading the
// SDK's configuration (environment, shared files).
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Bucket == "" {
		return nil, errors.New("s3 store: bucket is required")
	}
	if opts.Prefix != "" {
		if err := store.ValidateKey(opts.Prefix); err != nil {
			return nil, fmt.Errorf("s3 store: prefix: %w", err)
		}
	}
	s := &Store{bucket: opts.Bucket, prefix: opts.Prefix, unlocked: opts.Unlocked, partSize: opts.PartSize, concurrency: opts.Concurrency, now: opts.Now, log: opts.Logger}
	switch opts.LockMode {
	case "", ModeCompliance:
		s.mode = types.ObjectLockModeCompliance
	case ModeGovernance:
		s.mode = types.ObjectLockModeGovernance
	default:
		return nil, fmt.Errorf("s3 store: lock mode %q: want %s or %s", opts.LockMode, ModeCompliance, ModeGovernance)
	}
	if s.partSize == 0 {
		s.partSize = DefaultPartSize
	}
	if s.partSize < MinPartSize || s.partSize > 5<<30 {
		return nil, fmt.Errorf("s3 store: part size %d outside [%d, %d]", s.partSize, MinPartSize, int64(5<<30))
	}
	if s.concurrency == 0 {
		s.concurrency = DefaultConcurrency
	}
	if s.concurrency < 1 || s.concurrency > 64 {
		return nil, fmt.Errorf("s3 store: concurrency %d outside [1, 64]", s.concurrency)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var loadOpts []func(*awsconfig.LoadOptions) error
	if opts.Region != "" {
		loadOpts = append(loadOpts, awsconfig.WithRegion(opts.Region))
	}
	if opts.Credentials != nil {
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(opts.Credentials))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store: load AWS configuration: %w", err)
	}
	s.client = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.ForcePathStyle
		o.APIOptions = append(o.APIOptions, opts.APIOptions...)
		if opts.HTTPClient != nil {
			// Set on the client, not the loaded configuration, where it
			// would clash with a custom CA bundle (AWS_CA_BUNDLE).
			o.HTTPClient = opts.HTTPClient
		}
		// Checksums are computed and sent explicitly (SHA-256), and
		// checked by the store itself on read.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return s, nil
}

// Client returns the underlying S3 client, for checks and tests.
func (s *Store) Client() *s3.Client { return s.client }

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

func (s *Store) fullKey(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

// relKey is the store key of a bucket key under the store's prefix.
func (s *Store) relKey(full string) string {
	if s.prefix == "" {
		return full
	}
	return strings.TrimPrefix(full, s.prefix+"/")
}

func (s *Store) fail(op, key, step string, err error) error {
	return fmt.Errorf("s3 store %s: %s %q: %s: %w", s.bucket, op, key, step, err)
}

// apiCode returns the S3 error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func isNotFound(err error) bool {
	switch apiCode(err) {
	case "NoSuchKey", "NotFound", "NoSuchVersion":
		return true
	}
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

func isPreconditionFailed(err error) bool {
	if apiCode(err) == "PreconditionFailed" {
		return true
	}
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed
}

// Put uploads r under key with the store's lock mode and opts.RetainUntil.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.ObjectInfo, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.ObjectInfo{}, fmt.Errorf("s3 store %s: put: %w", s.bucket, err)
	}
	now := s.now()
	switch {
	case opts.RetainUntil.IsZero():
		return store.ObjectInfo{}, s.fail("put", key, "check options", errors.New("retain-until time is required"))
	case !opts.RetainUntil.After(now):
		return store.ObjectInfo{}, s.fail("put", key, "check options", fmt.Errorf("retain-until time %s is not after now", opts.RetainUntil.UTC().Format(time.RFC3339)))
	case opts.Size < 0:
		return store.ObjectInfo{}, s.fail("put", key, "check options", fmt.Errorf("expected size %d is negative", opts.Size))
	}
	if err := ctx.Err(); err != nil {
		return store.ObjectInfo{}, s.fail("put", key, "begin", err)
	}
	if _, err := s.head(ctx, key); err == nil {
		return store.ObjectInfo{}, s.fail("put", key, "check key", store.ErrExists)
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.ObjectInfo{}, s.fail("put", key, "check key", err)
	}

	first := make([]byte, s.partSize)
	n, rerr := io.ReadFull(r, first)
	var (
		size int64
		sum  string
		err  error
	)
	switch {
	case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
		size, sum, err = s.putSingle(ctx, key, first[:n], opts)
	case rerr != nil:
		return store.ObjectInfo{}, s.fail("put", key, "read source", rerr)
	default:
		size, sum, err = s.putMultipart(ctx, key, first, r, opts)
	}
	if err != nil {
		return store.ObjectInfo{}, err
	}
	if err := s.checkOneVersion(ctx, key); err != nil {
		return store.ObjectInfo{}, err
	}
	info, err := s.Stat(ctx, key)
	if err != nil {
		return store.ObjectInfo{}, s.fail("put", key, "stat after write", err)
	}
	if info.Size != size {
		return store.ObjectInfo{}, s.fail("put", key, "check stored size", fmt.Errorf("server holds %d bytes, %d were sent: %w", info.Size, size, store.ErrIntegrity))
	}
	if sum != "" {
		info.SHA256 = sum
	}
	s.log.Debug("s3 store: object stored", "bucket", s.bucket, "key", key, "size", size)
	return info, nil
}

func checkExpected(size int64, sum string, opts store.PutOptions) error {
	if opts.Size > 0 && size != opts.Size {
		return fmt.Errorf("got %d bytes, expected %d: %w", size, opts.Size, store.ErrIntegrity)
	}
	if opts.SHA256 != "" && sum != opts.SHA256 {
		return fmt.Errorf("got sha256 %s, expected %s: %w", sum, opts.SHA256, store.ErrIntegrity)
	}
	return nil
}

func (s *Store) lockFields(opts store.PutOptions) (types.ObjectLockMode, *time.Time, map[string]string) {
	until := opts.RetainUntil.UTC()
	meta := map[string]string{metaRetainUntil: until.Format(time.RFC3339Nano)}
	if s.unlocked {
		return "", nil, meta
	}
	return s.mode, &until, meta
}

func (s *Store) putSingle(ctx context.Context, key string, body []byte, opts store.PutOptions) (int64, string, error) {
	d := sha256.Sum256(body)
	sum := hex.EncodeToString(d[:])
	if err := checkExpected(int64(len(body)), sum, opts); err != nil {
		return 0, "", s.fail("put", key, "check digest", err)
	}
	mode, until, meta := s.lockFields(opts)
	meta[metaSHA256] = sum
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:                    aws.String(s.bucket),
		Key:                       aws.String(s.fullKey(key)),
		Body:                      bytes.NewReader(body),
		ContentLength:             aws.Int64(int64(len(body))),
		ChecksumSHA256:            aws.String(base64.StdEncoding.EncodeToString(d[:])),
		IfNoneMatch:               aws.String("*"),
		ObjectLockMode:            mode,
		ObjectLockRetainUntilDate: until,
		Metadata:                  meta,
	})
	if err != nil {
		if isPreconditionFailed(err) {
			return 0, "", s.fail("put", key, "put object", store.ErrExists)
		}
		return 0, "", s.fail("put", key, "put object", err)
	}
	return int64(len(body)), sum, nil
}

type partJob struct {
	num int32
	buf []byte
}

// putMultipart uploads first and the rest of r as a multipart upload, with
// at most s.concurrency parts in flight, and aborts it on any failure.
func (s *Store) putMultipart(ctx context.Context, key string, first []byte, r io.Reader, opts store.PutOptions) (int64, string, error) {
	mode, until, meta := s.lockFields(opts)
	full := s.fullKey(key)
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:                    aws.String(s.bucket),
		Key:                       aws.String(full),
		ChecksumAlgorithm:         types.ChecksumAlgorithmSha256,
		ObjectLockMode:            mode,
		ObjectLockRetainUntilDate: until,
		Metadata:                  meta,
	})
	if err != nil {
		return 0, "", s.fail("put", key, "create multipart upload", err)
	}
	uploadID := created.UploadId
	committed := false
	defer func() {
		if !committed {
			s.abortUpload(ctx, key, full, aws.ToString(uploadID))
		}
	}()

	// A failed part stops the feeding of new parts (uctx), but not the
	// parts already on their way: their requests (pctx) are let finish,
	// for up to partGrace, so that the upload is not aborted while the
	// server is still receiving them (a part that lands after the abort
	// can bring the upload back; abortUpload checks for that).
	uctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	var (
		graceOnce sync.Once
		grace     *time.Timer
	)
	failPart := func(err error) {
		cancel(err)
		graceOnce.Do(func() { grace = time.AfterFunc(partGrace, pcancel) })
	}
	// A fixed pool of buffers bounds memory: concurrency in flight plus
	// one being filled.
	pool := make(chan []byte, s.concurrency+1)
	for i := 0; i < s.concurrency; i++ {
		pool <- make([]byte, s.partSize)
	}
	jobs := make(chan partJob)
	var (
		mu    sync.Mutex
		parts []types.CompletedPart
		wg    sync.WaitGroup
	)
	for i := 0; i < s.concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if uctx.Err() != nil {
					// A part failed: send nothing more.
					pool <- j.buf[:cap(j.buf)]
					continue
				}
				d := sha256.Sum256(j.buf)
				cs := base64.StdEncoding.EncodeToString(d[:])
				// The part's integrity rides on x-amz-checksum-sha256, a
				// signed header the server checks against the bytes
				// (BadDigest otherwise). The payload itself is sent as
				// UNSIGNED-PAYLOAD, as S3's trailing checksums do, so the
				// server does not hash every byte a second time for SigV4.
				out, err := s.client.UploadPart(pctx, &s3.UploadPartInput{
					Bucket: aws.String(s.bucket), Key: aws.String(full), UploadId: uploadID,
					PartNumber: aws.Int32(j.num), Body: bytes.NewReader(j.buf),
					ContentLength: aws.Int64(int64(len(j.buf))), ChecksumSHA256: aws.String(cs),
				}, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
				pool <- j.buf[:cap(j.buf)]
				if err != nil {
					failPart(fmt.Errorf("upload part %d: %w", j.num, err))
					continue
				}
				// The payload went unsigned: insist that the server
				// confirms the checksum it verified, so a server that
				// ignores x-amz-checksum-sha256 is caught here, not at
				// restore time.
				if got := aws.ToString(out.ChecksumSHA256); got != cs {
					failPart(fmt.Errorf("upload part %d: the server confirmed SHA-256 %q, not the %q sent: it does not verify part checksums: %w", j.num, got, cs, store.ErrIntegrity))
					continue
				}
				mu.Lock()
				parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(j.num), ChecksumSHA256: aws.String(cs)})
				mu.Unlock()
			}
		}()
	}

	// The whole-object SHA-256 is one more pass over every byte; it is
	// taken only when the caller gave a digest to check. Each part's
	// SHA-256 is sent and verified by the server either way.
	var h hash.Hash
	if opts.SHA256 != "" {
		h = sha256.New()
	}
	var size int64
	sendErr := s.feedParts(uctx, first, r, h, &size, pool, jobs)
	close(jobs)
	wg.Wait()
	if grace != nil {
		grace.Stop()
	}
	if sendErr == nil {
		// A part that failed after the last one was handed over.
		sendErr = context.Cause(uctx)
	}
	if sendErr != nil {
		return 0, "", s.fail("put", key, "multipart upload", sendErr)
	}
	sum := ""
	if h != nil {
		sum = hex.EncodeToString(h.Sum(nil))
	}
	if err := checkExpected(size, sum, opts); err != nil {
		return 0, "", s.fail("put", key, "check digest", err)
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	if _, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(full), UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     aws.String("*"),
	}); err != nil {
		if isPreconditionFailed(err) {
			return 0, "", s.fail("put", key, "complete multipart upload", store.ErrExists)
		}
		return 0, "", s.fail("put", key, "complete multipart upload", err)
	}
	committed = true
	return size, sum, nil
}

// Aborting a multipart upload: how many times at most, and the wait
// before the first retry (doubled for each next one).
const (
	abortAttempts = 5
	abortBackoff  = 100 * time.Millisecond
)

// partGrace is how long the parts in flight when another part failed are
// let finish before they are cut off; a variable for tests.
var partGrace = 30 * time.Second

// abortUpload aborts a multipart upload that will not be completed and
// checks that it is gone. A part whose request the server was still
// handling when the abort arrived may land after it: S3 documents that
// such parts may succeed and the abort may have to be repeated, and
// versitygw then lists the upload again. So the abort is repeated, with a
// growing wait, until ListParts says there is no such upload. It runs even
// when the caller's context is done (that may be what failed), within 30
// seconds. An upload it cannot remove is logged: the bucket's lifecycle
// rule for incomplete uploads, or AbortStaleUploads, removes it later.
func (s *Store) abortUpload(ctx context.Context, key, full, uploadID string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	wait := abortBackoff
	for attempt := 1; ; attempt++ {
		_, err := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.bucket), Key: aws.String(full), UploadId: aws.String(uploadID),
		})
		if err != nil && apiCode(err) != "NoSuchUpload" {
			s.log.Warn("s3 store: cannot abort multipart upload; the bucket's lifecycle rule for incomplete uploads will remove it",
				"bucket", s.bucket, "key", key, "uploadId", uploadID, "err", err)
			return
		}
		_, err = s.client.ListParts(actx, &s3.ListPartsInput{
			Bucket: aws.String(s.bucket), Key: aws.String(full), UploadId: aws.String(uploadID), MaxParts: aws.Int32(1),
		})
		switch {
		case apiCode(err) == "NoSuchUpload":
			s.log.Info("s3 store: multipart upload aborted", "bucket", s.bucket, "key", key, "uploadId", uploadID, "attempts", attempt)
			return
		case err != nil:
			s.log.Warn("s3 store: multipart upload aborted, but whether it is gone is unknown (is s3:ListMultipartUploadParts granted?); the bucket's lifecycle rule for incomplete uploads removes what is left",
				"bucket", s.bucket, "key", key, "uploadId", uploadID, "err", err)
			return
		}
		if attempt == abortAttempts || !sleepCtx(actx, wait) {
			s.log.Warn("s3 store: multipart upload still there after aborting it; the bucket's lifecycle rule for incomplete uploads will remove it",
				"bucket", s.bucket, "key", key, "uploadId", uploadID, "attempts", attempt)
			return
		}
		wait *= 2
	}
}

// sleepCtx waits for d, or until ctx is done; it reports whether the wait
// ran its course.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// feedParts reads r part by part into pooled buffers and hands them to the
// uploaders, hashing the whole stream as it goes.
func (s *Store) feedParts(ctx context.Context, first []byte, r io.Reader, h hash.Hash, size *int64, pool chan []byte, jobs chan<- partJob) error {
	buf := first
	n := len(first)
	for num := int32(1); ; num++ {
		if num > MaxParts {
			return fmt.Errorf("more than %d parts of %d bytes; raise the part size", MaxParts, s.partSize)
		}
		if h != nil {
			h.Write(buf[:n])
		}
		*size += int64(n)
		select {
		case jobs <- partJob{num: num, buf: buf[:n]}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		select {
		case buf = <-pool:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		var err error
		n, err = io.ReadFull(r, buf)
		if err == io.EOF {
			pool <- buf
			return nil
		}
		if err == io.ErrUnexpectedEOF {
			if h != nil {
				h.Write(buf[:n])
			}
			*size += int64(n)
			select {
			case jobs <- partJob{num: num + 1, buf: buf[:n]}:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		if err != nil {
			return fmt.Errorf("read source: %w", err)
		}
	}
}

// checkOneVersion verifies the key has exactly one version, catching a
// server that ignored If-None-Match and stored a second one.
func (s *Store) checkOneVersion(ctx context.Context, key string) error {
	full := s.fullKey(key)
	out, err := s.client.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{
		Bucket: aws.String(s.bucket), Prefix: aws.String(full), MaxKeys: aws.Int32(10),
	})
	if err != nil {
		return s.fail("put", key, "list versions", err)
	}
	n := 0
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == full {
			n++
		}
	}
	if n > 1 {
		return s.fail("put", key, "check versions", fmt.Errorf("the key has %d versions: the server ignored If-None-Match and stored a second object; it does not honour conditional writes and cannot be used as a write-once store", n))
	}
	return nil
}

// pinned returns the version of key that lifeboat wrote: the oldest one.
// lifeboat writes a key once (If-None-Match), so any later version or
// delete marker is someone else's; reads go to the first version whatever
// was put on top of it, and the others are reported (AuditVersions) and
// logged. "" means no version ID to pin (an unversioned bucket).
func (s *Store) pinned(ctx context.Context, key string) (string, error) {
	full := s.fullKey(key)
	var (
		oldest     *types.ObjectVersion
		n, markers int
	)
	err := s.versions(ctx, full, 1000, func(e versionEntry) error {
		if e.key != full {
			// Keys sort after their prefixes: every entry of full came
			// before this longer key, so stop (a flood of keys that
			// merely start with full costs nothing).
			return errStop
		}
		if n+markers >= maxVersionsPerKey {
			// Thousands of versions of one key: someone is trying to push
			// the first one out of reach. Fail closed.
			return fmt.Errorf("%s has more than %d versions and delete markers; lifeboat wrote one: %w", full, maxVersionsPerKey, store.ErrIntegrity)
		}
		if e.v == nil {
			markers++
			return nil
		}
		n++
		// S3 lists a key's versions newest first: the last one seen is
		// the oldest (times have a resolution of a second).
		oldest = e.v
		return nil
	})
	if err != nil {
		return "", err
	}
	if oldest == nil {
		return "", store.ErrNotFound
	}
	if n > 1 || markers > 0 {
		s.log.Warn("the key holds versions lifeboat did not write; reading the first",
			"bucket", s.bucket, "key", full, "versions", n, "deleteMarkers", markers)
	}
	id := aws.ToString(oldest.VersionId)
	if id == "null" && n == 1 && markers == 0 {
		return "", nil // an unversioned bucket's only version
	}
	return id, nil
}

// versionEntry is one version or delete marker (v nil) of a listing.
type versionEntry struct {
	key, id string
	v       *types.ObjectVersion
}

// errStop ends a versions walk early without an error.
var errStop = errors.New("stop")

// versions calls fn with every version and delete marker under the full
// prefix, in key order and, within a key, newest first (S3's order; the
// two arrays of a page are merged by key). pageSize 0 is the server's
// default. An entry equal to the page's start marker is skipped: S3's
// markers are exclusive, but versitygw repeats the marker's entry at the
// top of the next page, which would count a version twice. A listing that
// does not advance fails instead of looping.
func (s *Store) versions(ctx context.Context, full string, pageSize int32, fn func(versionEntry) error) error {
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(full)}
	if pageSize > 0 {
		in.MaxKeys = aws.Int32(pageSize)
	}
	for {
		page, err := s.client.ListObjectVersions(ctx, in)
		if err != nil {
			return err
		}
		entries := make([]versionEntry, 0, len(page.Versions)+len(page.DeleteMarkers))
		for i := range page.Versions {
			v := &page.Versions[i]
			entries = append(entries, versionEntry{key: aws.ToString(v.Key), id: aws.ToString(v.VersionId), v: v})
		}
		for _, m := range page.DeleteMarkers {
			entries = append(entries, versionEntry{key: aws.ToString(m.Key), id: aws.ToString(m.VersionId)})
		}
		// Within a key S3 gives versions and markers newest first in
		// each array; merging keeps each array's order (stable sort by
		// key) but cannot interleave a key's markers among its versions.
		// Readers only need the oldest version and the counts, which
		// this order keeps.
		slices.SortStableFunc(entries, func(x, y versionEntry) int { return strings.Compare(x.key, y.key) })
		for _, e := range entries {
			if in.KeyMarker != nil && e.key == aws.ToString(in.KeyMarker) && e.id == aws.ToString(in.VersionIdMarker) {
				continue
			}
			if err := fn(e); err != nil {
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return nil
		}
		if aws.ToString(page.NextKeyMarker) == aws.ToString(in.KeyMarker) && aws.ToString(page.NextVersionIdMarker) == aws.ToString(in.VersionIdMarker) {
			return fmt.Errorf("the server's version listing does not advance past key %q version %q", aws.ToString(in.KeyMarker), aws.ToString(in.VersionIdMarker))
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
}

// AuditVersions implements store.VersionAuditor with one listing of the
// versions under prefix.
func (s *Store) AuditVersions(ctx context.Context, prefix string) ([]store.VersionFinding, error) {
	counts := map[string]*store.VersionFinding{}
	var order []string
	get := func(key string) *store.VersionFinding {
		f, ok := counts[key]
		if !ok {
			f = &store.VersionFinding{Key: key}
			counts[key] = f
			order = append(order, key)
		}
		return f
	}
	full := s.fullKey(prefix)
	if s.prefix != "" && prefix == "" {
		full = s.prefix + "/"
	}
	err := s.versions(ctx, full, 0, func(e versionEntry) error {
		if e.v == nil {
			get(s.relKey(e.key)).DeleteMarkers++
		} else {
			get(s.relKey(e.key)).Versions++
		}
		return nil
	})
	if err != nil {
		return nil, s.fail("audit versions", prefix, "list versions", err)
	}
	var findings []store.VersionFinding
	for _, k := range order {
		if f := counts[k]; f.Versions > 1 || f.DeleteMarkers > 0 {
			findings = append(findings, *f)
		}
	}
	return findings, nil
}

// head returns the object's metadata (its first version's), or
// store.ErrNotFound.
func (s *Store) head(ctx context.Context, key string) (*s3.HeadObjectOutput, error) {
	ver, err := s.pinned(ctx, key)
	if err != nil {
		return nil, err
	}
	hin := &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.fullKey(key))}
	if ver != "" {
		hin.VersionId = aws.String(ver)
	}
	out, err := s.client.HeadObject(ctx, hin)
	if err != nil {
		if isNotFound(err) {
			return nil, store.ErrNotFound
		}
		return nil, err
	}
	return out, nil
}

func (s *Store) info(key string, size int64, modified *time.Time, lockUntil *time.Time, meta map[string]string) store.ObjectInfo {
	info := store.ObjectInfo{Key: key, Size: size, Created: aws.ToTime(modified)}
	if sum := meta[metaSHA256]; len(sum) == 64 {
		info.SHA256 = sum
	}
	// The server's lock is the authority; the recorded intent covers a
	// bucket that allows unlocked objects.
	if lockUntil != nil {
		info.RetainUntil = lockUntil.UTC()
	} else if t, err := time.Parse(time.RFC3339Nano, meta[metaRetainUntil]); err == nil {
		info.RetainUntil = t.UTC()
	}
	return info
}

// Stat describes the object.
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.ObjectInfo{}, fmt.Errorf("s3 store %s: stat: %w", s.bucket, err)
	}
	out, err := s.head(ctx, key)
	if err != nil {
		return store.ObjectInfo{}, s.fail("stat", key, "head object", err)
	}
	return s.info(key, aws.ToInt64(out.ContentLength), out.LastModified, out.ObjectLockRetainUntilDate, out.Metadata), nil
}

// Get opens the object from opts.Offset with a ranged GET. A read from
// offset 0 is checked against the recorded SHA-256 at EOF.
func (s *Store) Get(ctx context.Context, key string, opts store.GetOptions) (io.ReadCloser, error) {
	if err := store.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("s3 store %s: get: %w", s.bucket, err)
	}
	if opts.Offset < 0 {
		return nil, s.fail("get", key, "check options", fmt.Errorf("negative offset %d", opts.Offset))
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.fullKey(key))}
	if opts.Offset > 0 {
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, s.fail("get", key, "stat", err)
		}
		if opts.Offset > info.Size {
			return nil, s.fail("get", key, "check options", fmt.Errorf("offset %d beyond the object's %d bytes", opts.Offset, info.Size))
		}
		if opts.Offset == info.Size {
			return io.NopCloser(strings.NewReader("")), nil
		}
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", opts.Offset))
	}
	ver, err := s.pinned(ctx, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, s.fail("get", key, "list versions", store.ErrNotFound)
		}
		return nil, s.fail("get", key, "list versions", err)
	}
	if ver != "" {
		in.VersionId = aws.String(ver)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if isNotFound(err) {
			return nil, s.fail("get", key, "get object", store.ErrNotFound)
		}
		return nil, s.fail("get", key, "get object", err)
	}
	if opts.Offset > 0 {
		return out.Body, nil
	}
	want := out.Metadata[metaSHA256]
	if len(want) != 64 {
		return out.Body, nil
	}
	return &verifyingReader{body: out.Body, h: sha256.New(), want: want, size: aws.ToInt64(out.ContentLength), name: key, s: s}, nil
}

type verifyingReader struct {
	body io.ReadCloser
	h    hash.Hash
	want string
	size int64
	n    int64
	name string
	s    *Store
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.body.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want || v.n != v.size {
			return n, v.s.fail("get", v.name, "verify", fmt.Errorf("read %d bytes with sha256 %s, recorded %s: %w", v.n, got, v.want, store.ErrIntegrity))
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.body.Close() }

// maxVersionsPerKey is the most versions and delete markers a key may
// have before reads of it fail closed: lifeboat wrote one.
const maxVersionsPerKey = 10 * 1000

// List yields the objects under prefix in key order, each described as Stat
// would: its first version's size, retention and digest (one HEAD per
// object). It lists versions, not current objects, so a key someone hid
// under a delete marker is still listed (and still read: reads pin the
// first version); AuditVersions reports the marker.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[store.ObjectInfo, error] {
	return func(yield func(store.ObjectInfo, error) bool) {
		if err := store.ValidatePrefix(prefix); err != nil {
			yield(store.ObjectInfo{}, fmt.Errorf("s3 store %s: list: %w", s.bucket, err))
			return
		}
		full := s.fullKey(prefix)
		if s.prefix != "" && prefix == "" {
			full = s.prefix + "/"
		}
		strip := ""
		if s.prefix != "" {
			strip = s.prefix + "/"
		}
		// S3 lists versions by key, newest first within a key, and a
		// key's versions may straddle pages: a key is complete when the
		// next key starts or the listing ends.
		var (
			cur              string
			oldest           *types.ObjectVersion
			n, seen, markers int
		)
		emit := func() bool {
			if cur == "" || oldest == nil {
				return true // only delete markers: nothing lifeboat wrote is left
			}
			key := strings.TrimPrefix(cur, strip)
			if store.ValidateKey(key) != nil {
				return true // not written by lifeboat
			}
			if seen > maxVersionsPerKey {
				yield(store.ObjectInfo{}, s.fail("list", prefix, "list versions", fmt.Errorf("%s has more than %d versions and delete markers; lifeboat wrote one: %w", cur, maxVersionsPerKey, store.ErrIntegrity)))
				return false
			}
			hin := &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(cur)}
			if id := aws.ToString(oldest.VersionId); id != "" && !(id == "null" && n == 1 && markers == 0) {
				hin.VersionId = aws.String(id)
			}
			out, err := s.client.HeadObject(ctx, hin)
			if isNotFound(err) {
				return true
			}
			if err != nil {
				yield(store.ObjectInfo{}, s.fail("list", prefix, "head listed object "+key, err))
				return false
			}
			return yield(s.info(key, aws.ToInt64(out.ContentLength), out.LastModified, out.ObjectLockRetainUntilDate, out.Metadata), nil)
		}
		stopped := false
		err := s.versions(ctx, full, s.listPage, func(e versionEntry) error {
			if e.key != cur {
				if !emit() {
					stopped = true
					return errStop
				}
				cur, oldest, n, seen, markers = e.key, nil, 0, 0, 0
			}
			seen++
			if e.v == nil {
				markers++
			} else {
				n++
				oldest = e.v // newest first: the last one seen is the oldest
			}
			return nil
		})
		if stopped {
			return
		}
		if err != nil {
			yield(store.ObjectInfo{}, s.fail("list", prefix, "list versions", err))
			return
		}
		emit()
	}
}

// Delete removes the object's version once its retention has ended. Before
// then it returns store.ErrRetained without sending a delete request.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.ValidateKey(key); err != nil {
		return fmt.Errorf("s3 store %s: delete: %w", s.bucket, err)
	}
	out, err := s.head(ctx, key)
	if err != nil {
		return s.fail("delete", key, "head object", err)
	}
	info := s.info(key, aws.ToInt64(out.ContentLength), out.LastModified, out.ObjectLockRetainUntilDate, out.Metadata)
	if info.RetainUntil.IsZero() {
		return s.fail("delete", key, "check retention", fmt.Errorf("retention unknown, kept forever: %w", store.ErrRetained))
	}
	if now := s.now(); now.Before(info.RetainUntil) {
		return s.fail("delete", key, "check retention", fmt.Errorf("retained until %s: %w", info.RetainUntil.Format(time.RFC3339), store.ErrRetained))
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.fullKey(key)), VersionId: out.VersionId,
	})
	if err != nil {
		if apiCode(err) == "AccessDenied" {
			return s.fail("delete", key, "delete object version", fmt.Errorf("server refused (%w): %w", err, store.ErrRetained))
		}
		return s.fail("delete", key, "delete object version", err)
	}
	return nil
}

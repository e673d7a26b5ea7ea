package job_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	s3store "github.com/lifeboat-dr/lifeboat/internal/store/s3"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestCleanStaleUploads: an upload a killed backup left open in a real S3
// server is aborted once older than store.StaleUploadAge, and one signed
// `cleanup` record names it; nothing is aborted or recorded before.
func TestCleanStaleUploads(t *testing.T) {
	srv := testenv.StartS3(t)
	ctx := context.Background()
	st, err := s3store.New(ctx, s3store.Options{Bucket: "cleanup-test", Prefix: "clinic", Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true,
		LockMode: "COMPLIANCE", Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	c := st.Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("cleanup-test"), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("cleanup-test"), Key: aws.String("clinic/backups/x/artifacts/etcd-snapshot.db")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("cleanup-test"), Key: aws.String("clinic/backups/x/artifacts/etcd-snapshot.db"),
		UploadId: up.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader(make([]byte, 1024))}); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := evidence.NewSigner(priv)
	records := func() []evidence.Record {
		var out []evidence.Record
		if err := evidence.NewLog(st, signer, nil).Backwards(ctx, 10, func(r evidence.Record) bool { out = append(out, r); return true }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if n, err := job.CleanStaleUploads(ctx, st, "offsite", signer, time.Hour, nil, nil); err != nil || n != 0 || len(records()) != 0 {
		t.Fatalf("a fresh upload: aborted %d (%v), %d records", n, err, len(records()))
	}
	later := func() time.Time { return time.Now().Add(store.StaleUploadAge + time.Minute) }
	n, err := job.CleanStaleUploads(ctx, st, "offsite", signer, time.Hour, later, nil)
	if err != nil || n != 1 {
		t.Fatalf("aborted %d (%v), want 1", n, err)
	}
	recs := records()
	if len(recs) != 1 || recs[0].Kind != job.KindCleanup || recs[0].Subject["count"] != int64(1) {
		t.Fatalf("records %+v, want one cleanup record of 1 upload", recs)
	}
	left, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("cleanup-test")})
	if err != nil || len(left.Uploads) != 0 {
		t.Fatalf("uploads left: %+v %v", left, err)
	}
}

// TestSignedBackupPoints: the worst gap's points come from signed backup
// records of the plan that are complete and successful, inside the
// window; the scan stops at the first record appended before it.
func TestSignedBackupPoints(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	rec := func(appended time.Time, plan, status, outcome string, taken time.Time) evidence.Record {
		return evidence.Record{Kind: evidence.KindBackup, Time: appended, Outcome: outcome, Subject: map[string]any{
			"plan": plan, "status": status, "started": taken.Add(-time.Second).Format(time.RFC3339Nano),
			"etcd": map[string]any{"takenAt": taken.Format(time.RFC3339Nano)},
		}}
	}
	log := newestFirst{
		rec(h(0), "cp", "complete", evidence.OutcomeSuccess, h(0)),
		rec(h(-1), "cp", "partial", evidence.OutcomePartial, h(-1)),
		rec(h(-2), "other", "complete", evidence.OutcomeSuccess, h(-2)),
		rec(h(-3), "cp", "complete", evidence.OutcomeSuccess, h(-3)),
		{Kind: evidence.KindBackup, Time: h(-4), Outcome: evidence.OutcomeFailure, Subject: map[string]any{"plan": "cp"}},
		rec(h(-30), "cp", "complete", evidence.OutcomeSuccess, h(-30)), // before the window: the scan stops
		rec(h(-5), "cp", "complete", evidence.OutcomeSuccess, h(-5)),   // never reached
	}
	got, err := job.SignedBackupPoints(context.Background(), log, "cp", h(-24), h(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Equal(h(0)) || !got[1].Equal(h(-3)) {
		t.Fatalf("points %v, want %v and %v", got, h(0), h(-3))
	}
}

type newestFirst []evidence.Record

func (n newestFirst) Backwards(_ context.Context, limit int, fn func(evidence.Record) bool) error {
	for i, r := range n {
		if i >= limit || !fn(r) {
			break
		}
	}
	return nil
}

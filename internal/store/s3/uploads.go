package s3

import (
	"context"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// AbortStaleUploads implements store.UploadJanitor: it lists the multipart
// uploads under the store's prefix and aborts those initiated more than
// olderThan ago. A Put that is killed (SIGKILL, a lost node) leaves its
// upload open: encrypted parts outside any lock or catalog, billed until
// aborted. A running Put's upload is younger than the bound, which must
// exceed the longest Put.
func (s *Store) AbortStaleUploads(ctx context.Context, olderThan time.Duration, now time.Time) ([]store.AbortedUpload, error) {
	prefix := s.prefix
	if prefix != "" {
		prefix += "/"
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)}
	var stale []store.AbortedUpload
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, s.fail("abort stale uploads", prefix, "list multipart uploads", err)
		}
		for _, u := range out.Uploads {
			started := aws.ToTime(u.Initiated)
			if started.IsZero() || now.Sub(started) < olderThan {
				continue
			}
			stale = append(stale, store.AbortedUpload{Key: s.relKey(aws.ToString(u.Key)), UploadID: aws.ToString(u.UploadId), Initiated: started.UTC()})
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	var aborted []store.AbortedUpload
	for _, u := range stale {
		_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.bucket), Key: aws.String(s.fullKey(u.Key)), UploadId: aws.String(u.UploadID),
		})
		if err != nil && apiCode(err) != "NoSuchUpload" {
			return aborted, s.fail("abort stale uploads", u.Key, "abort multipart upload", err)
		}
		s.log.Warn("aborted a multipart upload left open (a Put that did not finish)", "bucket", s.bucket, "key", u.Key, "initiated", u.Initiated)
		aborted = append(aborted, u)
	}
	return aborted, nil
}

// AbortsIncompleteUploads reports whether the bucket has an enabled
// lifecycle rule that aborts incomplete multipart uploads (covering the
// store's prefix): the server-side backstop for uploads no lifeboat run
// is left to clean up.
func (s *Store) AbortsIncompleteUploads(ctx context.Context) (bool, error) {
	out, err := s.client.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		if apiCode(err) == "NoSuchLifecycleConfiguration" {
			return false, nil
		}
		return false, s.fail("check lifecycle", "", "get bucket lifecycle configuration", err)
	}
	for _, r := range out.Rules {
		if r.Status != "Enabled" || r.AbortIncompleteMultipartUpload == nil {
			continue
		}
		p := aws.ToString(r.Prefix)
		if r.Filter != nil && r.Filter.Prefix != nil {
			p = aws.ToString(r.Filter.Prefix)
		}
		if p == "" || strings.HasPrefix(s.prefix+"/", p) {
			return true, nil
		}
	}
	return false, nil
}

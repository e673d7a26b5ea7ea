package s3

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// BucketLock is what a bucket says about versioning and Object Lock.
type BucketLock struct {
	Bucket string `json:"bucket"`
	// Versioning is the bucket's versioning status: Enabled, Suspended or
	// "" (never enabled).
	Versioning string `json:"versioning"`
	// ObjectLock reports whether Object Lock is enabled on the bucket.
	ObjectLock bool `json:"objectLock"`
	// DefaultMode and DefaultRetention are the bucket's default retention
	// rule, if it has one.
	DefaultMode      string        `json:"defaultMode,omitempty"`
	DefaultRetention time.Duration `json:"defaultRetention,omitempty"`
}

// CheckBucket reads the bucket's versioning and Object Lock configuration.
func (s *Store) CheckBucket(ctx context.Context) (BucketLock, error) {
	out := BucketLock{Bucket: s.bucket}
	v, err := s.client.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		return out, fmt.Errorf("s3 store %s: check bucket: get versioning: %w", s.bucket, err)
	}
	out.Versioning = string(v.Status)
	lc, err := s.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		switch apiCode(err) {
		case "ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound", "NoSuchObjectLockConfiguration":
			return out, nil
		}
		return out, fmt.Errorf("s3 store %s: check bucket: get object lock configuration: %w", s.bucket, err)
	}
	if c := lc.ObjectLockConfiguration; c != nil {
		out.ObjectLock = c.ObjectLockEnabled == "Enabled"
		if c.Rule != nil && c.Rule.DefaultRetention != nil {
			d := c.Rule.DefaultRetention
			out.DefaultMode = string(d.Mode)
			out.DefaultRetention = time.Duration(aws.ToInt32(d.Days))*24*time.Hour + time.Duration(aws.ToInt32(d.Years))*365*24*time.Hour
		}
	}
	return out, nil
}

// LockStatus reports the bucket's versioning and Object Lock configuration
// as a store.LockStatus.
func (s *Store) LockStatus(ctx context.Context) (store.LockStatus, error) {
	bl, err := s.CheckBucket(ctx)
	if err != nil {
		return store.LockStatus{}, err
	}
	return store.LockStatus{Versioning: bl.Versioning, Locked: bl.ObjectLock, DefaultMode: bl.DefaultMode, DefaultRetention: bl.DefaultRetention}, nil
}

var _ store.LockChecker = (*Store)(nil)

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	s3store "github.com/lifeboat-dr/lifeboat/internal/store/s3"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// TestStoreCheck runs `lifeboat store check` against versitygw: a locked
// bucket passes, an unlocked one fails unless allowUnlocked is set, and the
// credentials come from the SDK's default chain (the environment).
func TestStoreCheck(t *testing.T) {
	srv := testenv.StartS3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", srv.Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	makeBucket(t, srv, "locked", true)
	makeBucket(t, srv, "unlocked", false)

	dir := t.TempDir()
	cfg := fmt.Sprintf(`apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: locked}
spec:
  type: s3
  bucket: locked
  endpoint: %[1]s
  forcePathStyle: true
  objectLock: {mode: COMPLIANCE, retention: 2190d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: unlocked}
spec:
  type: s3
  bucket: unlocked
  endpoint: %[1]s
  forcePathStyle: true
  objectLock: {mode: COMPLIANCE, retention: 2190d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: unlocked-allowed}
spec:
  type: s3
  bucket: unlocked
  endpoint: %[1]s
  forcePathStyle: true
  allowUnlocked: true
`, srv.Endpoint)
	path := filepath.Join(dir, "stores.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	out, errs, code := run(t, "--config", path, "store", "check", "locked")
	if code != ExitOK || !strings.Contains(out, "PASS") || !strings.Contains(out, "COMPLIANCE 2190d") {
		t.Fatalf("locked: exit %d\n%s\n%s", code, out, errs)
	}

	out, _, code = run(t, "--config", path, "-o", "json", "store", "check", "unlocked")
	var res wire.StoreCheck
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if code == ExitOK || res.Verdict.OK || !strings.Contains(strings.Join(res.Verdict.Problems, " "), "Object Lock is not enabled") {
		t.Fatalf("unlocked: exit %d, %+v", code, res)
	}

	out, _, code = run(t, "--config", path, "store", "check", "unlocked-allowed")
	if code != ExitOK || !strings.Contains(out, "allowUnlocked: true") || !strings.Contains(out, "not immutable") {
		t.Fatalf("unlocked but allowed: exit %d\n%s", code, out)
	}

	if _, _, code := run(t, "--config", path, "store", "check", "nope"); code != ExitUsage {
		t.Fatalf("unknown store: exit %d, want %d", code, ExitUsage)
	}
}

func makeBucket(t *testing.T, srv *testenv.S3, name string, locked bool) {
	t.Helper()
	st, err := s3store.New(context.Background(), s3store.Options{Bucket: name, Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	c := st.Client()
	if _, err := c.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name), ObjectLockEnabledForBucket: aws.Bool(locked)}); err != nil {
		t.Fatal(err)
	}
	if locked {
		if _, err := c.PutObjectLockConfiguration(t.Context(), &s3.PutObjectLockConfigurationInput{Bucket: aws.String(name),
			ObjectLockConfiguration: &types.ObjectLockConfiguration{ObjectLockEnabled: types.ObjectLockEnabledEnabled,
				Rule: &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeCompliance, Years: aws.Int32(6)}}}}); err != nil {
			t.Fatal(err)
		}
	}
}

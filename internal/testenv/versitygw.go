package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"testing"
)

// S3 is a versitygw server with the posix backend: an S3 API with
// versioning and Object Lock, on 127.0.0.1.
type S3 struct {
	*Process
	// Endpoint is the server's URL, e.g. http://127.0.0.1:PORT.
	Endpoint string
	// Region is the region to sign requests for.
	Region string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Root is the posix backend's directory: a bucket's current objects
	// are the files <Root>/<bucket>/<key>, for tests that change stored
	// bytes behind the server's back.
	Root string
}

// StartS3 starts versitygw in a temporary directory.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	return StartS3WithSecret(t, randomSecret(t))
}

// StartS3WithSecret starts versitygw with the root secret key given, so
// that two servers (a primary and a replica region) accept the same
// credentials, as one AWS principal reaches two buckets.
func StartS3WithSecret(t testing.TB, secret string) *S3 {
	t.Helper()
	bin := Binary(t, "versitygw")
	port := FreePort(t)
	root, vdir := tempDir(t, "s3-root"), tempDir(t, "s3-versions")
	s := &S3{Endpoint: "http://" + addr(port), Region: "us-east-1", AccessKey: "lifeboat-test", SecretKey: secret, Root: root}
	args := []string{"--port", addr(port), "--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
		"posix", "--versioning-dir", vdir, root}
	s.Process = startProcess(t, "versitygw", bin, args, nil, t.TempDir(), s.Ready)
	return s
}

// Ready reports whether the server answers HTTP (an unsigned request gets
// an S3 error document, which proves the S3 handler is up).
func (s *S3) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("GET /: %s", resp.Status)
	}
	return nil
}

func randomSecret(t testing.TB) string {
	b := make([]byte, 20)
	rand.Read(b)
	return hex.EncodeToString(b)
}

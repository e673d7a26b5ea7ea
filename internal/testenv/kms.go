package testenv

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
)

// KMS is a local-kms server: the AWS KMS JSON API (X-Amz-Target
// TrentService.*), backed by a database in a temporary directory.
// local-kms does not check request signatures, so any credentials work.
type KMS struct {
	*Process
	// Endpoint is the server's URL, e.g. http://127.0.0.1:PORT.
	Endpoint string
	// Region and AccountID are the ones in the ARNs local-kms makes.
	Region, AccountID string
}

// StartKMS starts local-kms with a fresh database.
//
// local-kms has no option for its listen address: it binds the port on
// all interfaces (":PORT"), not only 127.0.0.1. Tests reach it through
// Endpoint on 127.0.0.1.
func StartKMS(t testing.TB) *KMS {
	t.Helper()
	bin := Binary(t, "local-kms")
	port := FreePort(t)
	dir := tempDir(t, "kms")
	k := &KMS{Endpoint: "http://" + addr(port), Region: "us-east-1", AccountID: "111122223333"}
	env := []string{
		"PORT=" + strconv.Itoa(port),
		"KMS_REGION=" + k.Region,
		"KMS_ACCOUNT_ID=" + k.AccountID,
		"KMS_DATA_PATH=" + filepath.Join(dir, "data"),
		// No seed file: the default, /init/seed.yaml, is outside the test.
		"KMS_SEED_PATH=" + filepath.Join(dir, "no-seed.yaml"),
	}
	k.Process = startProcess(t, "local-kms", bin, nil, env, dir, k.Ready)
	return k
}

// Ready reports whether the KMS API answers: TrentService.ListKeys
// returns 200.
func (k *KMS) Ready(ctx context.Context) error {
	return k.call(ctx, "ListKeys", struct{}{}, nil)
}

// call makes the KMS API call TrentService.<op> with the JSON body in
// and decodes the response into out.
func (k *KMS) call(ctx context.Context, op string, in, out any) error {
	h := http.Header{}
	h.Set("X-Amz-Target", "TrentService."+op)
	h.Set("Content-Type", "application/x-amz-json-1.1")
	return doJSON(ctx, http.DefaultClient, http.MethodPost, k.Endpoint+"/", h, in, out)
}

package rotation_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
	s3store "github.com/lifeboat-dr/lifeboat/internal/store/s3"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestHiddenBackupWithholdsRetirement: on a real S3 server with Object
// Lock, someone puts a delete marker on one backup's manifest. Listings no
// longer show it, so a rotation does not rewrap it; retiring the old KEK
// version would make it unreadable. The rotation withholds retirement,
// naming the key, and the hidden backup still opens with the old version.
func TestHiddenBackupWithholdsRetirement(t *testing.T) {
	srv := testenv.StartS3(t)
	ctx := context.Background()
	st, err := s3store.New(ctx, s3store.Options{Bucket: "rotation-hidden", Prefix: "clinic", Endpoint: srv.Endpoint, Region: srv.Region,
		ForcePathStyle: true, LockMode: "COMPLIANCE", Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	c := st.Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("rotation-hidden"), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	kr, err := local.Create(ctx, local.Options{Path: filepath.Join(t.TempDir(), "keyring.json")}, "test-kek")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, keyring: kr}
	e.backup(t)
	hidden := e.backup(t)
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("rotation-hidden"), Key: aws.String("clinic/" + catalog.ManifestKey(hidden))}); err != nil {
		t.Fatalf("delete marker: %v", err)
	}
	var rr rotation.RunRecord
	err = rotation.RunPolicy(ctx, &rr, rotation.PolicyOptions{
		Stores: []rotation.NamedStore{{Name: "offsite", Store: st}}, Provider: kr,
		Policy: rotation.RetireAfterVerifiedRewrap, Rotate: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rr.Retired) != 0 || !strings.Contains(rr.RetirementWithheld, catalog.ManifestKey(hidden)) {
		t.Fatalf("retired %v, withheld %q; want nothing retired and the hidden manifest named", rr.Retired, rr.RetirementWithheld)
	}
	vs, err := kr.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.State != keys.StateEnabled {
			t.Fatalf("version %s is %s, want every version still enabled", v.Ref, v.State)
		}
	}
	// The hidden backup (read at its first version) still opens.
	m, err := catalog.Read(ctx, st, hidden)
	if err != nil {
		t.Fatal(err)
	}
	dk, _, err := catalog.OpenKey(ctx, st, hidden, m.DataKeyID, kr)
	if err != nil {
		t.Fatalf("the hidden backup no longer opens: %v", err)
	}
	dk.Destroy()
}

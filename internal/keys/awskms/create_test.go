package awskms_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/awskms"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestCreate: Create makes the alias and its first key, tagged as
// version 1; a second Create fails with ErrKeyExists and makes no key;
// an alias made outside lifeboat is refused too (Create never adopts);
// the managed strategy is refused.
func TestCreate(t *testing.T) {
	ctx := context.Background()
	k := testenv.StartKMS(t)
	o := opts(k)
	o.Alias = "alias/lifeboat-create"
	p, err := awskms.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Create(ctx)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !v.Primary || v.State != keys.StateEnabled || v.Ref.Key != o.Alias || v.Ref.Provider != awskms.ProviderType {
		t.Fatalf("created %+v", v)
	}
	c := rawClient(t, k)
	countKeys := func() int {
		out, err := c.ListKeys(ctx, &kms.ListKeysInput{})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Keys)
	}
	n := countKeys()
	_, err = p.Create(ctx)
	if !errors.Is(err, awskms.ErrKeyExists) || !strings.Contains(err.Error(), v.Ref.Version) {
		t.Fatalf("second Create: %v, want ErrKeyExists naming %s", err, v.Ref.Version)
	}
	if countKeys() != n {
		t.Fatal("a refused Create made a KMS key")
	}
	vs, err := p.Versions(ctx)
	if err != nil || len(vs) != 1 || vs[0].Ref != v.Ref {
		t.Fatalf("versions %+v, %v", vs, err)
	}

	// An alias someone else made.
	out, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/by-hand"), TargetKeyId: out.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	o.Alias = "alias/by-hand"
	p2, err := awskms.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Create(ctx); !errors.Is(err, awskms.ErrKeyExists) {
		t.Fatalf("Create on an existing alias: %v", err)
	}

	mo := opts(k)
	mo.KeyID = aws.ToString(out.KeyMetadata.KeyId)
	pm, err := awskms.New(ctx, mo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pm.Create(ctx); err == nil || !strings.Contains(err.Error(), "managed strategy") {
		t.Fatalf("Create with the managed strategy: %v", err)
	}
}

package awskms_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

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

// aliasFault makes CreateAlias and UpdateAlias fail: after doing the
// change (an ambiguous failure: a lost response, a retry answered
// AlreadyExistsException) or without doing it. With describeFails,
// DescribeKey of the alias fails too once an alias call has failed.
type aliasFault struct {
	awskms.API
	applied       bool   // make the change before failing
	thenMoveTo    string // after the change, another rotation moves the alias here
	describeFails bool
	failed        atomic.Bool
}

var errAliasFault = &smithy.GenericAPIError{Code: "KMSInternalException", Message: "injected: the response was lost"}

func (f *aliasFault) CreateAlias(ctx context.Context, in *kms.CreateAliasInput, o ...func(*kms.Options)) (*kms.CreateAliasOutput, error) {
	if f.applied {
		if _, err := f.API.CreateAlias(ctx, in, o...); err != nil {
			return nil, err
		}
	}
	f.failed.Store(true)
	return nil, errAliasFault
}

func (f *aliasFault) UpdateAlias(ctx context.Context, in *kms.UpdateAliasInput, o ...func(*kms.Options)) (*kms.UpdateAliasOutput, error) {
	if f.applied {
		if _, err := f.API.UpdateAlias(ctx, in, o...); err != nil {
			return nil, err
		}
	}
	if f.thenMoveTo != "" {
		if _, err := f.API.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: in.AliasName, TargetKeyId: aws.String(f.thenMoveTo)}, o...); err != nil {
			return nil, err
		}
	}
	f.failed.Store(true)
	return nil, errAliasFault
}

func (f *aliasFault) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, o ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	if f.describeFails && f.failed.Load() && strings.HasPrefix(aws.ToString(in.KeyId), "alias/") {
		return nil, &smithy.GenericAPIError{Code: "KMSInternalException", Message: "injected: describe failed"}
	}
	return f.API.DescribeKey(ctx, in, o...)
}

// TestAliasErrorAmbiguous: when CreateAlias (keys create) or UpdateAlias
// (rotate) fails, the new key is deleted only when the alias provably does
// not point at it: a failure after the change succeeded is a success, and
// when the alias cannot be read back the key is left alone.
func TestAliasErrorAmbiguous(t *testing.T) {
	ctx := context.Background()
	k := testenv.StartKMS(t)
	c := rawClient(t, k)
	keyState := func(id string) types.KeyState {
		t.Helper()
		out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		return out.KeyMetadata.KeyState
	}
	aliasTarget := func(alias string) string {
		t.Helper()
		out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(alias)})
		if err != nil {
			t.Fatalf("alias %s: %v", alias, err)
		}
		return aws.ToString(out.KeyMetadata.KeyId)
	}
	provider := func(alias string, f *aliasFault) *awskms.Provider {
		t.Helper()
		o := opts(k)
		o.Alias = alias
		p, err := awskms.New(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		awskms.SetAPI(p, func(inner awskms.API) awskms.API { f.API = inner; return f })
		return p
	}
	newestKey := func(before map[string]bool) string {
		t.Helper()
		out, err := c.ListKeys(ctx, &kms.ListKeysInput{})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range out.Keys {
			if !before[aws.ToString(k.KeyId)] {
				return aws.ToString(k.KeyId)
			}
		}
		t.Fatal("no new key")
		return ""
	}
	allKeys := func() map[string]bool {
		t.Helper()
		out, err := c.ListKeys(ctx, &kms.ListKeysInput{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, k := range out.Keys {
			m[aws.ToString(k.KeyId)] = true
		}
		return m
	}

	// CreateAlias made the alias, then "failed": Create succeeds.
	p := provider("alias/ambiguous-create", &aliasFault{applied: true})
	v, err := p.Create(ctx)
	if err != nil {
		t.Fatalf("Create with an alias error after the alias was made: %v", err)
	}
	if aliasTarget(p.Key()) != v.Ref.Version || keyState(v.Ref.Version) != types.KeyStateEnabled {
		t.Fatalf("alias targets %s, key %s is %s", aliasTarget(p.Key()), v.Ref.Version, keyState(v.Ref.Version))
	}
	if vs, err := p.Versions(ctx); err != nil || len(vs) != 1 || vs[0].Ref != v.Ref || !vs[0].Primary {
		t.Fatalf("versions %+v, %v", vs, err)
	}

	// UpdateAlias moved the alias, then "failed": Rotate succeeds.
	nv, err := p.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate with an alias error after the alias moved: %v", err)
	}
	if aliasTarget(p.Key()) != nv.Ref.Version || keyState(nv.Ref.Version) != types.KeyStateEnabled {
		t.Fatalf("alias targets %s, new key %s is %s", aliasTarget(p.Key()), nv.Ref.Version, keyState(nv.Ref.Version))
	}
	if vs, err := p.Versions(ctx); err != nil || len(vs) != 2 || vs[1].Ref != nv.Ref || !vs[1].Primary {
		t.Fatalf("versions after rotating %+v, %v", vs, err)
	}

	// CreateAlias really failed: the new key is deleted.
	before := allKeys()
	p = provider("alias/failed-create", &aliasFault{})
	_, err = p.Create(ctx)
	if err == nil || !strings.Contains(err.Error(), "scheduled for deletion") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Create with a failed CreateAlias: %v", err)
	}
	id := newestKey(before)
	if keyState(id) != types.KeyStatePendingDeletion || !strings.Contains(err.Error(), id) {
		t.Fatalf("unused key %s is %s; error %v", id, keyState(id), err)
	}

	// UpdateAlias really failed: the new key is deleted, the alias still
	// targets the old one.
	f := &aliasFault{}
	p = provider("alias/ambiguous-create", f)
	before = allKeys()
	_, err = p.Rotate(ctx)
	if err == nil || !strings.Contains(err.Error(), "scheduled for deletion") || !strings.Contains(err.Error(), nv.Ref.Version) {
		t.Fatalf("Rotate with a failed UpdateAlias: %v", err)
	}
	id = newestKey(before)
	if keyState(id) != types.KeyStatePendingDeletion || aliasTarget(p.Key()) != nv.Ref.Version {
		t.Fatalf("unused key %s is %s, alias targets %s", id, keyState(id), aliasTarget(p.Key()))
	}

	// The move "failed", and the alias now targets a third key: another
	// rotation ran at the same time, the new key may have been primary in
	// between, so it is kept.
	third, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	thirdID := aws.ToString(third.KeyMetadata.KeyId)
	p = provider("alias/ambiguous-create", &aliasFault{applied: true, thenMoveTo: thirdID})
	before = allKeys()
	_, err = p.Rotate(ctx)
	if err == nil || !strings.Contains(err.Error(), "another rotation ran at the same time") {
		t.Fatalf("Rotate racing another rotation: %v", err)
	}
	id = newestKey(before)
	if keyState(id) != types.KeyStateEnabled || !strings.Contains(err.Error(), id) {
		t.Fatalf("new key %s is %s after a concurrent rotation; error %v", id, keyState(id), err)
	}
	if _, err := c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/ambiguous-create"), TargetKeyId: aws.String(nv.Ref.Version)}); err != nil {
		t.Fatal(err)
	}

	// The alias cannot be read back: the new key is left as it is.
	p = provider("alias/ambiguous-create", &aliasFault{applied: true, describeFails: true})
	before = allKeys()
	_, err = p.Rotate(ctx)
	if err == nil {
		t.Fatal("Rotate succeeded although the alias could not be read back")
	}
	t.Logf("ambiguous: %v", err)
	id = newestKey(before)
	if keyState(id) != types.KeyStateEnabled || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "left in place") {
		t.Fatalf("key %s is %s; error %v", id, keyState(id), err)
	}
	if aliasTarget(p.Key()) != id {
		t.Fatalf("alias targets %s, want %s", aliasTarget(p.Key()), id)
	}
}

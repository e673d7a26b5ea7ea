package awskms_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/awskms"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// materialKMS passes every call to local-kms except the ones local-kms
// does not implement for a managed key, which it acts out as AWS KMS
// does: DescribeKey reports CurrentKeyMaterialId, ListKeyRotations lists
// the completed rotations, and RotateKeyOnDemand starts a rotation that
// completes (the material changes and a rotation is listed) only after
// a number of DescribeKey calls, or never.
type materialKMS struct {
	awskms.API
	mu            sync.Mutex
	material      string
	rotations     []types.RotationsListEntry
	rotateCalls   int
	describeCalls int
	// completeAfter: a requested rotation shows after this many further
	// DescribeKey calls; negative: never.
	completeAfter int
	pending       int // DescribeKey calls left until the pending rotation shows; -1 none
	listErr       error
	created       time.Time // when set, the key's CreationDate
	pageSize      int       // ListKeyRotations page size; 0: all in one page
}

func newMaterialKMS(inner awskms.API) *materialKMS {
	return &materialKMS{API: inner, material: "material-1", pending: -1, completeAfter: 2}
}

func (f *materialKMS) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, o ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	out, err := f.API.DescribeKey(ctx, in, o...)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describeCalls++
	if f.pending > 0 {
		f.pending--
	}
	if f.pending == 0 {
		f.pending = -1
		f.material = fmt.Sprintf("material-%d", len(f.rotations)+2)
		f.rotations = append(f.rotations, types.RotationsListEntry{
			KeyId: out.KeyMetadata.KeyId, KeyMaterialId: aws.String(f.material),
			RotationDate: aws.Time(time.Now().UTC()), RotationType: types.RotationTypeOnDemand,
		})
	}
	out.KeyMetadata.CurrentKeyMaterialId = aws.String(f.material)
	if !f.created.IsZero() {
		out.KeyMetadata.CreationDate = aws.Time(f.created)
	}
	return out, nil
}

func (f *materialKMS) RotateKeyOnDemand(ctx context.Context, in *kms.RotateKeyOnDemandInput, o ...func(*kms.Options)) (*kms.RotateKeyOnDemandOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotateCalls++
	f.pending = f.completeAfter
	return &kms.RotateKeyOnDemandOutput{KeyId: in.KeyId}, nil
}

func (f *materialKMS) ListKeyRotations(ctx context.Context, in *kms.ListKeyRotationsInput, o ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	rs := f.rotations
	start := 0
	if m := aws.ToString(in.Marker); m != "" {
		start = int(m[0] - '0')
	}
	end := len(rs)
	if f.pageSize > 0 && start+f.pageSize < end {
		end = start + f.pageSize
	}
	out := &kms.ListKeyRotationsOutput{Rotations: rs[start:end]}
	if end < len(rs) {
		out.Truncated, out.NextMarker = true, aws.String(string(rune('0'+end)))
	}
	return out, nil
}

func (f *materialKMS) counts() (rotate, describe int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rotateCalls, f.describeCalls
}

// newManaged makes a KMS key on local-kms and a managed provider for it
// whose KMS calls go through a materialKMS.
func newManaged(t *testing.T, k *testenv.KMS) (*awskms.Provider, *materialKMS, string) {
	t.Helper()
	ctx := context.Background()
	ck, err := rawClient(t, k).CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(ck.KeyMetadata.KeyId)
	o := opts(k)
	o.KeyID = id
	p, err := awskms.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var f *materialKMS
	awskms.SetAPI(p, func(inner awskms.API) awskms.API { f = newMaterialKMS(inner); return f })
	awskms.SetRotateWait(p, 2*time.Second, time.Millisecond, 20*time.Millisecond)
	return p, f, id
}

// TestManagedCreatedIsLastRotation: a managed key's version is as old as
// its current material: the newest RotationDate in ListKeyRotations (over
// every page), or the key's creation when it was never rotated; an error
// listing rotations fails rather than guessing.
func TestManagedCreatedIsLastRotation(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()

	// Plain local-kms: ListKeyRotations is not implemented (501), so the
	// age is the key's creation.
	ck, err := rawClient(t, k).CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	o := opts(k)
	o.KeyID = aws.ToString(ck.KeyMetadata.KeyId)
	plain, err := awskms.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := plain.Versions(ctx)
	if err != nil {
		t.Fatalf("Versions on local-kms (no ListKeyRotations): %v", err)
	}
	if !vs[0].Created.Equal(aws.ToTime(ck.KeyMetadata.CreationDate)) {
		t.Fatalf("Created %v, want the key's creation %v", vs[0].Created, ck.KeyMetadata.CreationDate)
	}

	p, f, id := newManaged(t, k)
	f.created = time.Now().Add(-400 * 24 * time.Hour).UTC().Truncate(time.Second)
	vs, err = p.Versions(ctx)
	if err != nil || len(vs) != 1 {
		t.Fatalf("Versions: %v, %v", vs, err)
	}
	if !vs[0].Created.Equal(f.created) {
		t.Fatalf("never rotated: Created %v, want the key's creation %v", vs[0].Created, f.created)
	}
	t1 := time.Now().Add(-200 * 24 * time.Hour).UTC().Truncate(time.Second)
	t2 := time.Now().Add(-3 * 24 * time.Hour).UTC().Truncate(time.Second)
	t3 := time.Now().Add(-40 * 24 * time.Hour).UTC().Truncate(time.Second)
	f.rotations = []types.RotationsListEntry{
		{KeyId: aws.String(id), KeyMaterialId: aws.String("m0")}, // the first material: no RotationDate
		{KeyId: aws.String(id), KeyMaterialId: aws.String("m1"), RotationDate: aws.Time(t1), RotationType: types.RotationTypeAutomatic},
		{KeyId: aws.String(id), KeyMaterialId: aws.String("m2"), RotationDate: aws.Time(t3), RotationType: types.RotationTypeOnDemand},
		{KeyId: aws.String(id), KeyMaterialId: aws.String("m3"), RotationDate: aws.Time(t2), RotationType: types.RotationTypeAutomatic},
	}
	f.pageSize = 2 // the newest is on the second page
	vs, err = p.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !vs[0].Created.Equal(t2) {
		t.Fatalf("Created %v, want the newest rotation %v", vs[0].Created, t2)
	}
	if v, err := p.Bootstrap(ctx); err != nil || !v.Created.Equal(t2) {
		t.Fatalf("Bootstrap: %+v, %v; want Created %v", v, err, t2)
	}

	f.listErr = &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized to perform: kms:ListKeyRotations"}
	_, err = p.Versions(ctx)
	if !errors.Is(err, keys.ErrAccessDenied) || !strings.Contains(err.Error(), "kms:ListKeyRotations") || !strings.Contains(err.Error(), id) {
		t.Fatalf("Versions without kms:ListKeyRotations: %v, want ErrAccessDenied naming the permission and the key", err)
	}
	t.Logf("no ListKeyRotations permission: %v", err)
}

// TestManagedEveryHonoured: rotation.every counts from the last rotation
// of the material, not from the key's creation: a key made long ago but
// rotated yesterday is not rotated again by a daily `keys rotate`; once
// the last rotation is older than every, it is.
func TestManagedEveryHonoured(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	p, f, id := newManaged(t, k)
	st, err := fs.Open(ctx, fs.Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	// A key made 400 days ago whose material was rotated yesterday.
	f.created = time.Now().Add(-400 * 24 * time.Hour).UTC()
	f.rotations = []types.RotationsListEntry{{KeyId: aws.String(id), KeyMaterialId: aws.String("material-1"),
		RotationDate: aws.Time(time.Now().Add(-24 * time.Hour).UTC()), RotationType: types.RotationTypeAutomatic}}
	every := 90 * 24 * time.Hour
	res, err := rotation.Run(ctx, rotation.Options{Store: st, Provider: p, Rotate: true, MinAge: every})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := f.counts(); n != 0 || res.Rotated != nil || !strings.Contains(res.NotRotated, "younger than every") {
		t.Fatalf("rotated %d times (result %+v); the material was rotated a day ago", n, res)
	}
	// The last rotation older than every: rotates once, and waits for it.
	f.rotations[0].RotationDate = aws.Time(time.Now().Add(-every - time.Hour).UTC())
	res, err = rotation.Run(ctx, rotation.Options{Store: st, Provider: p, Rotate: true, MinAge: every})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := f.counts(); n != 1 || res.Rotated == nil || res.From.Generation != "material-1" || res.PrimaryGeneration != "material-3" {
		t.Fatalf("rotated %d times, result %+v", n, res)
	}
	// The rotation just made counts: the next run does not rotate.
	res, err = rotation.Run(ctx, rotation.Options{Store: st, Provider: p, Rotate: true, MinAge: every})
	if n, _ := f.counts(); err != nil || n != 1 || res.Rotated != nil {
		t.Fatalf("run after the rotation: rotated %d times, %+v, %v", n, res, err)
	}
}

// TestManagedRotateWaitsForMaterial: RotateKeyOnDemand completes
// asynchronously; Rotate returns only once the key's current material has
// changed, and fails, naming the key, when it does not change in time or
// the caller gives up. A key whose material KMS does not report is not
// rotated at all.
func TestManagedRotateWaitsForMaterial(t *testing.T) {
	k := testenv.StartKMS(t)
	ctx := context.Background()
	p, f, id := newManaged(t, k)
	f.completeAfter = 4
	v, err := p.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rot, desc := f.counts()
	if rot != 1 || v.Generation != "material-2" || v.Ref.Version != id || !v.Primary {
		t.Fatalf("Rotate: %+v after %d RotateKeyOnDemand calls", v, rot)
	}
	if desc < 5 {
		t.Fatalf("Rotate returned after %d DescribeKey calls; the material changed only after the 5th", desc)
	}
	if time.Since(v.Created) > time.Minute {
		t.Fatalf("Created %v: want the new material's rotation time", v.Created)
	}

	// Never completes within the wait.
	f.completeAfter = -1
	awskms.SetRotateWait(p, 100*time.Millisecond, time.Millisecond, 10*time.Millisecond)
	_, err = p.Rotate(ctx)
	if err == nil {
		t.Fatal("Rotate succeeded although the material never changed")
	}
	t.Logf("material unchanged: %v", err)
	for _, want := range []string{id, "material-2", "RotateKeyOnDemand", "--no-rotate"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Rotate error %q does not say %q", err, want)
		}
	}
	if errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("a slow rotation is not unsupported: %v", err)
	}
	// Through rotation.Run: the run fails and reports no rotation.
	st, err := fs.Open(ctx, fs.Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	res, err := rotation.Run(ctx, rotation.Options{Store: st, Provider: p, Rotate: true})
	if err == nil || res.Rotated != nil || res.PrimaryGeneration != "" {
		t.Fatalf("rotation.Run with a rotation that never shows: %+v, %v", res, err)
	}

	// The caller gives up while waiting.
	awskms.SetRotateWait(p, time.Minute, 10*time.Millisecond, 10*time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Rotate(cctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), id) || time.Since(start) > 10*time.Second {
		t.Fatalf("Rotate with the context ending: %v after %v", err, time.Since(start))
	}

	// local-kms reports no CurrentKeyMaterialId: RotateKeyOnDemand is not
	// even called (it would spend the key's allowance for nothing).
	ck, err := rawClient(t, k).CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	o := opts(k)
	o.KeyID = aws.ToString(ck.KeyMetadata.KeyId)
	plain, err := awskms.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	awskms.SetAPI(plain, func(inner awskms.API) awskms.API { return &countRotate{API: inner, n: &calls} })
	_, err = plain.Rotate(ctx)
	if !errors.Is(err, errors.ErrUnsupported) || calls != 0 || !strings.Contains(err.Error(), "CurrentKeyMaterialId") || !strings.Contains(err.Error(), o.KeyID) {
		t.Fatalf("Rotate without a reported material: %v (RotateKeyOnDemand called %d times)", err, calls)
	}
}

// TestManagedRotateNotImplemented: an endpoint that reports the material
// but does not implement RotateKeyOnDemand (local-kms answers 501) fails
// clearly.
func TestManagedRotateNotImplemented(t *testing.T) {
	k := testenv.StartKMS(t)
	p, _, id := newManaged(t, k)
	awskms.SetAPI(p, func(inner awskms.API) awskms.API {
		f := inner.(*materialKMS)
		return &passRotate{materialKMS: f}
	})
	_, err := p.Rotate(context.Background())
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Rotate: %v does not wrap errors.ErrUnsupported", err)
	}
	for _, want := range []string{"RotateKeyOnDemand", "501", id, "alias strategy"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Rotate error %q does not say %q", err, want)
		}
	}
}

// passRotate sends RotateKeyOnDemand on to local-kms.
type passRotate struct{ *materialKMS }

func (f *passRotate) RotateKeyOnDemand(ctx context.Context, in *kms.RotateKeyOnDemandInput, o ...func(*kms.Options)) (*kms.RotateKeyOnDemandOutput, error) {
	return f.materialKMS.API.RotateKeyOnDemand(ctx, in, o...)
}

type countRotate struct {
	awskms.API
	n *int
}

func (f *countRotate) RotateKeyOnDemand(ctx context.Context, in *kms.RotateKeyOnDemandInput, o ...func(*kms.Options)) (*kms.RotateKeyOnDemandOutput, error) {
	*f.n++
	return f.API.RotateKeyOnDemand(ctx, in, o...)
}

package rotation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/rotation"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

func TestRunRecordOutcome(t *testing.T) {
	ok := &rotation.Result{Backups: []rotation.BackupResult{{Backup: "a", Outcome: rotation.OutcomeRewrapped}, {Backup: "b", Outcome: rotation.OutcomeSkipped}}}
	bad := &rotation.Result{Backups: []rotation.BackupResult{{Backup: "c", Outcome: rotation.OutcomeFailed, Err: errors.New("x")}}}
	mixed := &rotation.Result{Backups: []rotation.BackupResult{{Backup: "d", Outcome: rotation.OutcomeRewrapped}, {Backup: "e", Outcome: rotation.OutcomeFailed, Err: errors.New("y")}}}
	for _, tc := range []struct {
		name    string
		rr      rotation.RunRecord
		store   string
		outcome string
	}{
		{"all verified", rotation.RunRecord{Stores: []string{"s1"}, Results: map[string]*rotation.Result{"s1": ok}}, "s1", evidence.OutcomeSuccess},
		{"empty store", rotation.RunRecord{Stores: []string{"s1"}, Results: map[string]*rotation.Result{"s1": {}}}, "s1", evidence.OutcomeSuccess},
		{"run error", rotation.RunRecord{Stores: []string{"s1"}, Results: map[string]*rotation.Result{"s1": ok}, Err: errors.New("retire")}, "s1", evidence.OutcomePartial},
		{"store not reached", rotation.RunRecord{Stores: []string{"s1", "s2"}, Results: map[string]*rotation.Result{"s1": ok}, Err: errors.New("stop")}, "s1", evidence.OutcomePartial},
		{"store not reached, no error", rotation.RunRecord{Stores: []string{"s1", "s2"}, Results: map[string]*rotation.Result{"s1": ok}}, "s1", evidence.OutcomePartial},
		{"other store failed: this one fine, run not", rotation.RunRecord{Stores: []string{"s1", "s2"}, Results: map[string]*rotation.Result{"s1": ok, "s2": bad}}, "s1", evidence.OutcomePartial},
		{"other store failed: the failed one", rotation.RunRecord{Stores: []string{"s1", "s2"}, Results: map[string]*rotation.Result{"s1": ok, "s2": bad}}, "s2", evidence.OutcomeFailure},
		{"some failed", rotation.RunRecord{Stores: []string{"s1"}, Results: map[string]*rotation.Result{"s1": mixed}}, "s1", evidence.OutcomePartial},
		{"nothing reached", rotation.RunRecord{Stores: []string{"s1"}, Err: errors.New("kek")}, "s1", evidence.OutcomeFailure},
		{"no stores", rotation.RunRecord{}, "s1", evidence.OutcomeFailure},
	} {
		if got := tc.rr.Outcome(tc.store); got != tc.outcome {
			t.Errorf("%s: outcome %q, want %q", tc.name, got, tc.outcome)
		}
	}
}

func newSigner(t *testing.T) *evidence.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := evidence.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readRecord reads a stored record back and checks its signature.
func readRecord(t *testing.T, st store.Store, key string) evidence.Record {
	t.Helper()
	rc, err := st.Get(context.Background(), key, store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := evidence.ParseRecord(data)
	if err != nil {
		t.Fatalf("record %s: %v", key, err)
	}
	return r
}

// TestPublishPartialRotation: a real run with one unreadable backup is
// published as partial, naming the backup and its reason, with retirement
// withheld; the log verifies; a clean rerun is published as success.
func TestPublishPartialRotation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	for range 3 {
		e.backup(t)
	}
	bad := e.ids[2]
	corrupt(t, e.root, catalog.KeysPrefix(bad)+envelope.KeyObjectName(ref("1")))
	signer := newSigner(t)

	started := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	res, err := e.run(t, rotation.RetireAfterVerifiedRewrap, true)
	if !errors.Is(err, rotation.ErrIncomplete) {
		t.Fatalf("run: %v", err)
	}
	rr := &rotation.RunRecord{
		ID: "quarterly-20261126T010000Z", Policy: "quarterly", KeyProvider: "local", Provider: "local", Key: "test-kek",
		Stores: []string{"main"}, Started: started, Finished: started.Add(time.Second),
		From: res.From, Rotated: res.Rotated, Primary: res.Primary,
		Results: map[string]*rotation.Result{"main": &res}, RetirePolicy: rotation.RetireAfterVerifiedRewrap,
		Kept: res.Blocked, RetirementWithheld: "1 backup(s) not rewrapped and verified",
	}
	rec, err := rotation.Publish(ctx, rr, rotation.PublishOptions{Store: e.st, StoreName: "main", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	got := readRecord(t, e.st, rec.Key())
	if got.Kind != evidence.KindRotation || got.Outcome != evidence.OutcomePartial || got.ID != rr.ID {
		t.Fatalf("record kind %q outcome %q id %q", got.Kind, got.Outcome, got.ID)
	}
	s := got.Subject
	rot := s["rotation"].(map[string]any)
	if rot["rotated"] != true || rot["from"] != "1" || rot["to"] != "2" || s["provider"] != "local" || s["key"] != "test-kek" {
		t.Fatalf("rotation %v subject %v", rot, s)
	}
	counts := s["counts"].(map[string]any)
	if counts["backups"] != int64(3) || counts["rewrapped"] != int64(2) || counts["verified"] != int64(2) || counts["failed"] != int64(1) || counts["alreadyDone"] != int64(0) {
		t.Fatalf("counts %v", counts)
	}
	failed := s["failed"].([]any)
	if len(failed) != 1 {
		t.Fatalf("failed %v", failed)
	}
	f := failed[0].(map[string]any)
	if f["backup"] != bad || !strings.Contains(f["reason"].(string), bad) {
		t.Fatalf("failed entry %v", f)
	}
	ret := s["retirement"].(map[string]any)
	if len(ret["retired"].([]any)) != 0 || !strings.Contains(ret["withheld"].(string), "not rewrapped") || ret["policy"] != "afterVerifiedRewrap" {
		t.Fatalf("retirement %v", ret)
	}
	kept := ret["kept"].([]any)
	if len(kept) != 1 || kept[0].(map[string]any)["version"] != "1" {
		t.Fatalf("kept %v", kept)
	}

	// A run that fails before any backup (the KEK cannot be read) is a
	// failure, never a success.
	rr2 := &rotation.RunRecord{ID: "quarterly-20261126T010500Z", Policy: "quarterly", Stores: []string{"main"},
		Started: started, Finished: started, Results: map[string]*rotation.Result{},
		NotRotatedReason: "the key provider could not be opened", Err: errors.New("awskms: list versions of awskms:alias/x: NotFoundException")}
	rec2, err := rotation.Publish(ctx, rr2, rotation.PublishOptions{Store: e.st, StoreName: "main", Signer: signer})
	if err != nil || rec2.Outcome != evidence.OutcomeFailure || rec2.Subject["error"] == "" {
		t.Fatalf("failure record %+v, %v", rec2, err)
	}
	if r := rec2.Subject["rotation"].(map[string]any); r["rotated"] != false || !strings.HasPrefix(r["reason"].(string), "not rotated: ") {
		t.Fatalf("failure rotation %v", r)
	}

	vr, err := evidence.NewLog(e.st, nil, nil).Verify(ctx, signer.PublicKey())
	if err != nil || vr.Records != 2 || vr.Outcomes[evidence.OutcomeSuccess] != 0 {
		t.Fatalf("verify: %+v, %v", vr, err)
	}
	// Version 1 still enabled: the partial run retired nothing.
	if e.versionStates(t)["1"] != keys.StateEnabled {
		t.Fatal("version 1 retired by a partial run")
	}
}

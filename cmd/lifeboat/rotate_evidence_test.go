package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
)

// TestKeysRotatePartialEvidence: with one backup's only key object
// unreadable, `keys rotate` rewraps the other two, exits 1, retires
// nothing, and records a partial run naming the backup and the reason.
func TestKeysRotatePartialEvidence(t *testing.T) {
	s := newRotateSetup(t)
	ids := s.backups(t, 3)
	bad := ids[1]
	key := catalog.KeysPrefix(bad) + envelope.KeyObjectName(keys.Ref{Provider: local.ProviderType, Key: "clinic-kek", Version: "1"})
	p := filepath.Join(s.storeRoot, "objects", filepath.FromSlash(key))
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}

	out, errs, code := run(t, "--config", s.config, "-o", "json", "keys", "rotate", "quarterly", "--signing-key", s.signingKey)
	if code != ExitError {
		t.Fatalf("keys rotate with a broken key object: exit %d, want %d\n%s\n%s", code, ExitError, out, errs)
	}
	var res rotateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if res.Outcome != evidence.OutcomePartial || len(res.Stores) != 1 || len(res.Stores[0].Rewrapped) != 2 || len(res.Stores[0].Failed) != 1 {
		t.Fatalf("result %+v", res)
	}
	if st := s.versionStates(t); st["1"] != keys.StateEnabled {
		t.Fatalf("versions %v: version 1 retired by a partial run", st)
	}
	recs := s.rotationRecords(t)
	if len(recs) != 1 {
		t.Fatalf("%d rotation records, want 1", len(recs))
	}
	r := recs[0]
	c := r.Subject["counts"].(map[string]any)
	if r.Outcome != evidence.OutcomePartial || c["rewrapped"] != int64(2) || c["verified"] != int64(2) || c["failed"] != int64(1) {
		t.Fatalf("record outcome %s counts %v", r.Outcome, c)
	}
	f := r.Subject["failed"].([]any)
	if len(f) != 1 || f[0].(map[string]any)["backup"] != bad || !strings.Contains(f[0].(map[string]any)["reason"].(string), key) {
		t.Fatalf("failed %v, want %s with a reason naming %s", f, bad, key)
	}
	ret := r.Subject["retirement"].(map[string]any)
	if len(ret["retired"].([]any)) != 0 || !strings.Contains(ret["withheld"].(string), "1 backup(s) not rewrapped") {
		t.Fatalf("retirement %v", ret)
	}
	rot := r.Subject["rotation"].(map[string]any)
	if rot["rotated"] != true || rot["from"] != "1" || rot["to"] != "2" || r.Subject["provider"] != "local" || r.Subject["key"] != "clinic-kek" {
		t.Fatalf("subject %v", r.Subject)
	}
}

// TestKeysRotateEvery: with rotation.every longer than the primary's age,
// no version is made; backups are verified under the current one and the
// record says why it did not rotate, with outcome success.
func TestKeysRotateEvery(t *testing.T) {
	s := newRotateSetup(t)
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "spec: {type: local, keyring: "+strconv.Quote(s.keyring)+"}",
		"spec: {type: local, keyring: "+strconv.Quote(s.keyring)+", rotation: {every: 90d}}", 1))
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	s.backups(t, 2)
	out, errs, code := run(t, "--config", s.config, "keys", "rotate", "quarterly", "--signing-key", s.signingKey)
	if code != ExitOK || !strings.Contains(out, "younger than every") {
		t.Fatalf("keys rotate: exit %d\n%s\n%s", code, out, errs)
	}
	if st := s.versionStates(t); len(st) != 1 {
		t.Fatalf("versions %v: rotated although the primary is younger than every", st)
	}
	recs := s.rotationRecords(t)
	if len(recs) != 1 || recs[0].Outcome != evidence.OutcomeSuccess {
		t.Fatalf("records %+v", recs)
	}
	if !regexp.MustCompile(`^quarterly-\d{8}T\d{6}Z-[0-9a-f]{4}$`).MatchString(recs[0].ID) || !strings.Contains(out, recs[0].ID) {
		t.Fatalf("record ID %q: want quarterly-<time>-<4 hex>, shown in the output:\n%s", recs[0].ID, out)
	}
	rot := recs[0].Subject["rotation"].(map[string]any)
	c := recs[0].Subject["counts"].(map[string]any)
	if rot["rotated"] != false || !strings.HasPrefix(rot["reason"].(string), "not rotated: current version") || c["alreadyDone"] != int64(2) || c["verified"] != int64(2) {
		t.Fatalf("rotation %v counts %v", rot, c)
	}
}

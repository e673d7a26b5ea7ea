package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

var update = flag.Bool("update", false, "rewrite the positive test vectors in testdata/")

var (
	vectorTick  = time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC)
	vectorClaim = Claim{
		Schedule: "nightly-control-plane", Tick: vectorTick,
		Target:   Target{Kind: config.KindBackupPlan, Name: "control-plane"},
		Decision: DecisionRun, Claimant: "lifeboat-7d9c5b6f4-x2k8q",
		ClaimedAt: time.Date(2026, 11, 29, 2, 0, 3, 250_000_000, time.UTC),
	}
	vectorOutcome = Outcome{
		Schedule: "nightly-control-plane", Tick: vectorTick,
		Target: Target{Kind: config.KindBackupPlan, Name: "control-plane"},
		Status: StatusRan, Outcome: evidence.OutcomeSuccess,
		Run: "control-plane-20261129T020003Z-7f3a", Record: "evidence/00000000000000000042-backup-control-plane-20261129T020003Z-7f3a.json",
		Writer: "lifeboat-7d9c5b6f4-x2k8q", SettledAt: time.Date(2026, 11, 29, 2, 1, 17, 0, time.UTC),
	}
)

// TestRunObjectVectors: the claim and outcome of docs/format.md §7.5
// encode to the bytes in testdata/ and their SHA-256, and parse back to
// the same values.
func TestRunObjectVectors(t *testing.T) {
	for _, v := range []struct {
		file   string
		encode func() ([]byte, error)
		parse  func([]byte) (any, error)
		want   any
	}{
		{"claim.json", func() ([]byte, error) { return EncodeClaim(vectorClaim) },
			func(b []byte) (any, error) { return ParseClaim(b) }, withFormat(vectorClaim)},
		{"outcome.json", func() ([]byte, error) { return EncodeOutcome(vectorOutcome) },
			func(b []byte) (any, error) { return ParseOutcome(b) }, withFormat(vectorOutcome)},
	} {
		t.Run(v.file, func(t *testing.T) {
			got, err := v.encode()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", v.file)
			sum := sha256.Sum256(got)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+".sha256", []byte(hex.EncodeToString(sum[:])+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatalf("encoding differs from %s:\n got %s\nwant %s", path, got, want)
			}
			wantSum, err := os.ReadFile(path + ".sha256")
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(sum[:]) != strings.TrimSpace(string(wantSum)) {
				t.Fatalf("SHA-256 %x, want %s", sum, wantSum)
			}
			parsed, err := v.parse(want)
			if err != nil {
				t.Fatal(err)
			}
			if !equalRunObject(parsed, v.want) {
				t.Fatalf("parsed %+v, want %+v", parsed, v.want)
			}
		})
	}
}

func withFormat(v any) any {
	switch x := v.(type) {
	case Claim:
		x.Format = ClaimFormat
		return x
	case Outcome:
		x.Format = OutcomeFormat
		return x
	}
	return v
}

func equalRunObject(a, b any) bool {
	ea, err1 := evidence.MarshalCanonical(a)
	eb, err2 := evidence.MarshalCanonical(b)
	return err1 == nil && err2 == nil && string(ea) == string(eb)
}

// TestRunObjectNegative: every file in testdata/negative/ is refused, and
// the error names what is wrong (the file's first line after "#" is not
// allowed in JSON, so the expectation is kept here).
func TestRunObjectNegative(t *testing.T) {
	want := map[string]string{
		"claim-unknown-field.json":            "unknown field",
		"claim-fractional-tick.json":          "whole second",
		"claim-bad-decision.json":             "decision",
		"claim-skip-no-reason.json":           "reason",
		"claim-bad-target.json":               "target",
		"claim-trailing.json":                 "trailing",
		"outcome-missed-success.json":         "failure",
		"outcome-bad-status.json":             "status",
		"outcome-no-writer.json":              "writer",
		"outcome-wrong-format.json":           "format",
		"outcome-unknown-field.json":          "unknown field",
		"outcome-fractional-tick.json":        "whole second",
		"claim-unknown-reason.json":           "not a reason lifeboat skips",
		"outcome-missed-unknown-reason.json":  "not a reason lifeboat misses",
		"outcome-abandoned-other-reason.json": "abandoned tick's reason",
		"outcome-success-reason.json":         "must be empty for a run that succeeded",
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "negative"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%d negative vectors, want %d", len(entries), len(want))
	}
	for _, e := range entries {
		sub, ok := want[e.Name()]
		if !ok {
			t.Fatalf("negative vector %s has no expectation", e.Name())
		}
		data, err := os.ReadFile(filepath.Join("testdata", "negative", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(e.Name(), "claim-") {
			_, err = ParseClaim(data)
		} else {
			_, err = ParseOutcome(data)
		}
		if err == nil || !strings.Contains(err.Error(), sub) {
			t.Errorf("%s: err %v, want one naming %q", e.Name(), err, sub)
		}
	}
}

// TestPutOnce: the first writer of a key wins; a second writer with other
// bytes loses and changes nothing; a writer finding its own bytes (a retry
// after a lost reply) wins.
func TestPutOnce(t *testing.T) {
	ctx := context.Background()
	st, err := fs.Open(ctx, fs.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	retain := time.Now().Add(time.Hour)
	a, _ := EncodeClaim(vectorClaim)
	other := vectorClaim
	other.Claimant = "lifeboat-other"
	b, _ := EncodeClaim(other)
	key := ClaimKey(vectorClaim.Schedule, vectorClaim.Tick)
	for i, step := range []struct {
		data []byte
		won  bool
	}{{a, true}, {b, false}, {a, true}} {
		won, err := putOnce(ctx, st, key, step.data, retain)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if won != step.won {
			t.Fatalf("step %d: won %v, want %v", i, won, step.won)
		}
	}
	got, err := readRunObject(ctx, st, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(a) {
		t.Fatalf("stored %s, want the first writer's %s", got, a)
	}
}

func TestParseRunKey(t *testing.T) {
	for _, c := range []struct {
		key         string
		tick        time.Time
		outcome, ok bool
	}{
		{"runs/s/20261129T020000Z.json", vectorTick, false, true},
		{"runs/s/20261129T020000Z.outcome.json", vectorTick, true, true},
		{"runs/s/20261129T020000Z.txt", time.Time{}, false, false},
		{"runs/s2/20261129T020000Z.json", time.Time{}, false, false},
		{"runs/s/2026-11-29.json", time.Time{}, false, false},
		{"runs/s/sub/20261129T020000Z.json", time.Time{}, false, false},
	} {
		tick, outcome, ok := parseRunKey("s", c.key)
		if ok != c.ok || outcome != c.outcome || !tick.Equal(c.tick) {
			t.Errorf("parseRunKey(%q) = %v, %v, %v; want %v, %v, %v", c.key, tick, outcome, ok, c.tick, c.outcome, c.ok)
		}
	}
}

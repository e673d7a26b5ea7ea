package evidence

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuditSegmentVector checks the test vector of docs/format.md §8.6: a
// segment record signed by the Ed25519 key whose seed is 00 01 … 1f
// (Ed25519 signatures are deterministic, so the bytes are fixed).
func TestAuditSegmentVector(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	s, err := NewSigner(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	rec := AuditSegment{
		Log: "apiserver", Stream: "lifeboat-0", Seq: 2, Prev: strings.Repeat("ab", 32), Segment: "0000000002-1f2e3d4c",
		Events: 3, FirstEvent: at, LastEvent: at.Add(2 * time.Second), WALFirst: 4, WALLast: 6, WALID: "5e1f0c2a9b3d4e6f",
		PlaintextSize: 1477, PlaintextSHA256: strings.Repeat("01", 32), CiphertextSize: 1210, CiphertextSHA256: strings.Repeat("02", 32),
		DataKeyID: strings.Repeat("0f", 16), Keys: []string{"local-1-3a5b7c9d1e2f.json"}, SealedAt: at.Add(5 * time.Minute),
	}
	data, err := s.SignAuditSegment(rec)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "audit-segment.json")
	if os.Getenv("LIFEBOAT_UPDATE_VECTORS") != "" {
		os.WriteFile(path, data, 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(data) {
		t.Fatalf("signing the vector's fields gives\n%s\nnot testdata's\n%s", data, want)
	}
	got, err := ParseAuditSegment(want, s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 2 || got.WALLast != 6 || got.Keys[0] != rec.Keys[0] || !got.SealedAt.Equal(rec.SealedAt) {
		t.Fatalf("parsed %+v", got)
	}
	// Negative: every change fails, naming what is wrong.
	other, _ := NewSigner(ed25519.NewKeyFromSeed(make([]byte, 32)))
	for _, tc := range []struct{ name, from, to, want string }{
		{"sizes changed", `"ciphertextSize":1210`, `"ciphertextSize":1211`, "signature"},
		{"unknown field", `"events":3,`, `"events":3,"extra":1,`, "extra"},
		{"not canonical", `"events":3,`, `"events": 3,`, "byte"},
		{"wrong format", `audit-segment/v1`, `audit-segment/v2`, "format"},
	} {
		bad := strings.Replace(string(want), tc.from, tc.to, 1)
		if bad == string(want) {
			t.Fatalf("%s: %q not in the vector", tc.name, tc.from)
		}
		if _, err := ParseAuditSegment([]byte(bad), s.PublicKey()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error about %s", tc.name, err, tc.want)
		}
	}
	if _, err := ParseAuditSegment(want, other.PublicKey()); err == nil || !strings.Contains(err.Error(), "not one of the trusted keys") {
		t.Errorf("untrusted signer: %v", err)
	}
	if _, err := ParseAuditSegment(want); err == nil {
		t.Error("parsed with no trusted key")
	}
	// Invalid records are not signed.
	bad := rec
	bad.WALLast = 7
	if _, err := s.SignAuditSegment(bad); err == nil || !strings.Contains(err.Error(), "walLast") {
		t.Errorf("walLast inconsistent with events: %v", err)
	}
}

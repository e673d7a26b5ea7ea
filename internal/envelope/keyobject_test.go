package envelope_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
)

func keyring(t *testing.T) *local.Keyring {
	t.Helper()
	k, err := local.Create(context.Background(), local.Options{Path: filepath.Join(t.TempDir(), "k.json")}, "kek")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyObjectRoundTrip(t *testing.T) {
	ctx := context.Background()
	kr := keyring(t)
	dk := newKey(t)
	now := time.Date(2026, 11, 25, 1, 2, 3, 0, time.UTC)
	ko, err := envelope.SealKey(ctx, kr, "b1", dk, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ko.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, dk.Bytes()) {
		t.Fatal("key object holds the plaintext key")
	}
	back, err := envelope.ReadKeyObject(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	got, err := envelope.OpenKey(ctx, kr, "b1", back)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != dk.ID() || !bytes.Equal(got.Bytes(), dk.Bytes()) {
		t.Fatal("OpenKey returned another key")
	}
	if back.Name() != "local-1-"+back.Name()[len("local-1-"):] || !strings.HasSuffix(back.Name(), ".json") {
		t.Fatalf("name %q", back.Name())
	}
}

func TestKeyObjectBoundToBackup(t *testing.T) {
	ctx := context.Background()
	kr := keyring(t)
	ko, err := envelope.SealKey(ctx, kr, "b1", newKey(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Copied unchanged into backup b2's keys/: refused before unwrapping.
	if _, err := envelope.OpenKey(ctx, kr, "b2", ko); !errors.Is(err, envelope.ErrKeyObject) {
		t.Fatalf("key object copied to another backup: got %v, want ErrKeyObject", err)
	}
	// Copied and edited to name b2: the wrap context no longer matches.
	ko.Backup = "b2"
	if _, err := envelope.OpenKey(ctx, kr, "b2", ko); !errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("key object edited to name another backup: got %v, want ErrUnwrap", err)
	}
}

func TestKeyObjectWrongID(t *testing.T) {
	ctx := context.Background()
	kr := keyring(t)
	ko, _ := envelope.SealKey(ctx, kr, "b1", newKey(t), time.Now())
	ko.DataKeyID = newKey(t).ID()
	if _, err := envelope.OpenKey(ctx, kr, "b1", ko); !errors.Is(err, envelope.ErrWrongKey) {
		t.Fatalf("got %v, want ErrWrongKey", err)
	}
}

func TestKeyObjectRetiredVersionNamed(t *testing.T) {
	ctx := context.Background()
	kr := keyring(t)
	ko, _ := envelope.SealKey(ctx, kr, "b1", newKey(t), time.Now())
	if _, err := kr.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := kr.Retire(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	_, err := envelope.OpenKey(ctx, kr, "b1", ko)
	if !errors.Is(err, keys.ErrVersionRetired) || !strings.Contains(err.Error(), "local:kek@1") || !strings.Contains(err.Error(), `"b1"`) {
		t.Fatalf("got %v, want ErrVersionRetired naming local:kek@1 and the backup", err)
	}
}

func TestReadKeyObjectRejects(t *testing.T) {
	ctx := context.Background()
	ko, _ := envelope.SealKey(ctx, keyring(t), "b1", newKey(t), time.Now())
	good, _ := ko.Marshal()
	for name, b := range map[string]string{
		"format":    strings.Replace(string(good), "key-object/v1", "key-object/v2", 1),
		"unknown":   strings.Replace(string(good), `"format"`, `"x":1,"format"`, 1),
		"trailing":  string(good) + "{}",
		"no kek":    strings.Replace(string(good), `"provider": "local"`, `"provider": ""`, 1),
		"bad id":    strings.Replace(string(good), ko.DataKeyID, "nothex", 1),
		"not json":  "[",
		"huge":      strings.Repeat(" ", 70<<10) + string(good),
		"no backup": strings.Replace(string(good), `"backup": "b1"`, `"backup": ""`, 1),
		"upper id":  strings.Replace(string(good), ko.DataKeyID, strings.ToUpper(ko.DataKeyID), 1),
	} {
		if _, err := envelope.ReadKeyObject(strings.NewReader(b)); !errors.Is(err, envelope.ErrKeyObject) {
			t.Errorf("%s: got %v, want ErrKeyObject", name, err)
		}
	}
}

func TestKeyObjectName(t *testing.T) {
	a := envelope.KeyObjectName(keys.Ref{Provider: "awskms", Key: "arn:aws:kms:us-east-1:1:key/abc", Version: "arn:aws:kms:us-east-1:1:key/abc"})
	b := envelope.KeyObjectName(keys.Ref{Provider: "awskms", Key: "arn:aws:kms:us-east-1:1:key/abd", Version: "arn:aws:kms:us-east-1:1:key/abc"})
	if a == b {
		t.Fatal("names of different KEK references collide")
	}
	if a != envelope.KeyObjectName(keys.Ref{Provider: "awskms", Key: "arn:aws:kms:us-east-1:1:key/abc", Version: "arn:aws:kms:us-east-1:1:key/abc"}) {
		t.Fatal("name is not deterministic")
	}
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			t.Fatalf("name %q has %q", a, c)
		}
	}
}

// TestKeyObjectNameAt: no generation gives the name every existing key
// object has (same shape, so the rule cannot drift); a generation
// gives another name, deterministic, different per generation.
func TestKeyObjectNameAt(t *testing.T) {
	ref := keys.Ref{Provider: "local", Key: "clinic-kek", Version: "1"}
	legacy := envelope.KeyObjectName(ref)
	if got := envelope.KeyObjectNameAt(ref, ""); got != legacy {
		t.Fatalf("empty generation: %q, want the plain name %q", got, legacy)
	}
	if !regexp.MustCompile(`^local-1-[0-9a-f]{12}\.json$`).MatchString(legacy) {
		t.Fatalf("plain name %q changed shape", legacy)
	}
	g1 := envelope.KeyObjectNameAt(ref, "material-1")
	g2 := envelope.KeyObjectNameAt(ref, "material-2")
	if g1 == legacy || g1 == g2 || g1 != envelope.KeyObjectNameAt(ref, "material-1") {
		t.Fatalf("generation names: legacy %q, g1 %q, g2 %q", legacy, g1, g2)
	}
	if !strings.HasPrefix(g1, strings.TrimSuffix(legacy, ".json")+"-g") || !strings.HasSuffix(g1, ".json") {
		t.Fatalf("generation name %q does not extend %q", g1, legacy)
	}
}

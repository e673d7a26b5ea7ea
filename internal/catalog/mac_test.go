package catalog_test

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

var update = flag.Bool("update", false, "rewrite the manifest MAC test vector")

// vectorKey is the test vector's data key: bytes 00 01 … 1f.
func vectorKey(t *testing.T) envelope.DataKey {
	t.Helper()
	b := make([]byte, envelope.DataKeySize)
	for i := range b {
		b[i] = byte(i)
	}
	dk, err := envelope.DataKeyFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return dk
}

func vectorManifest() catalog.Manifest {
	t0 := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	return catalog.Manifest{
		Format: catalog.ManifestFormat, Backup: "control-plane-20261125T020000Z-7f3a", Plan: "control-plane",
		Status: catalog.StatusComplete, Started: t0, Completed: t0.Add(42 * time.Second), RetainUntil: t0.Add(2190 * 24 * time.Hour),
		KEK: keys.Ref{Provider: "local", Key: "demo-kek", Version: "1"}, DataKeyID: strings.Repeat("0f", 16),
		Artifacts: []catalog.Artifact{{
			Name: catalog.ArtifactEncryptionConfig, Source: catalog.SourceEncryptionConfig, Compression: "zstd",
			PlaintextSize: 261, PlaintextSHA256: strings.Repeat("ab", 32), CiphertextSize: 569, CiphertextSHA256: strings.Repeat("cd", 32),
		}},
		Lifeboat: catalog.Lifeboat{Version: "test"},
	}
}

// TestManifestMACVector: docs/format.md §6's test vector. The manifest key
// is HKDF-SHA256 of the data key with the manifest info; the sealed
// manifest encodes to testdata/manifest-mac/manifest.json, whose MAC is in
// mac.hex, and checks.
func TestManifestMACVector(t *testing.T) {
	dk := vectorKey(t)
	mk, err := hkdf.Key(sha256.New, dk.Bytes(), nil, catalog.ManifestMACInfo, 32)
	if err != nil {
		t.Fatal(err)
	}
	m := vectorManifest()
	if err := m.Seal(dk); err != nil {
		t.Fatal(err)
	}
	got, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "manifest-mac")
	if *update {
		os.WriteFile(filepath.Join(dir, "manifest.json"), got, 0o644)
		os.WriteFile(filepath.Join(dir, "manifest-key.hex"), []byte(hex.EncodeToString(mk)+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "mac.hex"), []byte(m.MAC+"\n"), 0o644)
	}
	want, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("sealed manifest differs from the vector:\n got %s\nwant %s", got, want)
	}
	for file, v := range map[string]string{"manifest-key.hex": hex.EncodeToString(mk), "mac.hex": m.MAC} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(b)) != v {
			t.Fatalf("%s: got %s, want %s", file, v, b)
		}
	}
	decoded, err := catalog.Decode(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if err := decoded.CheckMAC(dk); err != nil {
		t.Fatalf("the vector does not check: %v", err)
	}
}

// TestManifestMACDetectsChanges: a real backup's manifest, changed the
// way someone who can write the store but not unwrap the data key would
// (the forged point in time of issue 11, a digest, the status, the key
// ID), still decodes, but its MAC fails under the data key, naming the
// manifest. Whitespace is harmless by construction: the MAC input is the
// decoded manifest encoded again.
func TestManifestMACDetectsChanges(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	m := e.backup(t, testStart())
	dk, _, err := catalog.OpenKey(ctx, e.st, m.Backup, m.DataKeyID, e.keyring)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	good, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(fn func(map[string]any)) []byte {
		var v map[string]any
		if err := json.Unmarshal(good, &v); err != nil {
			t.Fatal(err)
		}
		fn(v)
		b, _ := json.Marshal(v)
		return b
	}
	// Six hours, not issue 11's six days: the test plan keeps a day.
	later := func(s any) string {
		tt, _ := time.Parse(time.RFC3339Nano, s.(string))
		return tt.Add(6 * time.Hour).Format(time.RFC3339Nano)
	}
	for name, b := range map[string][]byte{
		"point in time six hours on": edit(func(v map[string]any) {
			v["started"], v["completed"] = later(v["started"]), later(v["completed"])
		}),
		"artifact digest": edit(func(v map[string]any) {
			v["artifacts"].([]any)[0].(map[string]any)["ciphertextSHA256"] = strings.Repeat("00", 32)
		}),
		"retention": edit(func(v map[string]any) { v["retainUntil"] = later(v["retainUntil"]) }),
		"version":   edit(func(v map[string]any) { v["lifeboat"] = map[string]any{"version": "9.9.9"} }),
		"mac":       edit(func(v map[string]any) { v["mac"] = strings.Repeat("00", 32) }),
	} {
		forged, err := catalog.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: the forgery does not even decode (%v); the test needs one that does", name, err)
		}
		err = forged.CheckMAC(dk)
		if !errors.Is(err, catalog.ErrVerification) || !strings.Contains(err.Error(), catalog.ManifestKey(m.Backup)) {
			t.Errorf("%s: CheckMAC = %v, want ErrVerification naming the manifest", name, err)
		}
	}
	compact := edit(func(map[string]any) {})
	same, err := catalog.Decode(bytes.NewReader(compact))
	if err != nil {
		t.Fatal(err)
	}
	if err := same.CheckMAC(dk); err != nil {
		t.Fatalf("re-indented manifest: %v, want its MAC to hold", err)
	}
	other, _ := envelope.NewDataKey()
	if err := m.CheckMAC(other); !errors.Is(err, catalog.ErrVerification) {
		t.Fatalf("CheckMAC with another data key = %v, want ErrVerification", err)
	}
}

package backup_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
)

// TestAlsoWrap: a backup wrapped for a second key provider stores one key
// object per provider, names the second in the manifest's alsoWrapped,
// and opens through either provider alone. Two providers whose keys share
// a reference are refused before any object is written.
func TestAlsoWrap(t *testing.T) {
	ctx := testContext(t)
	f := newFixture(t)
	dir := t.TempDir()
	enc := filepath.Join(dir, "enc.yaml")
	if err := os.WriteFile(enc, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := plan("clinic", config.Source{EncryptionConfig: &config.EncryptionConfigSource{File: enc}})
	glass, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "glass.json")}, "breakglass-kek")
	if err != nil {
		t.Fatal(err)
	}
	m, err := backup.Run(ctx, backup.Options{Plan: p, Store: f.st, Keys: f.keyring, AlsoWrap: []envelope.Wrapper{glass}})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.AlsoWrapped) != 1 || m.AlsoWrapped[0].Key != "breakglass-kek" {
		t.Fatalf("alsoWrapped %v", m.AlsoWrapped)
	}
	for _, u := range []envelope.Unwrapper{f.keyring, glass} {
		dk, _, err := catalog.OpenKey(ctx, f.st, m.Backup, m.DataKeyID, u)
		if err != nil {
			t.Fatalf("open through one provider: %v", err)
		}
		if err := m.CheckMAC(dk); err != nil {
			t.Fatal(err)
		}
		dk.Destroy()
	}

	twin, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "twin.json")}, "test-kek")
	if err != nil {
		t.Fatal(err)
	}
	before := objects(t, f.st)
	_, err = backup.Run(ctx, backup.Options{Plan: p, Store: f.st, Keys: f.keyring, AlsoWrap: []envelope.Wrapper{twin}})
	if err == nil || !strings.Contains(err.Error(), "same key reference") {
		t.Fatalf("two providers with one key reference: %v", err)
	}
	if after := objects(t, f.st); len(after) != len(before) {
		t.Fatalf("a refused backup wrote %d objects", len(after)-len(before))
	}
}

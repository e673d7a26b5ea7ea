package catalog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

func TestID(t *testing.T) {
	at := time.Date(2026, 11, 25, 2, 0, 0, 123, time.FixedZone("X", 3600))
	id, err := catalog.NewID("control-plane", at)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "control-plane-20261125T010000Z-") || len(id) != len("control-plane-20261125T010000Z-7f3a") {
		t.Fatalf("NewID = %q", id)
	}
	plan, ts, err := catalog.ParseID(id)
	if err != nil || plan != "control-plane" || !ts.Equal(at.Truncate(time.Second)) {
		t.Fatalf("ParseID(%q) = %q, %v, %v", id, plan, ts, err)
	}
	for _, bad := range []string{
		"", "plan", "-20261125T010000Z-7f3a", "plan-20261125T010000Z-7F3A", "plan-20261125T010000Z-7f3",
		"plan-20261125T250000Z-7f3a", "plan_20261125T010000Z-7f3a", "pl/an-20261125T010000Z-7f3a", "plan--20261125T010000Z-7f3a",
	} {
		if _, _, err := catalog.ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

func TestPrefixOf(t *testing.T) {
	for key, want := range map[string]string{
		"/registry/secrets/clinic/db":                  "/registry/secrets/",
		"/registry/deployments/ehr/api":                "/registry/deployments/",
		"/registry/namespaces/ehr":                     "/registry/namespaces/",
		"/registry/ranges/serviceips":                  "/registry/ranges/",
		"/registry/health":                             "/registry/health",
		"compact_rev_key":                              "compact_rev_key",
		"/registry/apiregistration.k8s.io/apiservices": "/registry/apiregistration.k8s.io/",
		"/a/b/":     "/a/b/",
		"/a/\xff/c": "/a/\uFFFD/",
	} {
		if got := catalog.PrefixOf([]byte(key)); got != want {
			t.Errorf("PrefixOf(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestInventoryBuilder(t *testing.T) {
	pairs := [][2]string{
		{"/registry/namespaces/a", "ns-a"},
		{"/registry/secrets/a/s1", "k8s:enc:aescbc:v1:key1:xxx"},
		{"/registry/secrets/a/s2", ""},
		{"compact_rev_key", "\x00\x01"},
	}
	b, err := catalog.NewInventoryBuilder(0)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, p := range pairs {
		if err := b.Add([]byte(p[0]), []byte(p[1])); err != nil {
			t.Fatal(err)
		}
		// The digest as docs/format.md §6 defines it, written out here.
		binary.Write(h, binary.BigEndian, uint64(len(p[0])))
		h.Write([]byte(p[0]))
		binary.Write(h, binary.BigEndian, uint64(len(p[1])))
		h.Write([]byte(p[1]))
	}
	inv := b.Inventory()
	if inv.Keys != 4 || inv.Digest != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("inventory %+v", inv)
	}
	want := map[string]int64{"/registry/namespaces/": 1, "/registry/secrets/": 2, "compact_rev_key": 1}
	if len(inv.Prefixes) != len(want) {
		t.Fatalf("prefixes %v, want %v", inv.Prefixes, want)
	}
	for k, v := range want {
		if inv.Prefixes[k] != v {
			t.Fatalf("prefixes %v, want %v", inv.Prefixes, want)
		}
	}
	if err := b.Add([]byte("compact_rev_key"), nil); err == nil {
		t.Fatal("Add accepted a repeated key")
	}
	if err := b.Add([]byte("/a"), nil); err == nil {
		t.Fatal("Add accepted a key out of order")
	}
	for _, v := range []int{0, catalog.InventoryVersion} {
		eb, err := catalog.NewInventoryBuilder(v)
		if err != nil {
			t.Fatal(err)
		}
		empty := eb.Inventory()
		if empty.Keys != 0 || empty.Version != v || empty.Digest != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
			t.Fatalf("empty inventory (version %d) %+v", v, empty)
		}
	}
	if _, err := catalog.NewInventoryBuilder(1); err == nil {
		t.Fatal("NewInventoryBuilder accepted version 1")
	}
}

// TestInventoryV2Vector: the version 2 digest of docs/format.md §6's test
// vector, written out here from its definition, and the same through Add
// and through AddSum.
func TestInventoryV2Vector(t *testing.T) {
	pairs := [][2]string{
		{"/registry/namespaces/a", "ns-a"},
		{"/registry/secrets/a/s1", "k8s:enc:aescbc:v1:key1:xxx"},
		{"/registry/secrets/a/s2", ""},
		{"compact_rev_key", "\x00\x01"},
	}
	const want = "3b204d07f55c1093dc42fe45fd8c71b85c041e0602ebd8a3fb53e766346675dc"
	h := sha256.New()
	byAdd, _ := catalog.NewInventoryBuilder(catalog.InventoryVersion)
	bySum, _ := catalog.NewInventoryBuilder(catalog.InventoryVersion)
	for _, p := range pairs {
		binary.Write(h, binary.BigEndian, uint64(len(p[0])))
		h.Write([]byte(p[0]))
		vs := sha256.Sum256([]byte(p[1]))
		h.Write(vs[:])
		if err := byAdd.Add([]byte(p[0]), []byte(p[1])); err != nil {
			t.Fatal(err)
		}
		if err := bySum.AddSum([]byte(p[0]), vs[:]); err != nil {
			t.Fatal(err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("definition gives %s, the vector says %s", got, want)
	}
	for name, b := range map[string]*catalog.InventoryBuilder{"Add": byAdd, "AddSum": bySum} {
		inv := b.Inventory()
		if inv.Digest != want || inv.Keys != 4 || inv.Version != catalog.InventoryVersion || inv.Prefixes["/registry/secrets/"] != 2 {
			t.Errorf("%s: inventory %+v", name, inv)
		}
	}
	v0, _ := catalog.NewInventoryBuilder(0)
	if err := v0.AddSum([]byte("k"), make([]byte, 32)); err == nil {
		t.Error("a version 0 builder took a value digest")
	}
	if err := bySum.AddSum([]byte("zz"), make([]byte, 31)); err == nil {
		t.Error("AddSum took a 31-byte digest")
	}
}

// env is a store, a keyring and an encryption config file to back up.
type env struct {
	root    string
	st      *fs.Store
	keyring *local.Keyring
	encCfg  string
	plan    *config.BackupPlan
}

const encryptionConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - aescbc:
          keys:
            - name: key2
              secret: c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXh4eHg=
            - name: key1
              secret: b2xkLXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldHg=
      - identity: {}
`

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{root: filepath.Join(dir, "store"), encCfg: filepath.Join(dir, "encryption.yaml")}
	var err error
	if e.st, err = fs.Open(ctx, fs.Options{Root: e.root}); err != nil {
		t.Fatal(err)
	}
	if e.keyring, err = local.Create(ctx, local.Options{Path: filepath.Join(dir, "keyring.json")}, "test-kek"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.encCfg, []byte(encryptionConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	e.plan = &config.BackupPlan{
		Metadata: config.ObjectMeta{Name: "clinic"},
		Spec: config.BackupPlanSpec{
			Store: "local", KeyProvider: "local", Retention: config.Retention{Default: config.Duration(24 * time.Hour)}, Compression: config.CompressionZstd,
			Sources: []config.Source{{EncryptionConfig: &config.EncryptionConfigSource{File: e.encCfg}}},
		},
	}
	return e
}

func (e *env) backup(t *testing.T, at time.Time) catalog.Manifest {
	t.Helper()
	m, err := backup.Run(context.Background(), backup.Options{Plan: e.plan, Store: e.st, Keys: e.keyring, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatalf("backup.Run: %v", err)
	}
	return m
}

// corrupt flips one byte of an object in the fs store, as bit rot or an
// attacker with write access to the directory would.
func corrupt(t *testing.T, root, key string, at int64) {
	t.Helper()
	p := filepath.Join(root, "objects", filepath.FromSlash(key))
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if at < 0 {
		fi, _ := f.Stat()
		at += fi.Size()
	}
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func TestWriteReadListSelect(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	t0 := testStart()
	m1 := e.backup(t, t0)
	m2 := e.backup(t, t0.Add(time.Hour))
	m3 := e.backup(t, t0.Add(2*time.Hour))

	if m1.Status != catalog.StatusComplete || m1.EncryptionConfig == nil || m1.Etcd != nil {
		t.Fatalf("manifest %+v", m1)
	}
	ec := m1.EncryptionConfig
	if strings.Join(ec.Providers, ",") != "aescbc,identity" || strings.Join(ec.KeyNames, ",") != "key2,key1" || strings.Join(ec.Resources, ",") != "secrets,configmaps" {
		t.Fatalf("encryption config %+v", ec)
	}
	if !m1.RetainUntil.Equal(t0.Add(24 * time.Hour)) {
		t.Fatalf("retainUntil %v", m1.RetainUntil)
	}
	for info, err := range e.st.List(ctx, catalog.BackupPrefix(m1.Backup)) {
		if err != nil {
			t.Fatal(err)
		}
		if !info.RetainUntil.Equal(m1.RetainUntil) {
			t.Errorf("%s retained until %v, manifest says %v", info.Key, info.RetainUntil, m1.RetainUntil)
		}
	}
	raw, err := os.ReadFile(filepath.Join(e.root, "objects", catalog.ManifestKey(m1.Backup)))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("c2VjcmV0")) || bytes.Contains(raw, []byte("b2xkLXNl")) {
		t.Fatal("manifest holds key material of the encryption config")
	}

	got, err := catalog.Read(ctx, e.st, m2.Backup)
	if err != nil || got.Backup != m2.Backup || got.DataKeyID != m2.DataKeyID {
		t.Fatalf("Read: %+v, %v", got, err)
	}

	// An incomplete backup: artifacts but no manifest. Also one of
	// another plan.
	incomplete := "clinic-" + t0.Add(5*time.Hour).Format("20060102T150405Z") + "-0000"
	if _, err := e.st.Put(ctx, catalog.ArtifactKey(incomplete, catalog.ArtifactEncryptionConfig), strings.NewReader("partial"), store.PutOptions{RetainUntil: t0.Add(48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	other := *e.plan
	other.Metadata.Name = "other"
	mo, err := backup.Run(ctx, backup.Options{Plan: &other, Store: e.st, Keys: e.keyring, Now: func() time.Time { return t0.Add(3 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}

	list, err := catalog.List(ctx, e.st, catalog.ListOptions{Plan: "clinic"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Backup != m3.Backup || list[1].Backup != m2.Backup || list[2].Backup != m1.Backup {
		t.Fatalf("List: %v", ids(list))
	}
	all, err := catalog.List(ctx, e.st, catalog.ListOptions{})
	if err != nil || len(all) != 4 || all[0].Backup != mo.Backup {
		t.Fatalf("List all: %v, %v", ids(all), err)
	}
	if _, err := catalog.Read(ctx, e.st, incomplete); !errors.Is(err, catalog.ErrNoBackup) {
		t.Fatalf("Read of an incomplete backup: %v", err)
	}

	for _, c := range []struct {
		sel  catalog.Selector
		want string
	}{
		{catalog.Selector{Plan: "clinic", Latest: true}, m3.Backup},
		{catalog.Selector{Plan: "clinic", Before: t0.Add(90 * time.Minute)}, m2.Backup},
		{catalog.Selector{Plan: "clinic", Before: t0.Add(time.Hour)}, m1.Backup},
		{catalog.Selector{Plan: "clinic", ID: m2.Backup}, m2.Backup},
		{catalog.Selector{ID: mo.Backup}, mo.Backup},
	} {
		m, err := catalog.Select(ctx, e.st, c.sel)
		if err != nil || m.Backup != c.want {
			t.Errorf("Select(%+v) = %s, %v; want %s", c.sel, m.Backup, err, c.want)
		}
	}
	for _, sel := range []catalog.Selector{
		{Plan: "clinic", Before: t0},
		{Plan: "nothing", Latest: true},
		{Plan: "clinic", ID: incomplete},
		{Plan: "clinic", ID: mo.Backup},
	} {
		if _, err := catalog.Select(ctx, e.st, sel); !errors.Is(err, catalog.ErrNoBackup) {
			t.Errorf("Select(%+v): %v, want ErrNoBackup", sel, err)
		}
	}
	if _, err := catalog.Select(ctx, e.st, catalog.Selector{Plan: "clinic", Latest: true, ID: m1.Backup}); err == nil {
		t.Error("Select with two choices accepted")
	}

	// A manifest that does not decode fails the list, naming it.
	corrupt(t, e.root, catalog.ManifestKey(m2.Backup), 3)
	if _, err := catalog.List(ctx, e.st, catalog.ListOptions{Plan: "clinic"}); err == nil || !strings.Contains(err.Error(), catalog.ManifestKey(m2.Backup)) {
		t.Fatalf("List with a corrupted manifest: %v", err)
	}
}

func ids(ms []catalog.Manifest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Backup)
	}
	return out
}

func TestDecodeStrict(t *testing.T) {
	e := newEnv(t)
	m := e.backup(t, testStart())
	good, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Decode(bytes.NewReader(good)); err != nil {
		t.Fatalf("Decode of a good manifest: %v", err)
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
	for name, b := range map[string][]byte{
		"unknown field":    edit(func(v map[string]any) { v["extra"] = 1 }),
		"format":           edit(func(v map[string]any) { v["format"] = "lifeboat.dev/manifest/v3" }),
		"format v1":        edit(func(v map[string]any) { v["format"] = "lifeboat.dev/manifest/v1" }),
		"no mac":           edit(func(v map[string]any) { delete(v, "mac") }),
		"mac not hex":      edit(func(v map[string]any) { v["mac"] = "forged" }),
		"status":           edit(func(v map[string]any) { v["status"] = "partial" }),
		"plan":             edit(func(v map[string]any) { v["plan"] = "another" }),
		"no artifacts":     edit(func(v map[string]any) { v["artifacts"] = []any{} }),
		"no kek":           edit(func(v map[string]any) { delete(v, "kek") }),
		"artifact digest":  edit(func(v map[string]any) { v["artifacts"].([]any)[0].(map[string]any)["ciphertextSHA256"] = "ABC" }),
		"artifact unknown": edit(func(v map[string]any) { v["artifacts"].([]any)[0].(map[string]any)["x"] = 1 }),
		"trailing bytes":   append(append([]byte{}, good...), []byte("{}")...),
		"not json":         []byte("manifest"),
	} {
		if _, err := catalog.Decode(bytes.NewReader(b)); !errors.Is(err, catalog.ErrVerification) {
			t.Errorf("%s: Decode: %v, want ErrVerification", name, err)
		}
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	m := e.backup(t, testStart())
	for _, readData := range []bool{false, true} {
		res, err := catalog.Verify(ctx, e.st, m.Backup, readData, e.keyring)
		if err != nil || !res.OK || len(res.Artifacts) != 1 || res.KeyObject == "" {
			t.Fatalf("Verify(readData=%v) of a good backup: %+v, %v", readData, res, err)
		}
		if readData && res.Artifacts[0].Plaintext != catalog.CheckOK {
			t.Fatalf("Verify(readData) did not check plaintext: %+v", res)
		}
	}
	var sb bytes.Buffer
	dk, _, err := catalog.OpenKey(ctx, e.st, m.Backup, m.DataKeyID, e.keyring)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.DecryptArtifact(ctx, e.st, m, catalog.ArtifactEncryptionConfig, dk, &sb); err != nil || sb.String() != encryptionConfig {
		t.Fatalf("DecryptArtifact: %v", err)
	}
	dk.Destroy()

	key := catalog.ArtifactKey(m.Backup, catalog.ArtifactEncryptionConfig)
	corrupt(t, e.root, key, -5)
	res, err := catalog.Verify(ctx, e.st, m.Backup, false, nil)
	if !errors.Is(err, catalog.ErrVerification) || !errors.Is(err, store.ErrIntegrity) || res.OK {
		t.Fatalf("Verify of a corrupted artifact: %+v, %v", res, err)
	}
	for _, want := range []string{key, "ciphertext SHA-256", m.Artifacts[0].CiphertextSHA256} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if res.Artifacts[0].Ciphertext != catalog.CheckFailed || !strings.Contains(res.Artifacts[0].Problem, key) {
		t.Errorf("result %+v", res.Artifacts[0])
	}
	_, err = catalog.Verify(ctx, e.st, m.Backup, true, e.keyring)
	// A one-segment artifact meets the store's own digest check at its
	// end before the AEAD tag; a longer one fails the tag first.
	if !errors.Is(err, catalog.ErrVerification) || !(errors.Is(err, envelope.ErrAuthentication) || errors.Is(err, store.ErrIntegrity)) || !strings.Contains(err.Error(), key) {
		t.Fatalf("Verify(readData) of a corrupted artifact: %v", err)
	}
}

func TestVerifyMissingObjects(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	m := e.backup(t, testStart())
	// Remove the artifact and the key object behind the store's back.
	art := catalog.ArtifactKey(m.Backup, catalog.ArtifactEncryptionConfig)
	if err := os.Remove(filepath.Join(e.root, "objects", art)); err != nil {
		t.Fatal(err)
	}
	for info, err := range e.st.List(ctx, catalog.KeysPrefix(m.Backup)) {
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(e.root, "objects", info.Key)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := catalog.Verify(ctx, e.st, m.Backup, false, nil)
	if !errors.Is(err, catalog.ErrVerification) || res.OK || !strings.Contains(err.Error(), art) || !strings.Contains(err.Error(), "no key object") {
		t.Fatalf("Verify with objects missing: %+v, %v", res, err)
	}
}

// TestOpenKeyFallsBack: a newer key object that does not unwrap (made with
// another keyring) is skipped in favour of the older one that does.
func TestOpenKeyFallsBack(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	m := e.backup(t, testStart())
	other, err := local.Create(ctx, local.Options{Path: filepath.Join(t.TempDir(), "other.json")}, "other-kek")
	if err != nil {
		t.Fatal(err)
	}
	dk, err := envelope.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	ko, err := envelope.SealKey(ctx, other, m.Backup, dk, m.Started.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ko.Marshal()
	if _, err := e.st.Put(ctx, catalog.KeysPrefix(m.Backup)+ko.Name(), bytes.NewReader(b), store.PutOptions{RetainUntil: m.RetainUntil}); err != nil {
		t.Fatal(err)
	}
	got, used, err := catalog.OpenKey(ctx, e.st, m.Backup, m.DataKeyID, e.keyring)
	if err != nil || got.ID() != m.DataKeyID || used.KEK != m.KEK {
		t.Fatalf("OpenKey: %v, %v, %v", got, used.KEK, err)
	}
	// With only the other keyring, nothing unwraps the manifest's key:
	// the newest object opens but holds another data key.
	res, err := catalog.Verify(ctx, e.st, m.Backup, true, other)
	if err == nil || res.OK || !strings.Contains(err.Error(), m.DataKeyID) {
		t.Fatalf("Verify with the wrong keyring: %+v, %v", res, err)
	}
}

// testStart is a start time for test backups: ten hours ago, in whole
// seconds, so a day's retention is still running by the store's real
// clock.
func testStart() time.Time { return time.Now().UTC().Truncate(time.Second).Add(-10 * time.Hour) }

// TestOpenKeyFiltersByDataKeyID: a newer key object that unwraps with the
// same keyring but holds another data key is passed over for the one
// holding the manifest's data key; with no such object, OpenKey fails.
func TestOpenKeyFiltersByDataKeyID(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	m := e.backup(t, testStart())
	dk, err := envelope.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Destroy()
	// A new KEK version of the same keyring wraps it: it unwraps too.
	if _, err := e.keyring.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	ko, err := envelope.SealKey(ctx, e.keyring, m.Backup, dk, m.Started.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ko.Marshal()
	if _, err := e.st.Put(ctx, catalog.KeysPrefix(m.Backup)+ko.Name(), bytes.NewReader(b), store.PutOptions{RetainUntil: m.RetainUntil}); err != nil {
		t.Fatal(err)
	}
	got, used, err := catalog.OpenKey(ctx, e.st, m.Backup, m.DataKeyID, e.keyring)
	if err != nil || got.ID() != m.DataKeyID || used.DataKeyID != m.DataKeyID {
		t.Fatalf("OpenKey: %v, %v, %v", got.ID(), used.DataKeyID, err)
	}
	got.Destroy()
	_, _, err = catalog.OpenKey(ctx, e.st, m.Backup, strings.Repeat("0", 32), e.keyring)
	if !errors.Is(err, catalog.ErrVerification) || !errors.Is(err, envelope.ErrWrongKey) {
		t.Fatalf("OpenKey of a data key no object holds: %v", err)
	}
}

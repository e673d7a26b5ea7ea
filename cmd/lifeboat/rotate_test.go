package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/source/etcd/etcdtest"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestKeysRotate: two real backups, `keys rotate` with afterVerifiedRewrap
// rewraps both under v2, retires v1, and both still decrypt; a rerun with
// --no-rotate finds everything done.
func TestKeysRotate(t *testing.T) {
	e := testenv.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	etcdtest.Fill(t, ctx, etcdtest.Client(t, e.Endpoint), "/registry/configmaps/bulk/", 10, 4<<10)
	s := newBackupSetup(t, map[string]string{"clinic": e.Endpoint})
	if _, errs, code := run(t, "keys", "init", "--keyring", s.keyring, "--key", "clinic-kek"); code != ExitOK {
		t.Fatalf("keys init: %s", errs)
	}
	m1 := backupRun(t, s, "clinic")
	m2 := backupRun(t, s, "clinic")
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("---\napiVersion: lifeboat.dev/v1alpha1\nkind: RotationPolicy\nmetadata: {name: quarterly}\nspec: {keyProvider: local, retireOldVersions: afterVerifiedRewrap}\n")
	f.Close()

	out, errs, code := run(t, "--config", s.config, "keys", "rotate", "quarterly")
	if code != ExitOK {
		t.Fatalf("keys rotate: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"local:clinic-kek@2", "retired local:clinic-kek@1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("keys rotate output lacks %q:\n%s", want, out)
		}
	}
	// Both backups decrypt with v1 retired: their data keys come from the
	// new key objects.
	for _, id := range []string{m1.Backup, m2.Backup} {
		if out, errs, code := run(t, "--config", s.config, "backup", "verify", id, "--read-data"); code != ExitOK {
			t.Fatalf("verify --read-data %s after rotation: exit %d\n%s\n%s", id, code, out, errs)
		}
	}
	out, _, code = run(t, "--config", s.config, "-o", "json", "keys", "rotate", "quarterly", "--no-rotate")
	if code != ExitOK || !strings.Contains(out, `"rewrapped": []`) || !strings.Contains(out, m1.Backup) {
		t.Fatalf("rerun with --no-rotate: exit %d\n%s", code, out)
	}

	// keys status: v1 retired and still holding both backups' first key
	// objects, v2 primary wrapping both.
	out, errs, code = run(t, "--config", s.config, "-o", "json", "keys", "status", "local")
	if code != ExitOK {
		t.Fatalf("keys status: exit %d\n%s\n%s", code, out, errs)
	}
	var st []job.KeyStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("keys status -o json: %v\n%s", err, out)
	}
	if len(st) != 1 || st[0].Backups != 2 || len(st[0].Versions) != 2 {
		t.Fatalf("keys status: %+v", st)
	}
	v1, v2 := st[0].Versions[0], st[0].Versions[1]
	if v1.State != "retired" || v1.Backups != 2 || v1.Primary || v2.State != "enabled" || !v2.Primary || v2.Backups != 2 {
		t.Fatalf("keys status versions: %+v", st[0].Versions)
	}
	if out, _, code := run(t, "--config", s.config, "keys", "status", "local"); code != ExitOK || !strings.Contains(out, "2 of 2") {
		t.Fatalf("keys status table:\n%s", out)
	}
	// Objects planted under a backup's keys/ by someone who can write to
	// the store are not counted, and do not fail the command: one that
	// is not a key object, and a copy of another backup's key object.
	fst, err := fs.Open(ctx, fs.Options{Root: s.storeRoot})
	if err != nil {
		t.Fatal(err)
	}
	var other []byte
	for info, err := range fst.List(ctx, catalog.KeysPrefix(m2.Backup)) {
		if err != nil {
			t.Fatal(err)
		}
		rc, err := fst.Get(ctx, info.Key, store.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		other, _ = io.ReadAll(rc)
		rc.Close()
	}
	for name, data := range map[string][]byte{"garbage.json": []byte(`{"kek": "local:clinic-kek@2"}`), "copied.json": other} {
		if _, err := fst.Put(ctx, catalog.KeysPrefix(m1.Backup)+name, bytes.NewReader(data), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	out, errs, code = run(t, "--config", s.config, "keys", "status", "local")
	if code != ExitOK || !strings.Contains(out, "2 of 2") || strings.Count(errs, "not counted") != 2 {
		t.Fatalf("keys status with planted key objects: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	// All providers: the unreachable KMS one is reported as an error row,
	// the local one still in full, and the exit code says something failed.
	out, _, code = run(t, "--config", s.config, "keys", "status")
	if code != ExitError || !strings.Contains(out, "2 of 2") || !strings.Contains(out, "kms") || !strings.Contains(out, "error:") {
		t.Fatalf("keys status with an unreachable provider: exit %d\n%s", code, out)
	}
}

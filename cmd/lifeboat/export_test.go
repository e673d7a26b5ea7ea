package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// TestBackupExport: an artifact comes out byte for byte as it was backed
// up (the encryption config testConfigHead wrote), in a file of mode 0600;
// an existing file is not overwritten; an unknown artifact names the ones
// there are; and a backup whose manifest was replaced is refused with
// --key and leaves nothing at --out.
func TestBackupExport(t *testing.T) {
	s := newRotateSetup(t)
	id := s.backups(t, 1)[0]
	pub := s.signerPub(t)
	dst := filepath.Join(s.dir, "restore", "encryption-config.yaml")
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "--config", s.config, "backup", "export", id, catalog.ArtifactEncryptionConfig, "--out", dst, "--key", pub)
	if code != ExitOK || !strings.Contains(out, "(verified)") || !strings.Contains(out, "signed evidence record matches") {
		t.Fatalf("export: exit %d\n%s\n%s", code, out, errs)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(s.dir, "encryption-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("exported bytes differ from what was backed up")
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Fatalf("exported file mode %v, want 0600", fi.Mode().Perm())
	}
	_, errs, code = run(t, "--config", s.config, "backup", "export", id, catalog.ArtifactEncryptionConfig, "--out", dst)
	if code == ExitOK || !strings.Contains(errs, "does not overwrite") {
		t.Fatalf("export over an existing file: exit %d\n%s", code, errs)
	}
	_, errs, code = run(t, "--config", s.config, "backup", "export", id, "etcd-snapshot.db", "--out", dst+".db")
	if code == ExitOK || !strings.Contains(errs, catalog.ArtifactEncryptionConfig) {
		t.Fatalf("export of a missing artifact: exit %d, want the artifacts named\n%s", code, errs)
	}

	key := catalog.ManifestKey(id)
	s.forgePointInTime(t, id, time.Hour)
	forgedOut := filepath.Join(s.dir, "restore", "forged.yaml")
	_, errs, code = run(t, "--config", s.config, "backup", "export", id, catalog.ArtifactEncryptionConfig, "--out", forgedOut, "--key", pub)
	if code != ExitVerification || !strings.Contains(errs, key) {
		t.Fatalf("export of a forged backup: exit %d, want %d naming the manifest\n%s", code, ExitVerification, errs)
	}
	// Without --key the MAC still refuses it.
	_, errs, code = run(t, "--config", s.config, "backup", "export", id, catalog.ArtifactEncryptionConfig, "--out", forgedOut)
	if code != ExitVerification || !strings.Contains(errs, "MAC") {
		t.Fatalf("export of a forged backup without --key: exit %d, want %d naming the MAC\n%s", code, ExitVerification, errs)
	}
	entries, _ := os.ReadDir(filepath.Join(s.dir, "restore"))
	if len(entries) != 1 {
		t.Fatalf("files left in the output directory: %v, want only the first export", entries)
	}
}

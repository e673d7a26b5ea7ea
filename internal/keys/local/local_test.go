package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/keys/keystest"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
)

func newKeyring(t *testing.T) (*local.Keyring, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyring.json")
	k, err := local.Create(context.Background(), local.Options{Path: path}, "test-kek")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return k, path
}

func TestConformance(t *testing.T) {
	keystest.Run(t, keystest.Harness{New: func(t *testing.T) keys.Provider {
		k, _ := newKeyring(t)
		return k
	}})
}

func TestFileMode(t *testing.T) {
	_, path := newKeyring(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("keyring mode %04o, want 0600", st.Mode().Perm())
	}
}

func TestRefusesReadableByOthers(t *testing.T) {
	_, path := newKeyring(t)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := local.Open(context.Background(), local.Options{Path: path})
		if err == nil || !strings.Contains(err.Error(), "chmod 600") || !strings.Contains(err.Error(), path) {
			t.Fatalf("Open of mode %04o: got %v, want a refusal naming the file and the fix", mode, err)
		}
	}
	os.Chmod(path, 0o600)
	if _, err := local.Open(context.Background(), local.Options{Path: path}); err != nil {
		t.Fatalf("Open after chmod 600: %v", err)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	_, path := newKeyring(t)
	before, _ := os.ReadFile(path)
	_, err := local.Create(context.Background(), local.Options{Path: path}, "other")
	if !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over an existing keyring: got %v, want ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("Create changed an existing keyring")
	}
}

func TestRotationSeenByOtherHandle(t *testing.T) {
	k1, path := newKeyring(t)
	k2, err := local.Open(context.Background(), local.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	v, err := k1.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w, err := k2.Wrap(context.Background(), make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.KEK != v.Ref {
		t.Fatalf("second handle wrapped with %s, want rotated %s", w.KEK, v.Ref)
	}
}

func TestRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	valid := `{"format":"lifeboat.dev/keyring/v1","key":"k","primary":1,"versions":[{"version":1,"created":"2026-01-01T00:00:00Z","state":"enabled","material":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}`
	cases := map[string]struct{ body, want string }{
		"valid":         {valid, ""},
		"unknown field": {strings.Replace(valid, `"primary":1`, `"primary":1,"extra":1`, 1), "unknown field"},
		"format":        {strings.Replace(valid, "keyring/v1", "keyring/v9", 1), "field format"},
		"short key":     {strings.Replace(valid, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "AAAA", 1), "versions[0].material"},
		"no primary":    {strings.Replace(valid, `"primary":1`, `"primary":2`, 1), "field primary"},
		"retired prim":  {strings.Replace(valid, `"enabled"`, `"retired"`, 1), "field primary"},
		"bad state":     {strings.Replace(valid, `"enabled"`, `"destroyed"`, 1), "versions[0].state"},
		"gap":           {strings.Replace(valid, `"version":1`, `"version":2`, 1), "versions[0].version"},
		"trailing":      {valid + "{}", "trailing data"},
		"not json":      {"nope", "decode"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := local.Open(context.Background(), local.Options{Path: path})
			if c.want == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open: got %v, want an error naming %s and containing %q", err, path, c.want)
			}
		})
	}
}

func TestRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	if _, err := local.Open(context.Background(), local.Options{Path: dir}); err == nil {
		t.Fatal("Open of a directory succeeded")
	}
}

func TestConcurrentRotationFromTwoHandles(t *testing.T) {
	k1, path := newKeyring(t)
	k2, err := local.Open(context.Background(), local.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	const each = 10
	done := make(chan error, 2)
	for _, k := range []*local.Keyring{k1, k2} {
		go func() {
			for i := 0; i < each; i++ {
				if _, err := k.Rotate(context.Background()); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	vs, err := k1.Versions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1+2*each {
		t.Fatalf("%d versions after %d rotations, want %d: a rotation was lost", len(vs), 2*each, 1+2*each)
	}
}

func TestNonCanonicalVersionRefused(t *testing.T) {
	k, _ := newKeyring(t)
	w, err := k.Wrap(context.Background(), make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"01", "+1", " 1", "1.0"} {
		w.KEK.Version = v
		if _, err := k.Unwrap(context.Background(), w, nil); !errors.Is(err, keys.ErrVersionNotFound) {
			t.Errorf("version %q: got %v, want ErrVersionNotFound", v, err)
		}
	}
}

func TestLeftoverTempFilesRemoved(t *testing.T) {
	k, path := newKeyring(t)
	leftover := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-123")
	if err := os.WriteFile(leftover, []byte("KEK material from a crashed write"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover temporary keyring file still there: %v", err)
	}
}

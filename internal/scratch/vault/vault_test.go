package vault

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

func TestLocate(t *testing.T) {
	bin := testenv.Binary(t, "vault")
	_, err := Locate(func(string) string { return "" }, filepath.Join(t.TempDir(), "lifeboat"))
	if !errors.Is(err, ErrNoVault) || !strings.Contains(err.Error(), "make testbin") {
		t.Errorf("missing binary: %v", err)
	}
	if _, err := Locate(func(string) string { return "" }, ""); !errors.Is(err, ErrNoVault) {
		t.Errorf("unknown executable: %v", err)
	}
	if _, err := Locate(func(k string) string { return map[string]string{EnvVault: t.TempDir()}[k] }, ""); !errors.Is(err, ErrNoVault) || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("$%s a directory: %v", EnvVault, err)
	}
	if got, err := Locate(func(k string) string { return map[string]string{EnvVault: bin}[k] }, ""); err != nil || got != bin {
		t.Errorf("$%s: %q %v", EnvVault, got, err)
	}
	if got, err := Locate(func(string) string { return "" }, filepath.Join(filepath.Dir(bin), "lifeboat")); err != nil || got != bin {
		t.Errorf("beside lifeboat: %q %v", got, err)
	}
}

// TestServer starts a scratch Vault, checks that transit is mounted and
// that the environment's VAULT_* settings do not reach it, and that Stop
// kills it and removes its directory.
func TestServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Setenv("VAULT_TOKEN", "from-the-environment")
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	tmp := t.TempDir()
	s, err := Start(ctx, Options{Binary: testenv.Binary(t, "vault"), TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if !strings.HasPrefix(s.Address(), "http://127.0.0.1:") {
		t.Errorf("address %s", s.Address())
	}
	mounts, err := s.Client().Sys().ListMountsWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := mounts[TransitMount+"/"]; !ok || m.Type != "transit" {
		t.Errorf("mounts: %v", mounts)
	}
	if s.Client().Token() == "from-the-environment" {
		t.Error("the client took VAULT_TOKEN")
	}
	if tail := s.out.tail(); strings.Contains(tail, s.Client().Token()) || strings.Contains(tail, "Root Token") {
		t.Error("the output tail holds the root token")
	}
	ents, _ := os.ReadDir(tmp)
	if len(ents) != 1 {
		t.Fatalf("temp dir holds %d entries", len(ents))
	}
	pid := s.cmd.Process.Pid
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("Stop left %v", ents)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("process %d still alive after Stop", pid)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStartFails reports a binary that is not Vault, without hanging.
func TestStartFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Start(ctx, Options{Binary: "/bin/false", TempDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("err %v", err)
	}
}

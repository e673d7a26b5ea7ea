package vault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EnvVault is the environment variable that names the vault binary,
// overriding the one beside lifeboat's own binary.
const EnvVault = "LIFEBOAT_VAULT"

// ErrNoVault is returned when the vault binary cannot be found or is not
// executable.
var ErrNoVault = errors.New("vault binary not found")

// Locate returns the vault binary to run: the file named by $LIFEBOAT_VAULT
// when getenv returns one, else vault in the directory of executable. The
// error says how to build it.
func Locate(getenv func(string) string, executable string) (string, error) {
	if p := getenv(EnvVault); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%w: $%s=%s: %v; build it with `make testbin` at the repository root", ErrNoVault, EnvVault, p, err)
		}
		return p, nil
	}
	if executable == "" {
		return "", fmt.Errorf("%w: $%s is not set and lifeboat's own path is unknown; build it with `make testbin` at the repository root and set $%s to bin/vault",
			ErrNoVault, EnvVault, EnvVault)
	}
	if resolved, err := filepath.EvalSymlinks(executable); err == nil {
		executable = resolved
	}
	p := filepath.Join(filepath.Dir(executable), "vault")
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("%w: %s: %v; build it with `make testbin` at the repository root (it goes to bin/, beside bin/lifeboat), or set $%s",
			ErrNoVault, p, err, EnvVault)
	}
	return p, nil
}

func checkExecutable(p string) error {
	st, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errors.New("no such file")
	case err != nil:
		return err
	case st.IsDir():
		return errors.New("is a directory")
	case st.Mode()&0o111 == 0:
		return errors.New("not executable")
	}
	return nil
}

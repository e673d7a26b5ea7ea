package scratch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Binary names a server binary a scratch provider runs.
type Binary struct {
	// Name is the file name, e.g. "kube-apiserver".
	Name string
	// Env names the environment variable that overrides the path.
	Env string
	// ErrNotFound is wrapped by every error Locate returns.
	ErrNotFound error
}

// Locate returns the binary to run: the file named by $b.Env when getenv
// returns one, else b.Name in the directory of executable (bin/ holds both
// lifeboat and the servers after `make build testbin`). The error says how
// to build it.
func (b Binary) Locate(getenv func(string) string, executable string) (string, error) {
	if p := getenv(b.Env); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%w: $%s=%s: %v; build it with `make testbin` at the repository root", b.ErrNotFound, b.Env, p, err)
		}
		return p, nil
	}
	if executable == "" {
		return "", fmt.Errorf("%w: $%s is not set and lifeboat's own path is unknown; build it with `make testbin` at the repository root and set $%s to bin/%s",
			b.ErrNotFound, b.Env, b.Env, b.Name)
	}
	if resolved, err := filepath.EvalSymlinks(executable); err == nil {
		executable = resolved
	}
	p := filepath.Join(filepath.Dir(executable), b.Name)
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("%w: %s: %v; build it with `make testbin` at the repository root (it goes to bin/, beside bin/lifeboat), or set $%s",
			b.ErrNotFound, p, err, b.Env)
	}
	return p, nil
}

// Check returns nil when p is an executable file, else an error wrapping
// b.ErrNotFound that names p and says how to build it.
func (b Binary) Check(p string) error {
	if err := checkExecutable(p); err != nil {
		return fmt.Errorf("%w: %s: %v; build it with `make testbin` at the repository root", b.ErrNotFound, p, err)
	}
	return nil
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

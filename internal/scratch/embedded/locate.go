package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EnvKubeAPIServer is the environment variable that names the
// kube-apiserver binary, overriding the one beside lifeboat's own binary.
const EnvKubeAPIServer = "LIFEBOAT_KUBE_APISERVER"

// ErrNoKubeAPIServer is returned when the kube-apiserver binary cannot be
// found or is not executable.
var ErrNoKubeAPIServer = errors.New("kube-apiserver binary not found")

// LocateKubeAPIServer returns the kube-apiserver binary to run: the file
// named by $LIFEBOAT_KUBE_APISERVER when getenv returns one, else
// kube-apiserver in the directory of executable (bin/ holds both lifeboat
// and kube-apiserver after `make build testbin`). The error says how to
// build it.
func LocateKubeAPIServer(getenv func(string) string, executable string) (string, error) {
	if p := getenv(EnvKubeAPIServer); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%w: $%s=%s: %v; build it with `make testbin` at the repository root", ErrNoKubeAPIServer, EnvKubeAPIServer, p, err)
		}
		return p, nil
	}
	if executable == "" {
		return "", fmt.Errorf("%w: $%s is not set and lifeboat's own path is unknown; build it with `make testbin` at the repository root and set $%s to bin/kube-apiserver",
			ErrNoKubeAPIServer, EnvKubeAPIServer, EnvKubeAPIServer)
	}
	if resolved, err := filepath.EvalSymlinks(executable); err == nil {
		executable = resolved
	}
	p := filepath.Join(filepath.Dir(executable), "kube-apiserver")
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("%w: %s: %v; build it with `make testbin` at the repository root (it goes to bin/, beside bin/lifeboat), or set $%s",
			ErrNoKubeAPIServer, p, err, EnvKubeAPIServer)
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

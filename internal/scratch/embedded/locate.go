package embedded

import (
	"errors"

	"github.com/lifeboat-dr/lifeboat/internal/scratch"
)

// EnvKubeAPIServer is the environment variable that names the
// kube-apiserver binary, overriding the one beside lifeboat's own binary.
const EnvKubeAPIServer = "LIFEBOAT_KUBE_APISERVER"

// ErrNoKubeAPIServer is returned when the kube-apiserver binary cannot be
// found or is not executable.
var ErrNoKubeAPIServer = errors.New("kube-apiserver binary not found")

// LocateKubeAPIServer returns the kube-apiserver binary to run: the file
// named by $LIFEBOAT_KUBE_APISERVER when getenv returns one, else
// kube-apiserver in the directory of executable. The error says how to
// build it.
func LocateKubeAPIServer(getenv func(string) string, executable string) (string, error) {
	return kubeAPIServer.Locate(getenv, executable)
}

var kubeAPIServer = scratch.Binary{Name: "kube-apiserver", Env: EnvKubeAPIServer, ErrNotFound: ErrNoKubeAPIServer}

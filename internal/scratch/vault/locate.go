package vault

import (
	"errors"

	"github.com/lifeboat-dr/lifeboat/internal/scratch"
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
	return scratch.Binary{Name: "vault", Env: EnvVault, ErrNotFound: ErrNoVault}.Locate(getenv, executable)
}

package job

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RecordTimeout bounds writing the evidence record of a run whose context
// was cancelled (SIGTERM, a lost lease): the record is still written,
// within this bound.
const RecordTimeout = 30 * time.Second

// NotFoundError says the configuration has no object of that kind and
// name; the command line reports it as a usage error.
type NotFoundError struct {
	Kind, Name string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("no %s named %q", e.Kind, e.Name) }

// ErrStoreRefused is wrapped when a store's lock status does not satisfy
// its plans: nothing is written to it.
var ErrStoreRefused = errors.New("store refused")

func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), RecordTimeout)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

func TestExitCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("step: %w", err) }
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("disk full"), ExitError},
		{usageError{errors.New("bad flag")}, ExitUsage},
		{config.ErrorList{{File: "f.yaml", Line: 1, Msg: "bad"}}, ExitConfig},
		{reportedError{config.ErrorList{{File: "f.yaml", Line: 1, Msg: "bad"}}}, ExitConfig},
		{wrap(envelope.ErrAuthentication), ExitVerification},
		{wrap(envelope.ErrMismatch), ExitVerification},
		{wrap(envelope.ErrFormat), ExitVerification},
		{wrap(envelope.ErrWrongKey), ExitVerification},
		{wrap(envelope.ErrKeyObject), ExitVerification},
		{wrap(keys.ErrUnwrap), ExitVerification},
		{wrap(store.ErrIntegrity), ExitVerification},
		{wrap(evidence.ErrTampered), ExitVerification},
		{wrap(keys.ErrVersionRetired), ExitError},
		{wrap(context.Canceled), ExitInterrupted},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

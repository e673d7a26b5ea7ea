package main

import (
	"context"
	"errors"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/drill"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Exit codes. This is the one place they are defined; docs/cli.md and the
// root command's help list them.
const (
	ExitOK           = 0   // success
	ExitError        = 1   // the command failed (I/O, a server, a key provider)
	ExitUsage        = 2   // bad flags or arguments
	ExitConfig       = 3   // configuration files are invalid
	ExitVerification = 4   // stored data failed verification (digest, AEAD tag, header)
	ExitDrillFailed  = 5   // a drill missed a target or a check
	ExitInterrupted  = 130 // interrupted by SIGINT or SIGTERM
)

const exitCodesHelp = `Exit codes:
  0    success
  1    the command failed (I/O, a server, a key provider)
  2    bad flags or arguments
  3    configuration files are invalid
  4    stored data failed verification (digest, AEAD tag, header)
  5    a drill missed a target or a check
  130  interrupted (SIGINT or SIGTERM)`

// usageError marks an error in the command line itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// reportedError is an error whose details the command already printed; main
// only sets the exit code.
type reportedError struct{ err error }

func (e reportedError) Error() string { return e.err.Error() }
func (e reportedError) Unwrap() error { return e.err }

func isReported(err error) bool {
	var r reportedError
	return errors.As(err, &r)
}

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	var (
		ue   usageError
		list config.ErrorList
		ce   *config.Error
		nf   *job.NotFoundError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ue), errors.As(err, &nf):
		return ExitUsage
	case errors.As(err, &list), errors.As(err, &ce):
		return ExitConfig
	case errors.Is(err, drill.ErrFailed):
		// Before verification: a drill stopped by a corrupted artifact
		// is a failed drill.
		return ExitDrillFailed
	case errors.Is(err, envelope.ErrAuthentication), errors.Is(err, envelope.ErrMismatch),
		errors.Is(err, envelope.ErrFormat), errors.Is(err, envelope.ErrWrongKey),
		errors.Is(err, envelope.ErrKeyObject), errors.Is(err, keys.ErrUnwrap),
		errors.Is(err, evidence.ErrTampered), errors.Is(err, catalog.ErrVerification),
		errors.Is(err, store.ErrIntegrity), errors.Is(err, audit.ErrTampered), errors.Is(err, audit.ErrWALDamaged):
		return ExitVerification
	default:
		return ExitError
	}
}

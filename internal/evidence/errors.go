package evidence

import (
	"errors"
	"strconv"
	"strings"
)

// ErrTampered is wrapped by every error that means evidence failed
// verification: a record or report was changed, removed, reordered,
// renamed, is not in canonical form, or was signed by a key that is not
// trusted. Callers map it to a verification failure (the CLI's exit code
// 4). I/O errors that say nothing about the evidence do not wrap it.
var ErrTampered = errors.New("evidence failed verification")

// VerifyError names what failed verification: the object (a store key or
// a file path), the field (a JSON path such as subject.files[2].size, or ""
// for the object as a whole) and the problem. It matches ErrTampered with
// errors.Is, and unwraps to the underlying error when there is one (for
// example store.ErrIntegrity from a store's digest check).
type VerifyError struct {
	Object  string
	Field   string
	Problem string
	Err     error
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	b.WriteString(e.Object)
	if e.Field != "" {
		b.WriteString(": field " + e.Field)
	}
	b.WriteString(": " + e.Problem)
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Is reports that a VerifyError is an ErrTampered.
func (e *VerifyError) Is(target error) bool { return target == ErrTampered }

// Unwrap returns the underlying error, if any.
func (e *VerifyError) Unwrap() error { return e.Err }

// problem builds a VerifyError from an error produced while checking the
// object's bytes: a *CanonicalError or a *fieldError keeps its field.
func problem(object string, err error) *VerifyError {
	var ce *CanonicalError
	var fe *fieldError
	switch {
	case errors.As(err, &ce):
		msg := ce.Msg
		if ce.Offset >= 0 {
			msg = "byte " + strconv.Itoa(ce.Offset) + ": " + msg
		}
		return &VerifyError{Object: object, Field: ce.Path, Problem: msg}
	case errors.As(err, &fe):
		return &VerifyError{Object: object, Field: fe.field, Problem: fe.msg}
	default:
		return &VerifyError{Object: object, Problem: err.Error()}
	}
}

// fieldError is a problem with one field of a decoded record or report.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return "field " + e.field + ": " + e.msg }

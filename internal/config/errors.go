package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Position is where an object or a field was written: a file and a 1-based
// line. A zero Line means the line is unknown.
type Position struct {
	File string
	Line int
}

// String formats the position as "file:line", leaving out what is unknown.
func (p Position) String() string {
	switch {
	case p.File == "" && p.Line == 0:
		return "-"
	case p.Line == 0:
		return p.File
	case p.File == "":
		return "line " + strconv.Itoa(p.Line)
	}
	return p.File + ":" + strconv.Itoa(p.Line)
}

// Error is one problem found in a configuration file: where it is, which
// field it concerns and what is wrong. Messages never contain secret values:
// configuration files hold no secrets, only references to where secrets are
// kept.
type Error struct {
	// File is the file as it was named to Parse or found by LoadPaths.
	File string
	// Line and Column are 1-based; zero when unknown.
	Line, Column int
	// Field is the path of the field from the top of its object, such as
	// "spec.objectLock.mode" or "spec.sources[1].etcd.endpoints[0]"; empty
	// when the problem concerns the whole file or document.
	Field string
	// Msg says what is wrong, lowercase, without the position or field.
	Msg string
}

// Error formats the error as "file:line:col: field: msg", leaving out the
// parts that are empty or zero.
func (e *Error) Error() string { return formatProblem(e.File, e.Line, e.Column, e.Field, e.Msg) }

// formatProblem formats an error or a warning as "file:line:col: field:
// msg", leaving out the parts that are empty or zero.
func formatProblem(file string, line, column int, field, msg string) string {
	var b strings.Builder
	b.WriteString(file)
	if line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(line))
		if column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(column))
		}
	}
	for _, part := range []string{field, msg} {
		if part == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(part)
	}
	return b.String()
}

// Position returns the file and line of the error.
func (e *Error) Position() Position { return Position{File: e.File, Line: e.Line} }

// ErrorList is every problem found in one Parse or LoadPaths call. Parse and
// LoadPaths return it sorted by file, then line and column.
type ErrorList []*Error

// Error formats the list one error per line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the errors of the list, so that errors.As finds an *Error.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Sort sorts the list by file, line, column, field and message.
func (l ErrorList) Sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Field, b.Field),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
}

// err returns the sorted list as an error, or nil when it is empty, so that a
// caller never sees a non-nil error holding no problems.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	l.Sort()
	return l
}

// fileError is a problem with a whole file, such as one that cannot be read.
func fileError(file, format string, args ...any) *Error {
	return &Error{File: file, Msg: fmt.Sprintf(format, args...)}
}

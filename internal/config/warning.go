package config

import (
	"cmp"
	"slices"
)

// Warning is something questionable but allowed in a configuration file,
// such as a schedule that fires more often than once a minute. It has the
// shape of an Error; a warning never makes LoadPaths fail.
type Warning struct {
	// File is the file as it was named to LoadPaths or found by it.
	File string
	// Line and Column are 1-based; zero when unknown.
	Line, Column int
	// Field is the path of the field from the top of its object, such as
	// "spec.cron".
	Field string
	// Msg says what is questionable, lowercase, without the position or
	// field.
	Msg string
}

// String formats the warning as "file:line:col: field: msg", like an
// Error, leaving out the parts that are empty or zero.
func (w Warning) String() string { return formatProblem(w.File, w.Line, w.Column, w.Field, w.Msg) }

// sortWarnings sorts warnings by file, line, column, field and message.
func sortWarnings(ws []Warning) {
	slices.SortStableFunc(ws, func(a, b Warning) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Field, b.Field),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
}

package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/config"
)

type validatedObject struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	File   string `json:"file"`
	Line   int    `json:"line"`
	Status string `json:"status"`
}

type validationProblem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

type validationResult struct {
	Valid    bool                `json:"valid"`
	Objects  []validatedObject   `json:"objects"`
	Problems []validationProblem `json:"problems,omitempty"`
	// Warnings are allowed but questionable values (a cron firing more
	// often than once a minute); they do not change the exit code.
	Warnings []validationProblem `json:"warnings,omitempty"`
}

func newValidateCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Check configuration files: schema, values, cron expressions and references",
		Long: `validate loads every object in the given files and directories (directories
are searched recursively for *.yaml and *.yml), together with the --config
files, and checks them as lifeboat would before running them: unknown
fields, values, durations, cron expressions, time zones, duplicate names and
references between objects. Every problem is reported as file:line:column,
the field, and what is wrong. The exit code is 3 when any problem is found.`,
		Example: `  lifeboat validate schedules/ drills/
  lifeboat validate drills/control-plane.yaml --config schedules/plans.yaml
  lifeboat validate -o json schedules/`,
		Args: args(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, paths []string) error {
			all := append(append([]string(nil), a.configPaths...), paths...)
			if len(all) == 0 {
				return usageError{errors.New("validate: name at least one file or directory (or use --config)")}
			}
			set, err := config.LoadPaths(all...)
			res := validationResult{Valid: err == nil, Objects: []validatedObject{}}
			if set != nil {
				for _, w := range set.Warnings {
					res.Warnings = append(res.Warnings, validationProblem{File: w.File, Line: w.Line, Column: w.Column, Field: w.Field, Message: w.Msg})
				}
				for _, o := range set.Objects() {
					p := o.Source()
					res.Objects = append(res.Objects, validatedObject{Kind: o.GetKind(), Name: o.GetName(), File: p.File, Line: p.Line, Status: "ok"})
				}
			}
			var list config.ErrorList
			if err != nil && !errors.As(err, &list) {
				return fmt.Errorf("validate: %w", err)
			}
			for _, e := range list {
				res.Problems = append(res.Problems, validationProblem{File: e.File, Line: e.Line, Column: e.Column, Field: e.Field, Message: e.Msg})
			}
			if a.output != "table" {
				if rerr := a.render(cmd.OutOrStdout(), res, table{}); rerr != nil {
					return rerr
				}
			} else {
				for _, e := range list {
					fmt.Fprintln(cmd.ErrOrStderr(), e.Error())
				}
				if set != nil {
					for _, w := range set.Warnings {
						fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w.String())
					}
				}
				if len(list) == 0 {
					t := table{header: []string{"KIND", "NAME", "SOURCE"}}
					for _, o := range res.Objects {
						t.rows = append(t.rows, []string{o.Kind, o.Name, fmt.Sprintf("%s:%d", o.File, o.Line)})
					}
					if rerr := a.render(cmd.OutOrStdout(), res, t); rerr != nil {
						return rerr
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%d objects valid\n", len(res.Objects))
				} else {
					fmt.Fprintf(cmd.ErrOrStderr(), "%d problem(s) found\n", len(list))
				}
			}
			if err != nil {
				return reportedError{err}
			}
			return nil
		},
	}
}

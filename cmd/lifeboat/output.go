package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
)

// table is a command's result in a form every output format can render:
// rows for the table view, and a value for JSON and YAML.
type table struct {
	header []string
	rows   [][]string
}

// render writes v (JSON/YAML) or t (table) in the chosen format.
func (a *app) render(w io.Writer, v any, t table) error {
	switch a.output {
	case "junit":
		return usageError{errors.New("--output junit is for drill run only")}
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		// Go through JSON so field names and omitempty rules are the
		// JSON ones in both formats.
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("render yaml: %w", err)
		}
		var generic any
		if err := yaml.Unmarshal(b, &generic); err != nil {
			return fmt.Errorf("render yaml: %w", err)
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(generic); err != nil {
			return fmt.Errorf("render yaml: %w", err)
		}
		return enc.Close()
	default:
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		writeRow(tw, t.header)
		for _, r := range t.rows {
			writeRow(tw, r)
		}
		return tw.Flush()
	}
}

func writeRow(w io.Writer, cells []string) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		io.WriteString(w, c)
	}
	io.WriteString(w, "\n")
}

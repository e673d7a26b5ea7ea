package evidence

import (
	"bytes"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"
)

// reportView is what both renderings show, computed once from a Report.
type reportView struct {
	R        Report
	Verdict  string // PASS or FAIL
	Measures []measureRow
	Phases   []phaseRow
	// PhaseMemory is set when any phase's peak memory was measured; the
	// phase tables then have a column for it.
	PhaseMemory bool
	Checks      []checkRow
	// Charts (charts.go); nil when there is nothing to draw.
	PhaseChart, Objectives, TrendRTO, TrendRPO *svgChart
	Trend                                      []trendRow
}

type trendRow struct {
	RunID, Finished, Verdict, RTO, RPO string
}

type measureRow struct {
	Name, Target, Measured, Result string
}

type phaseRow struct {
	N                          int
	Name, Start, Took, Outcome string
	Memory                     string // peak memory, or "—" when not measured
}

type checkRow struct {
	Name, Outcome, Detail string
}

func newReportView(r Report) reportView {
	v := reportView{R: r, Verdict: strings.ToUpper(r.Verdict)}
	judged := func(name string, got *int64, target int64) measureRow {
		row := measureRow{Name: name, Target: msText(target), Measured: "not measured", Result: "FAIL"}
		if got != nil {
			row.Measured = msText(*got)
			if *got <= target {
				row.Result = "PASS"
			}
		}
		return row
	}
	v.Measures = []measureRow{
		judged("RTO", r.Measured.RTOMs, r.Targets.RTOMs),
		judged("RPO", r.Measured.RPOMs, r.Targets.RPOMs),
	}
	if g := r.Measured.WorstGapMs; g != nil {
		row := measureRow{Name: "Worst gap between backups", Target: msText(r.Targets.RPOMs) + " (RPO target)", Measured: msText(*g), Result: "within RPO target (not judged)"}
		if *g > r.Targets.RPOMs {
			row.Result = "OVER RPO TARGET (not judged in v1)"
		}
		v.Measures = append(v.Measures, row)
	}
	for i, p := range r.Phases {
		row := phaseRow{N: i + 1, Name: p.Name, Start: "+" + durText(p.StartedMs), Took: durText(p.DurationMs), Outcome: p.Outcome, Memory: "—"}
		if p.PeakMemoryBytes > 0 {
			row.Memory = memText(p.PeakMemoryBytes)
			v.PhaseMemory = true
		}
		v.Phases = append(v.Phases, row)
	}
	for _, c := range r.Checks {
		v.Checks = append(v.Checks, checkRow{Name: c.Name, Outcome: strings.ToUpper(c.Outcome), Detail: c.Detail})
	}
	v.PhaseChart, v.Objectives = phaseChart(r), objectivesChart(r)
	v.TrendRTO, v.TrendRPO = trendChart(r, true), trendChart(r, false)
	opt := func(ms *int64, target int64) string {
		if ms == nil {
			return "not measured / " + durText(target)
		}
		return durText(*ms) + " / " + durText(target)
	}
	for _, p := range r.Trend {
		v.Trend = append(v.Trend, trendRow{RunID: p.RunID, Finished: formatTime(p.Finished), Verdict: strings.ToUpper(p.Verdict),
			RTO: opt(p.RTOMs, p.TargetRTOMs), RPO: opt(p.RPOMs, p.TargetRPOMs)})
	}
	return v
}

// memText writes a byte count in binary units: 812 MiB, 2.3 GiB.
func memText(n int64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// durText shows milliseconds as a Go duration ("1m2.5s").
func durText(ms int64) string {
	if ms > 1<<53 {
		return strconv.FormatInt(ms, 10) + "ms"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// RenderMarkdown renders the report as GitHub-flavoured Markdown
// (docs/format.md §5.6). The output is a function of r alone.
func RenderMarkdown(r Report) ([]byte, error) {
	v := newReportView(r)
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Drill report: %s — %s\n\n", mdText(r.Drill), v.Verdict)
	p("| item | value |\n| --- | --- |\n")
	p("| Drill | %s |\n", mdText(r.Drill))
	p("| Run | `%s` |\n", r.RunID)
	if r.BackupID != "" {
		p("| Backup restored | `%s` |\n", r.BackupID)
	} else {
		p("| Backup restored | none selected |\n")
	}
	p("| Started | %s |\n", formatTime(r.Started))
	p("| Finished | %s |\n", formatTime(r.Finished))
	p("| Incident (simulated) | %s |\n", formatTime(r.Incident))
	if k := r.Keys; k != nil {
		p("| Data key | `%s`, unwrapped with `%s` |\n", mdText(k.DataKeyID), mdText(k.KeyObject))
		if len(k.KeyProviders) > 0 {
			p("| Key providers | %s |\n", mdText(strings.Join(k.KeyProviders, ", ")))
		}
	}
	p("| Signed by | key `%s` |\n\n", r.Signer)

	p("## Verdict: %s\n\n", v.Verdict)
	if r.Verdict == VerdictPass {
		p("The restore met the RTO and RPO targets and every verification check passed.\n\n")
	} else {
		p("The drill failed:\n\n")
		for _, reason := range r.Reasons {
			p("- %s\n", mdText(reason))
		}
		if len(r.Reasons) == 0 {
			p("- (no reasons recorded)\n")
		}
		p("\n")
	}

	p("## Targets and measured values\n\n")
	p("| measure | target | measured | result |\n| --- | --- | --- | --- |\n")
	for _, m := range v.Measures {
		p("| %s | %s | %s | %s |\n", m.Name, m.Target, m.Measured, m.Result)
	}
	p("\n## Phases\n\n")
	if len(v.Phases) == 0 {
		p("No phases were recorded.\n")
	} else {
		if v.PhaseMemory {
			p("| # | phase | starts at | duration | outcome | peak memory |\n| --- | --- | --- | --- | --- | --- |\n")
		} else {
			p("| # | phase | starts at | duration | outcome |\n| --- | --- | --- | --- | --- |\n")
		}
		for _, ph := range v.Phases {
			p("| %d | %s | %s | %s | %s |", ph.N, mdText(ph.Name), ph.Start, ph.Took, ph.Outcome)
			if v.PhaseMemory {
				p(" %s |", ph.Memory)
			}
			p("\n")
		}
	}
	p("\n## Checks\n\n")
	if len(v.Checks) == 0 {
		p("No verification check ran.\n")
	} else {
		p("| check | result | detail |\n| --- | --- | --- |\n")
		for _, c := range v.Checks {
			p("| %s | %s | %s |\n", mdText(c.Name), c.Outcome, mdText(c.Detail))
		}
	}
	if len(v.Trend) > 0 {
		p("\n## Earlier runs of this drill\n\n")
		p("| run | finished | verdict | RTO / target | RPO / target |\n| --- | --- | --- | --- | --- |\n")
		for _, t := range v.Trend {
			p("| `%s` | %s | %s | %s | %s |\n", t.RunID, t.Finished, t.Verdict, t.RTO, t.RPO)
		}
	}
	p("\n## HIPAA Security Rule (45 CFR Part 164)\n\n")
	if len(r.HIPAA) == 0 {
		p("No safeguards cited.\n")
	} else {
		p("| section | standard | what this run showed |\n| --- | --- | --- |\n")
		for _, h := range r.HIPAA {
			p("| %s | %s | %s |\n", mdText(h.Section), mdText(h.Standard), mdText(h.Evidence))
		}
	}
	p("\n---\n\nRendered from `report.json`, the signed record of this drill (format `%s`, signer key ID `%s`). ", ReportFormat, r.Signer)
	p("Verify it offline with `lifeboat report verify report.json --key SIGNER_PUBLIC_KEY_FILE`.\n")
	return b.Bytes(), nil
}

// mdText escapes free text for a Markdown table cell or list item so that
// it cannot change the document's structure or inject HTML.
func mdText(s string) string {
	var b strings.Builder
	for i, c := range s {
		switch {
		case c == '&':
			b.WriteString("&amp;")
		case c == '<':
			b.WriteString("&lt;")
		case c == '>':
			b.WriteString("&gt;")
		case strings.ContainsRune("\\`*_[]|~", c):
			b.WriteByte('\\')
			b.WriteRune(c)
		case i == 0 && strings.ContainsRune("-+#=", c):
			b.WriteByte('\\')
			b.WriteRune(c)
		case c < 0x20 || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteRune(c)
		}
	}
	out := b.String()
	// "1. x" at the start would become an ordered list item.
	if n := len(out) - len(strings.TrimLeft(out, "0123456789")); n > 0 && n < len(out) && (out[n] == '.' || out[n] == ')') {
		out = out[:n] + "\\" + out[n:]
	}
	return out
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"time":  formatTime,
	"lower": strings.ToLower,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Drill report: {{.R.Drill}} — {{.Verdict}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
.pass,.success{color:#116329;font-weight:600}.fail,.failure{color:#a40e26;font-weight:600}.skipped,.warn{color:#7d4e00;font-weight:600}
.verdict{display:inline-block;padding:.1rem .6rem;border-radius:.3rem;color:#fff}.verdict.pass{background:#1a7f37;color:#fff}.verdict.fail{background:#cf222e;color:#fff}
footer{margin-top:2rem;font-size:.9em;color:#57606a}
svg.chart{width:100%;height:auto;max-width:60rem;font-size:12px;font-family:inherit}
svg .bar.success,svg .bar.pass{fill:#2da44e}svg .bar.failure,svg .bar.fail{fill:#cf222e}svg .bar.skipped{fill:#d0d7de}
svg .row{fill:#1b1f24}svg .value{fill:#57606a}svg .axis{stroke:#8c959f}
svg line.target{stroke:#7d4e00;stroke-width:2;stroke-dasharray:6 4}svg text.target{fill:#7d4e00}
svg line.measured{stroke:#0969da;stroke-width:2}svg text.measured{fill:#0969da}
svg .tick{stroke:#7d4e00;stroke-width:3}
.summary{font-size:1.1rem}
</style>
</head>
<body>
<h1>Drill report: {{.R.Drill}} <span class="verdict {{lower .Verdict}}">{{.Verdict}}</span></h1>
<p class="summary">{{if eq .R.Verdict "pass"}}The restore met its RTO and RPO targets and every check passed.{{else}}The drill failed: {{range $i, $r := .R.Reasons}}{{if $i}}; {{end}}{{$r}}{{else}}no reasons recorded{{end}}.{{end}}</p>
{{with .Objectives}}{{template "chart" .}}{{end}}
<table>
<tr><th>Drill</th><td>{{.R.Drill}}</td></tr>
<tr><th>Run</th><td><code>{{.R.RunID}}</code></td></tr>
<tr><th>Backup restored</th><td>{{if .R.BackupID}}<code>{{.R.BackupID}}</code>{{else}}none selected{{end}}</td></tr>
<tr><th>Started</th><td>{{time .R.Started}}</td></tr>
<tr><th>Finished</th><td>{{time .R.Finished}}</td></tr>
<tr><th>Incident (simulated)</th><td>{{time .R.Incident}}</td></tr>
{{with .R.Keys}}<tr><th>Data key</th><td><code>{{.DataKeyID}}</code>, unwrapped with <code>{{.KeyObject}}</code></td></tr>
{{if .KeyProviders}}<tr><th>Key providers</th><td>{{range $i, $k := .KeyProviders}}{{if $i}}, {{end}}{{$k}}{{end}}</td></tr>{{end}}
{{end}}<tr><th>Signed by</th><td>key <code>{{.R.Signer}}</code></td></tr>
</table>

<h2>Verdict: <span class="{{lower .Verdict}}">{{.Verdict}}</span></h2>
{{if eq .R.Verdict "pass"}}<p>The restore met the RTO and RPO targets and every verification check passed.</p>
{{else}}<p>The drill failed:</p>
<ul>
{{range .R.Reasons}}<li>{{.}}</li>
{{else}}<li>(no reasons recorded)</li>
{{end}}</ul>
{{end}}
<h2>Targets and measured values</h2>
<table>
<tr><th>measure</th><th>target</th><th>measured</th><th>result</th></tr>
{{range .Measures}}<tr><td>{{.Name}}</td><td>{{.Target}}</td><td>{{.Measured}}</td><td class="{{if eq .Result "PASS"}}pass{{else if eq .Result "FAIL"}}fail{{else}}warn{{end}}">{{.Result}}</td></tr>
{{end}}</table>

<h2>Phases</h2>
{{with .PhaseChart}}{{template "chart" .}}{{end}}
{{if .Phases}}<table>
<tr><th>#</th><th>phase</th><th>starts at</th><th>duration</th><th>outcome</th>{{if $.PhaseMemory}}<th>peak memory</th>{{end}}</tr>
{{range .Phases}}<tr><td>{{.N}}</td><td>{{.Name}}</td><td>{{.Start}}</td><td>{{.Took}}</td><td class="{{.Outcome}}">{{.Outcome}}</td>{{if $.PhaseMemory}}<td>{{.Memory}}</td>{{end}}</tr>
{{end}}</table>
{{else}}<p>No phases were recorded.</p>
{{end}}
<h2>Checks</h2>
{{if .Checks}}<table>
<tr><th>check</th><th>result</th><th>detail</th></tr>
{{range .Checks}}<tr><td>{{.Name}}</td><td class="{{lower .Outcome}}">{{.Outcome}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>
{{else}}<p>No verification check ran.</p>
{{end}}
{{if .Trend}}<h2>Trend: this drill's earlier runs</h2>
{{with .TrendRTO}}{{template "chart" .}}{{end}}
{{with .TrendRPO}}{{template "chart" .}}{{end}}
<table>
<tr><th>run</th><th>finished</th><th>verdict</th><th>RTO / target</th><th>RPO / target</th></tr>
{{range .Trend}}<tr><td><code>{{.RunID}}</code></td><td>{{.Finished}}</td><td class="{{lower .Verdict}}">{{.Verdict}}</td><td>{{.RTO}}</td><td>{{.RPO}}</td></tr>
{{end}}</table>
{{end}}
<h2>HIPAA Security Rule (45 CFR Part 164)</h2>
{{if .R.HIPAA}}<table>
<tr><th>section</th><th>standard</th><th>what this run showed</th></tr>
{{range .R.HIPAA}}<tr><td>{{.Section}}</td><td>{{.Standard}}</td><td>{{.Evidence}}</td></tr>
{{end}}</table>
{{else}}<p>No safeguards cited.</p>
{{end}}
<footer>
<p>Rendered from <code>report.json</code>, the signed record of this drill (format <code>` + ReportFormat + `</code>, signer key ID <code>{{.R.Signer}}</code>).
Verify it offline with <code>lifeboat report verify report.json --key SIGNER_PUBLIC_KEY_FILE</code>.</p>
</footer>
</body>
</html>
{{define "chart"}}<figure>
<svg class="chart" role="img" aria-label="{{.Title}}" viewBox="0 0 {{.Width}} {{.Height}}">
<title>{{.Title}}</title>
{{range .Bars}}<text class="row" x="4" y="{{.TextY}}">{{.Label}}</text>
<rect class="bar {{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="16"><title>{{.Label}}: {{.Value}}</title></rect>
{{if .TickX}}<line class="tick" x1="{{.TickX}}" x2="{{.TickX}}" y1="{{.Y}}" y2="{{.TextY}}"><title>{{.TickTitle}}</title></line>
{{end}}<text class="value" x="{{.ValueX}}" y="{{.TextY}}">{{.Value}}</text>
{{end}}{{range .Lines}}<line class="{{.Class}}" x1="{{.X}}" x2="{{.X}}" y1="{{.Y1}}" y2="{{.Y2}}"></line>
<text class="{{.Class}}" x="{{.LabelX}}" y="{{.LabelY}}" text-anchor="middle">{{.Label}}</text>
{{end}}<line class="axis" x1="{{.AxisX}}" x2="{{.AxisEndX}}" y1="{{.AxisY2}}" y2="{{.AxisY2}}"></line>
<text class="value" x="{{.AxisX}}" y="{{.AxisLabelY}}">{{.AxisLabelStart}}</text>
<text class="value" x="{{.AxisEndX}}" y="{{.AxisLabelY}}" text-anchor="end">{{.AxisLabelEnd}}</text>
</svg>
<figcaption>{{.Title}}</figcaption>
</figure>{{end}}
`))

// RenderHTML renders the report as one self-contained HTML page: inline
// style, no scripts, no external resources (docs/format.md §5.6). The
// output is a function of r alone.
func RenderHTML(r Report) ([]byte, error) {
	var b bytes.Buffer
	if err := htmlReport.Execute(&b, newReportView(r)); err != nil {
		return nil, fmt.Errorf("render html: %w", err)
	}
	return b.Bytes(), nil
}

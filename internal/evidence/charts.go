package evidence

import (
	"strconv"
	"time"
)

// The HTML report's charts are inline SVG computed here as geometry and
// written by html/template, so that every label is escaped and the page
// fetches nothing. Coordinates are in SVG user units; the charts scale
// with the page through their viewBox.

const (
	chartWidth  = 720.0
	chartLabelW = 160.0 // room for the row labels on the left
	chartRightW = 170.0 // room for the value after a bar
	chartRowH   = 24.0
	chartTopPad = 22.0 // room for the target's label above the rows
)

// plotW is the width bars are drawn in.
const plotW = chartWidth - chartLabelW - chartRightW

// svgBar is one labelled horizontal bar.
type svgBar struct {
	Label     string
	Value     string // the figure written after the bar
	Y, TextY  string
	X, W      string
	Class     string // pass, fail, skipped, over
	ValueX    string
	TickX     string // a per-row target tick; empty for none
	TickTitle string
}

// svgLine is a vertical marker across a chart, such as a target.
type svgLine struct {
	X, Y1, Y2, LabelX, LabelY string
	Label, Class              string
}

// svgChart is one chart: bars and markers.
type svgChart struct {
	Title          string // the chart's accessible name
	Width, Height  string
	Bars           []svgBar
	Lines          []svgLine
	AxisX, AxisY2  string
	AxisLabelStart string
	AxisLabelEnd   string
	AxisEndX       string
	AxisLabelY     string
}

// niceSteps are the axis lengths charts round up to, so the axis ends on
// a round duration.
var niceSteps = []int64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000,
	60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 3 * 3_600_000, 6 * 3_600_000,
	12 * 3_600_000, 24 * 3_600_000}

// niceCeil returns a round axis length a little over ms: a multiple of
// a round step, at most ten steps long.
func niceCeil(ms int64) int64 {
	ms += ms / 20 // room after the longest bar
	for _, step := range niceSteps {
		if ms <= 10*step {
			return (ms + step - 1) / step * step
		}
	}
	day := niceSteps[len(niceSteps)-1]
	return (ms + day - 1) / day * day
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// scaleX maps ms on a 0..maxMs axis to an x coordinate.
func scaleX(ms, maxMs int64) float64 {
	if maxMs <= 0 {
		return chartLabelW
	}
	return chartLabelW + float64(ms)/float64(maxMs)*plotW
}

func barWidth(ms, maxMs int64) float64 {
	w := scaleX(ms, maxMs) - chartLabelW
	if w < 1 && ms > 0 {
		w = 1
	}
	return w
}

// phaseChart draws the phases as a timeline from the drill's start, with
// the RTO target and the measured RTO as markers: it shows which phase
// spent the recovery time.
func phaseChart(r Report) *svgChart {
	if len(r.Phases) == 0 {
		return nil
	}
	maxMs := r.Targets.RTOMs
	for _, p := range r.Phases {
		maxMs = max(maxMs, p.StartedMs+p.DurationMs)
	}
	if m := r.Measured.RTOMs; m != nil {
		maxMs = max(maxMs, *m)
	}
	maxMs = niceCeil(maxMs)
	c := &svgChart{Title: "Phases on the RTO timeline"}
	y := chartTopPad
	for _, p := range r.Phases {
		class := p.Outcome
		w := barWidth(p.DurationMs, maxMs)
		value := durText(p.DurationMs)
		if p.Outcome == PhaseSkipped {
			value = "skipped"
		}
		x := scaleX(p.StartedMs, maxMs)
		c.Bars = append(c.Bars, svgBar{
			Label: p.Name, Value: value, Class: class,
			Y: f1(y + 4), TextY: f1(y + 16), X: f1(x), W: f1(w), ValueX: f1(x + w + 4),
		})
		y += chartRowH
	}
	bottom := y + 4
	c.Lines = append(c.Lines, svgLine{
		X: f1(scaleX(r.Targets.RTOMs, maxMs)), Y1: f1(chartTopPad - 4), Y2: f1(bottom),
		LabelX: f1(scaleX(r.Targets.RTOMs, maxMs)), LabelY: f1(chartTopPad - 8),
		Label: "RTO target " + durText(r.Targets.RTOMs), Class: "target",
	})
	if m := r.Measured.RTOMs; m != nil {
		c.Lines = append(c.Lines, svgLine{
			X: f1(scaleX(*m, maxMs)), Y1: f1(chartTopPad - 4), Y2: f1(bottom),
			LabelX: f1(scaleX(*m, maxMs)), LabelY: f1(bottom + 14),
			Label: "RTO " + durText(*m), Class: "measured",
		})
	}
	c.axis(bottom, maxMs)
	c.Height = f1(bottom + 34)
	return c
}

func (c *svgChart) axis(y float64, maxMs int64) {
	c.Width = f1(chartWidth)
	c.AxisX, c.AxisY2 = f1(chartLabelW), f1(y)
	c.AxisLabelStart = "0s"
	c.AxisLabelEnd = durText(maxMs)
	c.AxisEndX = f1(chartLabelW + plotW)
	c.AxisLabelY = f1(y + 28)
}

// objectivesChart draws RPO and the worst gap between backups against the
// RPO target, and RTO against its target, each on the same axis.
func objectivesChart(r Report) *svgChart {
	type row struct {
		label  string
		got    *int64
		target int64
	}
	rows := []row{{"RTO", r.Measured.RTOMs, r.Targets.RTOMs}, {"RPO", r.Measured.RPOMs, r.Targets.RPOMs}}
	if g := r.Measured.WorstGapMs; g != nil {
		rows = append(rows, row{"worst gap (30 days)", g, r.Targets.RPOMs})
	}
	var maxMs int64 = 1
	for _, x := range rows {
		maxMs = max(maxMs, x.target)
		if x.got != nil {
			maxMs = max(maxMs, *x.got)
		}
	}
	maxMs = niceCeil(maxMs)
	c := &svgChart{Title: "Measured against targets"}
	y := chartTopPad
	for _, x := range rows {
		b := svgBar{Label: x.label, Y: f1(y + 4), TextY: f1(y + 16), X: f1(chartLabelW),
			TickX: f1(scaleX(x.target, maxMs)), TickTitle: "target " + durText(x.target)}
		if x.got == nil {
			b.Value, b.Class, b.W, b.ValueX = "not measured", "fail", "0", f1(chartLabelW+4)
		} else {
			w := barWidth(*x.got, maxMs)
			b.Value, b.W, b.ValueX = durText(*x.got), f1(w), f1(chartLabelW+w+4)
			b.Class = "pass"
			if *x.got > x.target {
				b.Class = "fail"
			}
		}
		b.Value += " / target " + durText(x.target)
		c.Bars = append(c.Bars, b)
		y += chartRowH
	}
	c.axis(y+4, maxMs)
	c.Height = f1(y + 4 + 34)
	return c
}

// trendChart draws one measure (RTO or RPO) of the earlier runs and this
// one, oldest first, each bar with its run's target as a tick and coloured
// by its verdict.
func trendChart(r Report, rto bool) *svgChart {
	if len(r.Trend) == 0 {
		return nil
	}
	pts := append(append([]TrendPoint{}, r.Trend...), TrendPoint{
		RunID: r.RunID, Finished: r.Finished, Verdict: r.Verdict,
		RTOMs: r.Measured.RTOMs, RPOMs: r.Measured.RPOMs,
		TargetRTOMs: r.Targets.RTOMs, TargetRPOMs: r.Targets.RPOMs,
	})
	pick := func(p TrendPoint) (*int64, int64) {
		if rto {
			return p.RTOMs, p.TargetRTOMs
		}
		return p.RPOMs, p.TargetRPOMs
	}
	var maxMs int64 = 1
	for _, p := range pts {
		got, target := pick(p)
		maxMs = max(maxMs, target)
		if got != nil {
			maxMs = max(maxMs, *got)
		}
	}
	maxMs = niceCeil(maxMs)
	name := "RPO"
	if rto {
		name = "RTO"
	}
	c := &svgChart{Title: name + " of the last " + strconv.Itoa(len(pts)) + " runs"}
	y := chartTopPad
	for i, p := range pts {
		got, target := pick(p)
		label := p.Finished.UTC().Format(time.DateTime)
		if i == len(pts)-1 {
			label = "this run"
		}
		b := svgBar{Label: label, Y: f1(y + 4), TextY: f1(y + 16), X: f1(chartLabelW), Class: p.Verdict,
			TickX: f1(scaleX(target, maxMs)), TickTitle: "target " + durText(target)}
		if got == nil {
			b.Value, b.W, b.ValueX = "not measured", "0", f1(chartLabelW+4)
		} else {
			w := barWidth(*got, maxMs)
			b.Value, b.W, b.ValueX = durText(*got), f1(w), f1(chartLabelW+w+4)
		}
		c.Bars = append(c.Bars, b)
		y += chartRowH
	}
	c.axis(y+4, maxMs)
	c.Height = f1(y + 4 + 34)
	return c
}

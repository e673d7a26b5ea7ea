package server

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"strconv"
	"time"
)

// The status page is one template and one stylesheet, embedded. The
// stylesheet is inlined in a <style> element whose SHA-256 the
// Content-Security-Policy names, so the page needs neither 'unsafe-inline'
// nor any request besides itself. Bars are inline SVG sized by attributes,
// so no style attribute is ever needed.
var (
	//go:embed status.html
	pageHTML string
	//go:embed status.css
	pageCSS string

	pageTemplate = template.Must(template.New("status").Parse(pageHTML))

	styleHash = func() string {
		sum := sha256.Sum256([]byte(pageCSS))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}()

	// contentSecurityPolicy allows the inline stylesheet and data: images
	// (the empty favicon) and nothing else: no script, no fetch, no frame.
	contentSecurityPolicy = "default-src 'none'; style-src " + styleHash +
		"; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

// phaseColors is the number of phase colour classes (p0 …) in status.css.
const phaseColors = 8

type pageView struct {
	CSS         template.CSS
	Generated   stamp
	Leader      bool
	Identity    string
	ConfigValid bool
	ConfigError string
	Attention   []string
	Schedules   []scheduleRow
	Plans       []planRow
	Drills      []drillRow
	Keys        []keyRow
	Stores      []StoreStatus
	Audit       *auditRow
}

type auditRow struct {
	AuditStatus
	Oldest, Sealed, Last stamp
	WaitTxt              string
}

// stamp is a point in time as the page shows it: absolute in UTC and
// relative to the page's generation.
type stamp struct {
	Set bool
	ISO string // datetime attribute
	Abs string // 2026-05-04 02:00 UTC
	Rel string // in 3m, 2h 5m ago
}

type scheduleRow struct {
	ScheduleStatus
	Next, Last, Success stamp
	Badge               string // CSS class of the outcome badge
	Outcome             string // its text
}

// bar is a horizontal bar of an SVG 100 units wide: Fill% filled, and a
// target marker at Target% when HasTarget.
type bar struct {
	Fill      string
	HasTarget bool
	Target    string
	Over      bool
	Label     string // aria-label: what the bar says in words
}

type planRow struct {
	PlanStatus
	Newest    stamp
	RPO       string
	TargetTxt string
	State     string // "over target", "within target", "no target", "no backup yet"
	StateTag  string // CSS class
	Bar       bar
}

type segment struct {
	Name, Took string
	X, W       string
	Color      int
}

type drillRow struct {
	DrillStatus
	Last      stamp
	Badge     string
	VerdictTx string
	RTOTxt    string
	RTOTarget string
	RTOOver   bool
	RPOTxt    string
	RPOTarget string
	RPOOver   bool
	GapTxt    string
	Segments  []segment
	Bar       bar // the RTO bar's target marker and words; Fill unused
}

type keyRow struct {
	KeyStatus
	CreatedAt stamp
	AgeTxt    string
	PeriodTxt string
	State     string
	StateTag  string
	Bar       bar
}

// newPageView turns a derived Status into what the template shows.
func newPageView(s Status) pageView {
	now := s.GeneratedAt
	v := pageView{
		CSS:         template.CSS(pageCSS),
		Generated:   newStamp(now, now),
		Leader:      s.Leader,
		Identity:    s.Identity,
		ConfigValid: s.ConfigValid,
		ConfigError: s.ConfigError,
		Stores:      s.Stores,
	}
	if !s.ConfigValid {
		v.Attention = append(v.Attention, "The last configuration load failed; the service runs the previous configuration.")
	}
	for _, sc := range s.Schedules {
		r := scheduleRow{
			ScheduleStatus: sc,
			Next:           newStamp(sc.NextRun, now),
			Last:           newStamp(sc.LastRun, now),
			Success:        newStamp(sc.LastSuccess, now),
			Badge:          outcomeClass(sc.LastOutcome),
			Outcome:        sc.LastOutcome,
		}
		if r.Outcome == "" {
			r.Outcome = "never run"
		}
		if r.Badge == "bad" || r.Badge == "warn" {
			v.Attention = append(v.Attention, fmt.Sprintf("Schedule %s: last run %s.", sc.Name, sc.LastOutcome))
		}
		v.Schedules = append(v.Schedules, r)
	}
	for _, p := range s.Plans {
		r := planRow{PlanStatus: p, Newest: newStamp(p.NewestPointInTime, now)}
		switch {
		case p.NewestPointInTime.IsZero():
			r.State, r.StateTag, r.RPO = "no backup yet", "bad", "none"
			v.Attention = append(v.Attention, fmt.Sprintf("Plan %s has no verified backup.", p.Name))
		case p.Target <= 0:
			r.State, r.StateTag, r.RPO = "no target", "none", duration(p.LiveRPO)
		case p.LiveRPO > p.Target:
			r.State, r.StateTag, r.RPO = "over target", "bad", duration(p.LiveRPO)
			v.Attention = append(v.Attention, fmt.Sprintf("Plan %s: live RPO %s is over its %s target.", p.Name, r.RPO, duration(p.Target)))
		default:
			r.State, r.StateTag, r.RPO = "within target", "ok", duration(p.LiveRPO)
		}
		if p.Target > 0 {
			r.TargetTxt = duration(p.Target)
		}
		if !p.NewestPointInTime.IsZero() {
			r.Bar = newBar(p.LiveRPO, p.Target)
			r.Bar.Label = "live RPO " + r.RPO
			if p.Target > 0 {
				r.Bar.Label += " against a target of " + r.TargetTxt + ", " + r.State
			}
		}
		v.Plans = append(v.Plans, r)
	}
	for _, d := range s.Drills {
		v.Drills = append(v.Drills, newDrillRow(d, now, &v.Attention))
	}
	for _, k := range s.Keys {
		r := keyRow{KeyStatus: k, CreatedAt: newStamp(k.Created, now), AgeTxt: duration(k.Age)}
		switch {
		case k.Created.IsZero():
			r.AgeTxt, r.State, r.StateTag = "unknown", "age unknown", "none"
		case k.RotationPeriod <= 0:
			r.State, r.StateTag = "no rotation schedule", "none"
		case k.Age > k.RotationPeriod:
			r.State, r.StateTag = "rotation overdue", "bad"
			v.Attention = append(v.Attention, fmt.Sprintf("Key provider %s: primary version is %s old, past its %s rotation period.", k.Provider, r.AgeTxt, duration(k.RotationPeriod)))
		default:
			r.State, r.StateTag = "within period", "ok"
		}
		if k.RotationPeriod > 0 {
			r.PeriodTxt = duration(k.RotationPeriod)
			if !k.Created.IsZero() {
				r.Bar = newBar(k.Age, k.RotationPeriod)
				r.Bar.Label = "age " + r.AgeTxt + " of a " + r.PeriodTxt + " rotation period"
			}
		}
		v.Keys = append(v.Keys, r)
	}
	for _, st := range s.Stores {
		if !st.Reachable {
			v.Attention = append(v.Attention, fmt.Sprintf("Store %s is unreachable.", st.Name))
		}
	}
	if a := s.Audit; a != nil {
		r := &auditRow{AuditStatus: *a, Oldest: newStamp(a.OldestUnsealed, now), Sealed: newStamp(a.LastSealed, now), Last: newStamp(a.LastEvent, now)}
		if !a.OldestUnsealed.IsZero() {
			r.WaitTxt = duration(now.Sub(a.OldestUnsealed))
		}
		if !a.Receiving {
			v.Attention = append(v.Attention, fmt.Sprintf("Audit log %s does not receive events.", a.Log))
		}
		v.Audit = r
	}
	return v
}

func newDrillRow(d DrillStatus, now time.Time, attention *[]string) drillRow {
	r := drillRow{
		DrillStatus: d,
		Last:        newStamp(d.LastRun, now),
		RTOTxt:      duration(d.RTO),
		RPOTxt:      duration(d.RPO),
		GapTxt:      duration(d.WorstGap),
		RTOOver:     d.RTOTarget > 0 && d.RTO > d.RTOTarget,
		RPOOver:     d.RPOTarget > 0 && d.RPO > d.RPOTarget,
	}
	switch d.Verdict {
	case "pass":
		r.Badge, r.VerdictTx = "ok", "pass"
	case "fail":
		r.Badge, r.VerdictTx = "bad", "fail"
		*attention = append(*attention, fmt.Sprintf("Drill %s failed its last run.", d.Name))
	case "":
		r.Badge, r.VerdictTx = "none", "never run"
	default:
		r.Badge, r.VerdictTx = "warn", d.Verdict
	}
	if d.RTOTarget > 0 {
		r.RTOTarget = duration(d.RTOTarget)
	}
	if d.RPOTarget > 0 {
		r.RPOTarget = duration(d.RPOTarget)
	}
	// The stacked bar: phases laid end to end on the same scale as the
	// target marker.
	var sum time.Duration
	for _, p := range d.Phases {
		sum += max(p.Duration, 0)
	}
	total := max(d.RTO, sum)
	r.Bar = newBar(total, d.RTOTarget)
	scale := barScale(total, d.RTOTarget)
	var x time.Duration
	for i, p := range d.Phases {
		w := max(p.Duration, 0)
		r.Segments = append(r.Segments, segment{
			Name:  p.Name,
			Took:  duration(p.Duration),
			X:     percent(x, scale),
			W:     percent(w, scale),
			Color: i % phaseColors,
		})
		x += w
	}
	r.Bar.Label = "RTO " + r.RTOTxt
	if d.RTOTarget > 0 {
		r.Bar.Label += " against a target of " + r.RTOTarget
	}
	return r
}

// barScale is the duration a full bar stands for: room for the value and
// for the target marker, which sits at 80% of the bar when the value is
// within target.
func barScale(v, target time.Duration) time.Duration {
	return max(v, target*5/4, 1)
}

func newBar(v, target time.Duration) bar {
	scale := barScale(v, target)
	b := bar{Fill: percent(max(v, 0), scale), Over: target > 0 && v > target}
	if target > 0 {
		b.HasTarget, b.Target = true, percent(target, scale)
	}
	return b
}

func percent(d, of time.Duration) string {
	return strconv.FormatFloat(min(100, 100*float64(d)/float64(of)), 'f', 2, 64)
}

func outcomeClass(outcome string) string {
	switch outcome {
	case "success":
		return "ok"
	case "failure":
		return "bad"
	case "partial", "abandoned":
		return "warn"
	case "":
		return "none"
	}
	return "warn"
}

func newStamp(t, now time.Time) stamp {
	if t.IsZero() {
		return stamp{}
	}
	t = t.UTC()
	s := stamp{Set: true, ISO: t.Format(time.RFC3339), Abs: t.Format("2006-01-02 15:04 UTC")}
	switch d := t.Sub(now); {
	case d > -time.Second && d < time.Second:
		s.Rel = "now"
	case d > 0:
		s.Rel = "in " + coarse(d)
	default:
		s.Rel = coarse(-d) + " ago"
	}
	return s
}

// coarse is a duration in at most two units, rounded down: 45s, 3m, 2h 5m,
// 3d 4h.
func coarse(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh %dm", h, m)
	default:
		days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd %dh", days, h)
	}
}

// duration is a measured duration as the page shows it: 350ms, 4.2s, 42s,
// 3m 05s, 15m, 1h 32m, 9d 4h.
func duration(d time.Duration) string {
	if d < 0 {
		return "-" + duration(-d)
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		m, sec := int(d/time.Minute), int(d%time.Minute/time.Second)
		if sec == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm %02ds", m, sec)
	}
	return coarse(d)
}

func renderPage(s Status) ([]byte, error) {
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, newPageView(s)); err != nil {
		return nil, fmt.Errorf("render status page: %w", err)
	}
	return b.Bytes(), nil
}

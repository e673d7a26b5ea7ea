package evidence

import (
	"fmt"
	"math"
	"time"
)

// Verdicts of a drill report.
const (
	VerdictPass = "pass"
	VerdictFail = "fail"
)

// Check outcomes.
const (
	CheckPass    = "pass"
	CheckFail    = "fail"
	CheckSkipped = "skipped"
)

// Phase outcomes.
const (
	PhaseSuccess = "success"
	PhaseFailure = "failure"
	PhaseSkipped = "skipped"
)

// Targets are a drill's RTO and RPO targets in milliseconds.
type Targets struct {
	RTOMs int64 `json:"rtoMs"`
	RPOMs int64 `json:"rpoMs"`
}

// Measured are what a drill measured, in milliseconds. A nil value was not
// measured: RTO when the restore never reached a verified state, RPO when
// no backup was selected.
type Measured struct {
	RTOMs *int64 `json:"rtoMs,omitempty"`
	RPOMs *int64 `json:"rpoMs,omitempty"`
	// WorstGapMs is the worst gap between consecutive successful backups
	// in the drill's window: the RPO the schedule really delivers. It is
	// shown beside the RPO target but does not decide the verdict.
	WorstGapMs *int64 `json:"worstGapMs,omitempty"`
}

// Check is one verification check of a drill.
type Check struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail"`
}

// Ms returns d in whole milliseconds, for the fields of Measured.
func Ms(d time.Duration) *int64 {
	n := d.Milliseconds()
	return &n
}

// Judge decides a drill's verdict by the rule of docs/format.md §5.6: fail
// when the RTO or RPO was not measured or exceeds its target, when no check
// ran, or when any check did not pass; otherwise pass. reasons explain each
// miss with the numbers; it is empty on a pass.
func Judge(targets Targets, measured Measured, checks []Check) (verdict string, reasons []string) {
	reasons = []string{}
	judge := func(name string, got *int64, target int64, missing string) {
		switch {
		case got == nil:
			reasons = append(reasons, fmt.Sprintf("%s not measured: %s (target %s)", name, missing, msText(target)))
		case *got > target:
			reasons = append(reasons, fmt.Sprintf("%s %s exceeds the target %s by %s", name, msText(*got), msText(target), msText(*got-target)))
		}
	}
	judge("RTO", measured.RTOMs, targets.RTOMs, "the restore did not reach a verified state")
	judge("RPO", measured.RPOMs, targets.RPOMs, "no restored data point")
	if len(checks) == 0 {
		reasons = append(reasons, "no verification check ran")
	}
	for i, c := range checks {
		name := c.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		switch c.Outcome {
		case CheckPass:
			continue
		case CheckFail:
			reasons = append(reasons, fmt.Sprintf("check %s failed%s", name, detailSuffix(c.Detail)))
		case CheckSkipped:
			reasons = append(reasons, fmt.Sprintf("check %s was skipped%s", name, detailSuffix(c.Detail)))
		case "":
			reasons = append(reasons, fmt.Sprintf("check %s has no outcome", name))
		default:
			reasons = append(reasons, fmt.Sprintf("check %s has outcome %q, not pass", name, c.Outcome))
		}
	}
	if len(reasons) > 0 {
		return VerdictFail, reasons
	}
	return VerdictPass, reasons
}

func detailSuffix(detail string) string {
	if detail == "" {
		return ""
	}
	return ": " + detail
}

// msText shows a millisecond count as a duration with the exact count,
// e.g. "15m0s (900000 ms)".
func msText(ms int64) string {
	if ms > math.MaxInt64/int64(time.Millisecond) || ms < math.MinInt64/int64(time.Millisecond) {
		return fmt.Sprintf("%d ms", ms)
	}
	return fmt.Sprintf("%s (%d ms)", time.Duration(ms)*time.Millisecond, ms)
}

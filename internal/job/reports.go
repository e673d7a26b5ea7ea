package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// ReportFilter selects drill runs for ListReports; zero fields match all.
type ReportFilter struct {
	Drill    string
	Verdict  string
	From, To time.Time
}

// DrillRun is one drill run as its signed evidence record tells it.
type DrillRun struct {
	Time                     time.Time `json:"time"`
	Drill                    string    `json:"drill"`
	RunID                    string    `json:"runId"`
	BackupID                 string    `json:"backupId"`
	Verdict                  string    `json:"verdict"`
	RTOMs                    *int64    `json:"rtoMs,omitempty"`
	RPOMs                    *int64    `json:"rpoMs,omitempty"`
	TargetRTOMs, TargetRPOMs int64
	Report                   string `json:"report"`
	Signer                   string `json:"signer"`
	Evidence                 string `json:"evidence"`
}

// ListReports lists the drill runs of the store's evidence log, oldest
// first, from their signed records (evidence.Log.OfKind): with trusted
// keys every record must be signed by one of them.
func ListReports(ctx context.Context, st store.Store, f ReportFilter, trusted []evidence.PublicKey) ([]DrillRun, error) {
	recs, err := evidence.NewLog(st, nil, nil, evidence.WithTrustedKeys(trusted...)).OfKind(ctx, evidence.KindDrill)
	if err != nil {
		return nil, fmt.Errorf("report list: %w", err)
	}
	var out []DrillRun
	for _, r := range recs {
		d := drillRun(r)
		switch {
		case f.Drill != "" && d.Drill != f.Drill,
			f.Verdict != "" && d.Verdict != f.Verdict,
			!f.From.IsZero() && d.Time.Before(f.From),
			!f.To.IsZero() && !d.Time.Before(f.To):
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

func drillRun(r evidence.Record) DrillRun {
	s := r.Subject
	str := func(m map[string]any, k string) string { v, _ := m[k].(string); return v }
	num := func(m map[string]any, k string) *int64 {
		if v, ok := m[k].(int64); ok {
			return &v
		}
		return nil
	}
	d := DrillRun{Time: r.Time, Drill: str(s, "drill"), RunID: r.ID, BackupID: str(s, "backupId"), Verdict: str(s, "verdict"), Signer: r.Signer, Evidence: r.Key()}
	if m, ok := s["measured"].(map[string]any); ok {
		d.RTOMs, d.RPOMs = num(m, "rtoMs"), num(m, "rpoMs")
	}
	if m, ok := s["targets"].(map[string]any); ok {
		if v := num(m, "rtoMs"); v != nil {
			d.TargetRTOMs = *v
		}
		if v := num(m, "rpoMs"); v != nil {
			d.TargetRPOMs = *v
		}
	}
	if m, ok := s["report"].(map[string]any); ok {
		d.Report = str(m, "key")
	}
	return d
}

// maxReport bounds a report.json read back (evidence's own bound).
const maxReport = 8 << 20

// ShowReport returns the signed report of drill run runID: its drill
// record is found in the evidence log, report.json is read, its SHA-256
// compared with the record's citation, and its signature verified (by a
// trusted key, when given).
func ShowReport(ctx context.Context, st store.Store, runID string, trusted []evidence.PublicKey) (evidence.Report, DrillRun, error) {
	fail := func(err error) (evidence.Report, DrillRun, error) {
		return evidence.Report{}, DrillRun{}, fmt.Errorf("report show %s: %w", runID, err)
	}
	all, err := evidence.NewLog(st, nil, nil, evidence.WithTrustedKeys(trusted...)).OfKind(ctx, evidence.KindDrill)
	if err != nil {
		return fail(err)
	}
	var recs []evidence.Record
	for _, r := range all {
		if r.ID == runID {
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return fail(errors.New("no drill record with that run ID in the evidence log"))
	}
	run := drillRun(recs[len(recs)-1])
	cite, _ := recs[len(recs)-1].Subject["report"].(map[string]any)
	sum, _ := cite["sha256"].(string)
	rc, err := st.Get(ctx, run.Report, store.GetOptions{})
	if err != nil {
		return fail(err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxReport+1))
	rc.Close()
	if err != nil {
		return fail(err)
	}
	if len(data) > maxReport {
		return fail(fmt.Errorf("%s is larger than %d bytes", run.Report, maxReport))
	}
	if got := evidence.Hash(data); got != sum {
		return fail(fmt.Errorf("%s has SHA-256 %s, but its drill record cites %s: %w", run.Report, got, sum, evidence.ErrTampered))
	}
	rep, err := evidence.VerifyReport(data, run.Report, trusted...)
	if err != nil {
		return fail(err)
	}
	return rep, run, nil
}

// TrendOf returns the newest n of runs (oldest first) as a report's trend
// points; runs whose record lacks a verdict or targets are left out.
func TrendOf(runs []DrillRun, n int) []evidence.TrendPoint {
	var out []evidence.TrendPoint
	for _, r := range runs {
		if (r.Verdict != evidence.VerdictPass && r.Verdict != evidence.VerdictFail) || r.TargetRTOMs < 1 || r.TargetRPOMs < 1 {
			continue
		}
		out = append(out, evidence.TrendPoint{RunID: r.RunID, Finished: r.Time, Verdict: r.Verdict,
			RTOMs: r.RTOMs, RPOMs: r.RPOMs, TargetRTOMs: r.TargetRTOMs, TargetRPOMs: r.TargetRPOMs})
	}
	// Log order is append order; records' times come from their
	// writers' clocks, so order by time as the report requires.
	slices.SortStableFunc(out, func(a, b evidence.TrendPoint) int { return a.Finished.Compare(b.Finished) })
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

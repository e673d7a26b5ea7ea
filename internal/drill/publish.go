package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// Report returns the run's report (docs/format.md §5.6), unsigned: the
// run, targets and measurements, every phase in order, every check, the
// verdict and reasons, and the HIPAA rows this run is evidence for.
func (r *Result) Report() evidence.Report {
	rep := evidence.Report{
		Format:   evidence.ReportFormat,
		Drill:    r.Drill,
		RunID:    r.RunID,
		BackupID: r.BackupID,
		Started:  r.Started,
		Finished: r.Finished,
		Incident: r.Incident,
		Targets:  r.Targets,
		Measured: r.Measured,
		Checks:   append([]evidence.Check{}, r.Checks...),
		Verdict:  r.Verdict,
		Reasons:  append([]string{}, r.Reasons...),
	}
	if rep.Finished.Before(rep.Started) {
		rep.Finished = rep.Started
	}
	for _, p := range r.Phases {
		rep.Phases = append(rep.Phases, evidence.Phase{
			Name: p.Name, StartedMs: max(0, p.Offset.Milliseconds()), DurationMs: max(0, p.Duration.Milliseconds()), Outcome: p.Outcome,
			PeakMemoryBytes: p.PeakMemoryBytes,
		})
	}
	if r.Manifest != nil && r.KeyObject != "" {
		rep.Keys = &evidence.ReportKeys{DataKeyID: r.Manifest.DataKeyID, KeyObject: r.KeyObject, KeyProviders: append([]string{}, r.KeyProviders...)}
	}
	for _, p := range r.Trend {
		if !p.Finished.After(rep.Finished) {
			rep.Trend = append(rep.Trend, p)
		}
	}
	if n := len(rep.Trend); n > evidence.MaxTrend {
		rep.Trend = rep.Trend[n-evidence.MaxTrend:]
	}
	rep.HIPAA = evidence.DrillHIPAA(rep)
	if r.Manifest != nil && len(r.Artifacts) > 0 && r.decrypted() {
		rep.HIPAA = append(rep.HIPAA, evidence.HIPAARow{
			Section:  "§164.312(a)(2)(iv)",
			Standard: "Encryption and decryption (A)",
			Evidence: fmt.Sprintf("artifacts %s were client-side AES-256-GCM envelopes; the backup's data key %s was unwrapped with %s and every artifact authenticated, its plaintext SHA-256 equal to the manifest's",
				strings.Join(r.Artifacts, ", "), r.Manifest.DataKeyID, r.KeyObject),
		})
	}
	if r.Manifest != nil && r.Manifest.Etcd != nil {
		rep.HIPAA = append(rep.HIPAA, evidence.HIPAARow{
			Section:  "§164.308(a)(7)(ii)(E)",
			Standard: "Applications and data criticality analysis (A)",
			Evidence: fmt.Sprintf("this drill covers the control plane of plan %s: the etcd keyspace (%d keys at revision %d), with targets RTO %s and RPO %s",
				r.Manifest.Plan, r.Manifest.Etcd.Inventory.Keys, r.Manifest.Etcd.Revision,
				time.Duration(r.Targets.RTOMs)*time.Millisecond, time.Duration(r.Targets.RPOMs)*time.Millisecond),
		})
	}
	return rep
}

// decrypted reports whether the decrypt phase succeeded, which means every
// fetched artifact was decrypted and authenticated.
func (r *Result) decrypted() bool {
	for _, p := range r.Phases {
		if p.Name == PhaseDecrypt {
			return p.Outcome == evidence.PhaseSuccess
		}
	}
	return false
}

// PublishOptions say where and how to publish a drill's report.
type PublishOptions struct {
	// Store receives reports/<run-id>/ and the evidence record. Required.
	Store evidence.StoreLike
	// Signer signs the report and the record. Required.
	Signer *evidence.Signer
	// Retention is how long the report and record are retained; zero
	// means evidence.DefaultRetention (six years).
	Retention time.Duration
	// Now is the evidence log's clock; nil means time.Now.
	Now func() time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// FromStore, when set, names the replica store the drill read the
	// backup from (docs/format.md §9.2); recorded as subject.fromStore.
	FromStore string
}

// Published is a drill report as stored.
type Published struct {
	// Report is the signed report.
	Report evidence.Report
	// Objects are the stored report.md, report.html and report.json.
	Objects evidence.ReportObjects
	// Record is the drill's evidence record, citing the report.
	Record evidence.Record
}

// Publish signs res's report, writes it to the store under
// reports/<run-id>/ (report.json last, as the commit point), and appends a
// drill record citing it to the evidence log. A failed drill is published
// the same way: a failed report is evidence too.
func Publish(ctx context.Context, res Result, opts PublishOptions) (Published, error) {
	if opts.Store == nil || opts.Signer == nil {
		return Published{}, errors.New("publish drill report: store and signer are required")
	}
	evOpts := []evidence.Option{evidence.WithRetention(opts.Retention), evidence.WithLogger(opts.Logger)}
	signed, _, err := opts.Signer.SignReport(res.Report())
	if err != nil {
		return Published{}, fmt.Errorf("publish drill report: %w", err)
	}
	objs, err := evidence.WriteReport(ctx, opts.Store, signed, evOpts...)
	if err != nil {
		return Published{}, fmt.Errorf("publish drill report: %w", err)
	}
	outcome := evidence.OutcomeSuccess
	if signed.Verdict != evidence.VerdictPass {
		outcome = evidence.OutcomeFailure
	}
	subject := map[string]any{
		"drill":    res.Drill,
		"backupId": res.BackupID,
		"verdict":  signed.Verdict,
		"targets":  map[string]any{"rtoMs": res.Targets.RTOMs, "rpoMs": res.Targets.RPOMs},
		"report":   objs.Citation(),
		"checks":   len(res.Checks),
	}
	if len(res.KeyProviders) > 0 {
		names := make([]any, len(res.KeyProviders))
		for i, n := range res.KeyProviders {
			names[i] = n
		}
		subject["keyProviders"] = names
	}
	if res.KeyObject != "" {
		subject["unwrappedWith"] = res.KeyObject
	}
	if opts.FromStore != "" {
		subject["fromStore"] = opts.FromStore
	}
	if m := res.Manifest; m != nil {
		subject["backupStatus"] = m.Status
		var skipped []any
		for _, s := range m.Skipped {
			skipped = append(skipped, map[string]any{"source": s.Source, "reason": s.Reason})
		}
		if len(skipped) > 0 {
			subject["skipped"] = skipped
		}
	}
	measured := map[string]any{}
	if v := res.Measured.RTOMs; v != nil {
		measured["rtoMs"] = *v
	}
	if v := res.Measured.RPOMs; v != nil {
		measured["rpoMs"] = *v
	}
	if v := res.Measured.WorstGapMs; v != nil {
		measured["worstGapMs"] = *v
	}
	subject["measured"] = measured
	if len(res.ScheduleMisses) > 0 {
		reasons := map[string]any{}
		for _, m := range res.ScheduleMisses {
			key := m.Status
			if m.Reason != "" {
				key += ": " + m.Reason
			}
			n, _ := reasons[key].(int64)
			reasons[key] = n + 1
		}
		subject["scheduleMisses"] = map[string]any{"count": int64(len(res.ScheduleMisses)), "byReason": reasons}
	}
	var sections []string
	for _, h := range signed.HIPAA {
		sections = append(sections, h.Section)
	}
	log := evidence.NewLog(opts.Store, opts.Signer, opts.Now, evOpts...)
	rec, err := log.Append(ctx, evidence.Record{
		Kind: evidence.KindDrill, ID: res.RunID, Outcome: outcome, Subject: subject, HIPAA: sections,
	})
	if err != nil {
		return Published{Report: signed, Objects: objs, Record: rec}, fmt.Errorf("publish drill report: evidence record: %w", err)
	}
	return Published{Report: signed, Objects: objs, Record: rec}, nil
}

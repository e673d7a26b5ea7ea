package evidence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// ReportFormat is the format of a drill report (docs/format.md §5.6).
const ReportFormat = "lifeboat.dev/report/v1"

const (
	maxReportSize  = 8 << 20
	maxDrillName   = 253
	reportsPrefix  = "reports/"
	reportJSONName = "report.json"
)

// Report is a drill report (docs/format.md §5.6). Build it, set Verdict
// and Reasons with Judge, sign it with Signer.SignReport and store it with
// WriteReport.
type Report struct {
	Format   string    `json:"format"`
	Drill    string    `json:"drill"`
	RunID    string    `json:"runId"`
	BackupID string    `json:"backupId"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Incident is the simulated incident RPO is measured from.
	Incident time.Time  `json:"incident"`
	Targets  Targets    `json:"targets"`
	Measured Measured   `json:"measured"`
	Phases   []Phase    `json:"phases"`
	Checks   []Check    `json:"checks"`
	Verdict  string     `json:"verdict"`
	Reasons  []string   `json:"reasons"`
	HIPAA    []HIPAARow `json:"hipaa"`
	// Keys names the key that opened the backup; nil when none did (the
	// member is then absent).
	Keys *ReportKeys `json:"keys,omitempty"`
	// Trend holds earlier runs of the same Drill, oldest first, from the
	// signed evidence log; empty when there were none (the member is then
	// absent).
	Trend []TrendPoint `json:"trend,omitempty"`

	Signer    string `json:"signer"`
	PublicKey string `json:"publicKey"`
	Signature string `json:"signature"`
}

// Phase is one phase of a drill, timed from the drill's start.
type Phase struct {
	Name       string `json:"name"`
	StartedMs  int64  `json:"startedMs"`
	DurationMs int64  `json:"durationMs"`
	Outcome    string `json:"outcome"`
	// PeakMemoryBytes is the most memory the drill held during the phase
	// (docs/format.md §5.6); 0 when not measured (the member is then
	// absent).
	PeakMemoryBytes int64 `json:"peakMemoryBytes,omitempty"`
}

// HIPAARow cites one safeguard and what this run showed for it.
type HIPAARow struct {
	Section  string `json:"section"`
	Standard string `json:"standard"`
	Evidence string `json:"evidence"`
}

// ReportKeys names the keys a drill restored with.
type ReportKeys struct {
	// DataKeyID is the backup's data key.
	DataKeyID string `json:"dataKeyId"`
	// KeyObject is the KEK version whose key object unwrapped it.
	KeyObject string `json:"keyObject"`
	// KeyProviders are the KeyProviders the drill could unwrap with.
	KeyProviders []string `json:"keyProviders"`
}

// TrendPoint is one earlier run of a Drill, as its signed drill record
// tells it.
type TrendPoint struct {
	RunID    string    `json:"runId"`
	Finished time.Time `json:"finished"`
	Verdict  string    `json:"verdict"`
	RTOMs    *int64    `json:"rtoMs,omitempty"`
	RPOMs    *int64    `json:"rpoMs,omitempty"`
	// TargetRTOMs and TargetRPOMs are that run's targets.
	TargetRTOMs int64 `json:"targetRtoMs"`
	TargetRPOMs int64 `json:"targetRpoMs"`
}

// MaxTrend is the most earlier runs a report carries.
const MaxTrend = 20

// Key returns the key of the report's JSON in a store.
func (r Report) Key() string { return reportKey(r.RunID, reportJSONName) }

func reportKey(runID, name string) string { return reportsPrefix + runID + "/" + name }

func (r Report) tree(withSignature bool) map[string]any {
	measured := map[string]any{}
	for name, v := range map[string]*int64{"rtoMs": r.Measured.RTOMs, "rpoMs": r.Measured.RPOMs, "worstGapMs": r.Measured.WorstGapMs} {
		if v != nil {
			measured[name] = *v
		}
	}
	phases := make([]any, len(r.Phases))
	for i, p := range r.Phases {
		ph := map[string]any{"name": p.Name, "startedMs": p.StartedMs, "durationMs": p.DurationMs, "outcome": p.Outcome}
		if p.PeakMemoryBytes != 0 {
			ph["peakMemoryBytes"] = p.PeakMemoryBytes
		}
		phases[i] = ph
	}
	checks := make([]any, len(r.Checks))
	for i, c := range r.Checks {
		checks[i] = map[string]any{"name": c.Name, "outcome": c.Outcome, "detail": c.Detail}
	}
	reasons := make([]any, len(r.Reasons))
	for i, s := range r.Reasons {
		reasons[i] = s
	}
	hipaa := make([]any, len(r.HIPAA))
	for i, h := range r.HIPAA {
		hipaa[i] = map[string]any{"section": h.Section, "standard": h.Standard, "evidence": h.Evidence}
	}
	m := map[string]any{
		"format":    r.Format,
		"drill":     r.Drill,
		"runId":     r.RunID,
		"backupId":  r.BackupID,
		"started":   formatTime(r.Started),
		"finished":  formatTime(r.Finished),
		"incident":  formatTime(r.Incident),
		"targets":   map[string]any{"rtoMs": r.Targets.RTOMs, "rpoMs": r.Targets.RPOMs},
		"measured":  measured,
		"phases":    phases,
		"checks":    checks,
		"verdict":   r.Verdict,
		"reasons":   reasons,
		"hipaa":     hipaa,
		"signer":    r.Signer,
		"publicKey": r.PublicKey,
	}
	if k := r.Keys; k != nil {
		provs := make([]any, len(k.KeyProviders))
		for i, n := range k.KeyProviders {
			provs[i] = n
		}
		m["keys"] = map[string]any{"dataKeyId": k.DataKeyID, "keyObject": k.KeyObject, "keyProviders": provs}
	}
	if len(r.Trend) > 0 {
		trend := make([]any, len(r.Trend))
		for i, p := range r.Trend {
			e := map[string]any{"runId": p.RunID, "finished": formatTime(p.Finished), "verdict": p.Verdict,
				"targetRtoMs": p.TargetRTOMs, "targetRpoMs": p.TargetRPOMs}
			if p.RTOMs != nil {
				e["rtoMs"] = *p.RTOMs
			}
			if p.RPOMs != nil {
				e["rpoMs"] = *p.RPOMs
			}
			trend[i] = e
		}
		m["trend"] = trend
	}
	if withSignature {
		m["signature"] = r.Signature
	}
	return m
}

// Validate checks the report's fields (docs/format.md §5.6), including
// that the verdict follows from the numbers by Judge's rule, but not the
// signature. The error names the field.
func (r Report) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &fieldError{field, fmt.Sprintf(format, args...)}
	}
	switch {
	case r.Format != ReportFormat:
		return bad("format", "%q: want %q", r.Format, ReportFormat)
	case r.Drill == "" || len(r.Drill) > maxDrillName:
		return bad("drill", "%q: want 1 to %d bytes", r.Drill, maxDrillName)
	case r.RunID == "." || r.RunID == "..":
		return bad("runId", "%q is not a valid run ID", r.RunID)
	}
	if err := validID(r.RunID); err != nil {
		return bad("runId", "%v", err)
	}
	if r.BackupID != "" {
		if err := validID(r.BackupID); err != nil {
			return bad("backupId", "%v", err)
		}
	}
	if r.Finished.Before(r.Started) {
		return bad("finished", "%s is before started %s", formatTime(r.Finished), formatTime(r.Started))
	}
	if r.Targets.RTOMs < 1 {
		return bad("targets.rtoMs", "%d: want at least 1", r.Targets.RTOMs)
	}
	if r.Targets.RPOMs < 1 {
		return bad("targets.rpoMs", "%d: want at least 1", r.Targets.RPOMs)
	}
	for _, m := range []struct {
		name string
		v    *int64
	}{{"measured.rtoMs", r.Measured.RTOMs}, {"measured.rpoMs", r.Measured.RPOMs}, {"measured.worstGapMs", r.Measured.WorstGapMs}} {
		if m.v != nil && *m.v < 0 {
			return bad(m.name, "%d is negative", *m.v)
		}
	}
	for i, p := range r.Phases {
		f := indexPath("phases", i)
		switch {
		case p.Name == "":
			return bad(f+".name", "empty")
		case p.StartedMs < 0:
			return bad(f+".startedMs", "%d is negative", p.StartedMs)
		case p.DurationMs < 0:
			return bad(f+".durationMs", "%d is negative", p.DurationMs)
		case p.Outcome != PhaseSuccess && p.Outcome != PhaseFailure && p.Outcome != PhaseSkipped:
			return bad(f+".outcome", "%q: want success, failure or skipped", p.Outcome)
		case p.PeakMemoryBytes < 0:
			return bad(f+".peakMemoryBytes", "%d is negative", p.PeakMemoryBytes)
		}
	}
	for i, c := range r.Checks {
		f := indexPath("checks", i)
		switch {
		case c.Name == "":
			return bad(f+".name", "empty")
		case c.Outcome != CheckPass && c.Outcome != CheckFail && c.Outcome != CheckSkipped:
			return bad(f+".outcome", "%q: want pass, fail or skipped", c.Outcome)
		}
	}
	for i, h := range r.HIPAA {
		f := indexPath("hipaa", i)
		switch {
		case h.Section == "":
			return bad(f+".section", "empty")
		case h.Standard == "":
			return bad(f+".standard", "empty")
		}
	}
	if k := r.Keys; k != nil {
		switch {
		case k.DataKeyID == "":
			return bad("keys.dataKeyId", "empty")
		case k.KeyObject == "":
			return bad("keys.keyObject", "empty")
		}
	}
	if len(r.Trend) > MaxTrend {
		return bad("trend", "%d runs, more than %d", len(r.Trend), MaxTrend)
	}
	for i, p := range r.Trend {
		f := indexPath("trend", i)
		switch {
		case validID(p.RunID) != nil:
			return bad(f+".runId", "%q is not a valid run ID", p.RunID)
		case p.Verdict != VerdictPass && p.Verdict != VerdictFail:
			return bad(f+".verdict", "%q: want pass or fail", p.Verdict)
		case p.RTOMs != nil && *p.RTOMs < 0:
			return bad(f+".rtoMs", "%d is negative", *p.RTOMs)
		case p.RPOMs != nil && *p.RPOMs < 0:
			return bad(f+".rpoMs", "%d is negative", *p.RPOMs)
		case p.TargetRTOMs < 1:
			return bad(f+".targetRtoMs", "%d: want at least 1", p.TargetRTOMs)
		case p.TargetRPOMs < 1:
			return bad(f+".targetRpoMs", "%d: want at least 1", p.TargetRPOMs)
		case i > 0 && p.Finished.Before(r.Trend[i-1].Finished):
			return bad(f+".finished", "%s is before the previous run's; want oldest first", formatTime(p.Finished))
		}
	}
	if r.Verdict != VerdictPass && r.Verdict != VerdictFail {
		return bad("verdict", "%q: want pass or fail", r.Verdict)
	}
	if want, reasons := Judge(r.Targets, r.Measured, r.Checks); r.Verdict != want {
		why := "every target was met and every check passed"
		if len(reasons) > 0 {
			why = reasons[0]
		}
		return bad("verdict", "%q, but the report's numbers give %q (%s)", r.Verdict, want, why)
	}
	return nil
}

// SignReport validates r, fills Format if empty, and returns it signed
// with its canonical JSON text.
func (s *Signer) SignReport(r Report) (Report, []byte, error) {
	if r.Format == "" {
		r.Format = ReportFormat
	}
	if r.Reasons == nil {
		r.Reasons = []string{}
	}
	r.Started, r.Finished, r.Incident = r.Started.UTC(), r.Finished.UTC(), r.Incident.UTC()
	if err := r.Validate(); err != nil {
		return Report{}, nil, fmt.Errorf("evidence: sign report %s: %w", r.RunID, err)
	}
	r.Signer, r.PublicKey, r.Signature = s.KeyID(), s.pub.Base64(), ""
	t := r.tree(false)
	msg, err := appendCanonical(nil, t, "")
	if err != nil {
		return Report{}, nil, fmt.Errorf("evidence: sign report %s: %w", r.RunID, err)
	}
	if r.Signature, err = s.sign(msg); err != nil {
		return Report{}, nil, fmt.Errorf("evidence: sign report %s: %w", r.RunID, err)
	}
	t["signature"] = r.Signature
	data, err := appendCanonical(nil, t, "")
	if err != nil {
		return Report{}, nil, fmt.Errorf("evidence: sign report %s: %w", r.RunID, err)
	}
	if len(data) > maxReportSize {
		return Report{}, nil, fmt.Errorf("evidence: sign report %s: %d bytes, more than %d", r.RunID, len(data), maxReportSize)
	}
	return r, data, nil
}

// MarshalReport returns the canonical JSON text of a signed report.
func MarshalReport(r Report) ([]byte, error) {
	return appendCanonical(nil, r.tree(true), "")
}

// VerifyReport checks that data is a canonical, valid report signed by one
// of trusted (or, with no trusted keys, by its own publicKey: integrity
// without origin) and returns it. name labels the report in errors. The
// error is a *VerifyError (matching ErrTampered) naming the field and the
// problem.
func VerifyReport(data []byte, name string, trusted ...PublicKey) (Report, error) {
	r, err := parseReport(data, trusted)
	if err != nil {
		return Report{}, problem(name, err)
	}
	return r, nil
}

// VerifyReportFile reads a report.json file and verifies it offline; see
// VerifyReport. A file that cannot be read is an error not matching
// ErrTampered.
func VerifyReportFile(path string, trusted ...PublicKey) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("read report: %w", err)
	}
	defer f.Close()
	data, err := readLimited(f, maxReportSize)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return Report{}, &VerifyError{Object: path, Problem: err.Error()}
		}
		return Report{}, fmt.Errorf("read report %s: %w", path, err)
	}
	return VerifyReport(data, path, trusted...)
}

func parseReport(data []byte, trusted []PublicKey) (Report, error) {
	if len(data) > maxReportSize {
		return Report{}, fmt.Errorf("%d bytes, more than %d", len(data), maxReportSize)
	}
	v, err := parseCanonical(data)
	if err != nil {
		return Report{}, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Report{}, &fieldError{"", "not a JSON object"}
	}
	d := &decoder{obj: obj}
	d.only("format", "drill", "runId", "backupId", "started", "finished", "incident", "targets", "measured",
		"phases", "checks", "verdict", "reasons", "hipaa", "keys", "trend", "signer", "publicKey", "signature")
	var r Report
	r.Format = d.string("format")
	if d.err == nil && r.Format != ReportFormat {
		return Report{}, &fieldError{"format", fmt.Sprintf("%q: want %q (this lifeboat reads no other version)", r.Format, ReportFormat)}
	}
	r.Drill = d.string("drill")
	r.RunID = d.string("runId")
	r.BackupID = d.string("backupId")
	r.Started = d.time("started")
	r.Finished = d.time("finished")
	r.Incident = d.time("incident")
	if t := d.sub("targets", d.object("targets")); d.err == nil {
		r.Targets.RTOMs = t.int("rtoMs")
		r.Targets.RPOMs = t.int("rpoMs")
		t.noOthers()
		d.err = t.err
	}
	if m := d.sub("measured", d.object("measured")); d.err == nil {
		r.Measured.RTOMs = m.optInt("rtoMs")
		r.Measured.RPOMs = m.optInt("rpoMs")
		r.Measured.WorstGapMs = m.optInt("worstGapMs")
		m.noOthers()
		d.err = m.err
	}
	for i, e := range d.array("phases") {
		p := d.sub(indexPath("phases", i), e)
		ph := Phase{Name: p.string("name"), StartedMs: p.int("startedMs"), DurationMs: p.int("durationMs"), Outcome: p.string("outcome")}
		if m := p.optInt("peakMemoryBytes"); m != nil {
			if *m < 1 {
				p.fail("peakMemoryBytes", "%d: want at least 1, or no member", *m)
			}
			ph.PeakMemoryBytes = *m
		}
		p.noOthers()
		if d.err = p.err; d.err != nil {
			break
		}
		r.Phases = append(r.Phases, ph)
	}
	for i, e := range d.array("checks") {
		c := d.sub(indexPath("checks", i), e)
		ch := Check{Name: c.string("name"), Outcome: c.string("outcome"), Detail: c.string("detail")}
		c.noOthers()
		if d.err = c.err; d.err != nil {
			break
		}
		r.Checks = append(r.Checks, ch)
	}
	r.Verdict = d.string("verdict")
	r.Reasons = d.strings("reasons")
	for i, e := range d.array("hipaa") {
		h := d.sub(indexPath("hipaa", i), e)
		row := HIPAARow{Section: h.string("section"), Standard: h.string("standard"), Evidence: h.string("evidence")}
		h.noOthers()
		if d.err = h.err; d.err != nil {
			break
		}
		r.HIPAA = append(r.HIPAA, row)
	}
	if _, ok := obj["keys"]; ok && d.err == nil {
		k := d.sub("keys", d.object("keys"))
		if d.err == nil {
			r.Keys = &ReportKeys{DataKeyID: k.string("dataKeyId"), KeyObject: k.string("keyObject"), KeyProviders: k.strings("keyProviders")}
			k.noOthers()
			d.err = k.err
		}
	}
	if _, ok := obj["trend"]; ok && d.err == nil {
		arr := d.array("trend")
		if d.err == nil && len(arr) == 0 {
			d.err = &fieldError{"trend", "empty: omit the member instead"}
		}
		for i, e := range arr {
			p := d.sub(indexPath("trend", i), e)
			tp := TrendPoint{RunID: p.string("runId"), Finished: p.time("finished"), Verdict: p.string("verdict"),
				RTOMs: p.optInt("rtoMs"), RPOMs: p.optInt("rpoMs"), TargetRTOMs: p.int("targetRtoMs"), TargetRPOMs: p.int("targetRpoMs")}
			p.noOthers()
			if d.err = p.err; d.err != nil {
				break
			}
			r.Trend = append(r.Trend, tp)
		}
	}
	r.Signer = d.string("signer")
	r.PublicKey = d.string("publicKey")
	r.Signature = d.string("signature")
	d.noOthers()
	if d.err != nil {
		return Report{}, d.err
	}
	if err := r.Validate(); err != nil {
		return Report{}, err
	}
	pub, err := checkSignature(obj, r.Signer, r.PublicKey, r.Signature)
	if err != nil {
		return Report{}, err
	}
	if len(trusted) > 0 && !containsKey(trusted, pub) {
		return Report{}, &fieldError{"publicKey", fmt.Sprintf("signed by key %s, which is not one of the trusted keys (%s)", r.Signer, keyIDs(trusted))}
	}
	return r, nil
}

// ReportObjects are the keys and digests of a stored report.
type ReportObjects struct {
	JSON, Markdown, HTML store.ObjectInfo
}

// Citation is how a drill's evidence record cites its report (its
// subject.report, docs/format.md §5.3): report.json's key and SHA-256, and
// the same for report.md and report.html under renderings, so that the
// pages people read are as tamper-evident as the signed JSON.
func (o ReportObjects) Citation() map[string]any {
	return map[string]any{
		"key": o.JSON.Key, "sha256": o.JSON.SHA256,
		"renderings": []any{
			map[string]any{"key": o.Markdown.Key, "sha256": o.Markdown.SHA256},
			map[string]any{"key": o.HTML.Key, "sha256": o.HTML.SHA256},
		},
	}
}

// WriteReport stores a signed report under reports/<run-id>/:
// report.md and report.html (rendered from it), then report.json last as
// the commit point (docs/format.md §5.6). It refuses a report that does
// not verify against its own key. Writing the same report again succeeds
// without change; other bytes under one of its keys are an error. Objects
// are retained until the report's finished time plus the retention
// (DefaultRetention unless WithRetention says otherwise).
func WriteReport(ctx context.Context, st StoreLike, r Report, opts ...Option) (ReportObjects, error) {
	o := buildOptions(opts)
	fail := func(err error) (ReportObjects, error) {
		return ReportObjects{}, fmt.Errorf("evidence: write report %s: %w", r.RunID, err)
	}
	data, err := MarshalReport(r)
	if err != nil {
		return fail(err)
	}
	if _, err := parseReport(data, nil); err != nil {
		return fail(fmt.Errorf("not a valid signed report (sign it with Signer.SignReport): %w", err))
	}
	md, err := RenderMarkdown(r)
	if err != nil {
		return fail(err)
	}
	page, err := RenderHTML(r)
	if err != nil {
		return fail(err)
	}
	retain := r.Finished.Add(o.retention)
	var out ReportObjects
	for _, obj := range []struct {
		name string
		data []byte
		info *store.ObjectInfo
	}{
		{"report.md", md, &out.Markdown},
		{"report.html", page, &out.HTML},
		{reportJSONName, data, &out.JSON},
	} {
		info, err := putOnce(ctx, st, reportKey(r.RunID, obj.name), obj.data, retain)
		if err != nil {
			return fail(err)
		}
		info.SHA256 = Hash(obj.data)
		*obj.info = info
	}
	o.logger.Info("drill report written", "drill", r.Drill, "run", r.RunID, "verdict", r.Verdict, "key", out.JSON.Key)
	return out, nil
}

// putOnce stores data under key, or accepts an existing object with the
// same bytes.
func putOnce(ctx context.Context, st StoreLike, key string, data []byte, retain time.Time) (store.ObjectInfo, error) {
	sum := Hash(data)
	info, err := st.Put(ctx, key, bytes.NewReader(data), store.PutOptions{RetainUntil: retain, SHA256: sum, Size: int64(len(data))})
	if err == nil {
		return info, nil
	}
	if !errors.Is(err, store.ErrExists) {
		return store.ObjectInfo{}, err
	}
	have, rerr := readObject(ctx, st, key, int64(len(data)))
	if rerr == nil && bytes.Equal(have, data) {
		return store.ObjectInfo{Key: key, Size: int64(len(data)), SHA256: sum}, nil
	}
	if rerr != nil && !errors.Is(rerr, ErrTampered) {
		return store.ObjectInfo{}, rerr
	}
	return store.ObjectInfo{}, fmt.Errorf("%s exists with other bytes: %w", key, err)
}

var errTooLarge = errors.New("too large")

// readLimited reads all of r, failing with errTooLarge beyond limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes: %w", limit, errTooLarge)
	}
	return data, nil
}

package evidence

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

func sampleReport(t testing.TB) Report {
	t.Helper()
	start := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	r := Report{
		Drill:    "control-plane",
		RunID:    "drill-20260301T030000Z-a1b2",
		BackupID: "nightly-20260301T020000Z",
		Started:  start,
		Finished: start.Add(13 * time.Minute),
		Incident: start,
		Targets:  Targets{RTOMs: 900_000, RPOMs: 3_600_000},
		Measured: Measured{RTOMs: Ms(12 * time.Minute), RPOMs: Ms(61*time.Minute + 500*time.Millisecond), WorstGapMs: Ms(65 * time.Minute)},
		Phases: []Phase{
			{Name: "select", StartedMs: 0, DurationMs: 1200, Outcome: PhaseSuccess},
			{Name: "restore etcd", StartedMs: 1200, DurationMs: 300_000, Outcome: PhaseSuccess},
			{Name: "verify", StartedMs: 301_200, DurationMs: 418_800, Outcome: PhaseSuccess},
		},
		Checks: []Check{
			{Name: "resource-counts", Outcome: CheckPass, Detail: "1432 of 1432 objects"},
			{Name: "canary-decrypts", Outcome: CheckPass, Detail: "<script>alert(1)</script> | *bold* [x](y)"},
		},
	}
	r.Verdict, r.Reasons = Judge(r.Targets, r.Measured, r.Checks)
	r.HIPAA = DrillHIPAA(r)
	return r
}

func TestReportSignVerifyRender(t *testing.T) {
	signer := newTestSigner(t)
	r := sampleReport(t)
	if r.Verdict != VerdictFail || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "RPO 1h1m0.5s (3660500 ms) exceeds the target 1h0m0s (3600000 ms) by 1m0.5s") {
		t.Fatalf("verdict %s %q", r.Verdict, r.Reasons)
	}
	signed, data, err := signer.SignReport(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyReport(data, "report.json", signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := MarshalReport(got)
	if !bytes.Equal(again, data) || got.Signature != signed.Signature {
		t.Fatal("report does not round-trip")
	}
	for _, want := range []string{
		`{"backupId":"nightly-20260301T020000Z","checks":[{"detail":"1432 of 1432 objects","name":"resource-counts","outcome":"pass"}`,
		`"measured":{"rpoMs":3660500,"rtoMs":720000,"worstGapMs":3900000}`,
		`"targets":{"rpoMs":3600000,"rtoMs":900000},"verdict":"fail"}`,
	} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("report.json lacks %s:\n%s", want, data)
		}
	}

	md, err := RenderMarkdown(signed)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# Drill report: control-plane — FAIL\n",
		"| Run | `drill-20260301T030000Z-a1b2` |\n",
		"| Signed by | key `" + signer.KeyID() + "` |\n",
		"## Verdict: FAIL\n",
		"- RPO 1h1m0.5s (3660500 ms) exceeds the target 1h0m0s (3600000 ms) by 1m0.5s (60500 ms)\n",
		"| measure | target | measured | result |\n| --- | --- | --- | --- |\n",
		"| RTO | 15m0s (900000 ms) | 12m0s (720000 ms) | PASS |\n",
		"| RPO | 1h0m0s (3600000 ms) | 1h1m0.5s (3660500 ms) | FAIL |\n",
		"| Worst gap between backups | 1h0m0s (3600000 ms) (RPO target) | 1h5m0s (3900000 ms) | OVER RPO TARGET (not judged in v1) |\n",
		"| 2 | restore etcd | +1.2s | 5m0s | success |\n",
		"| resource-counts | PASS | 1432 of 1432 objects |\n",
		"| canary-decrypts | PASS | &lt;script&gt;alert(1)&lt;/script&gt; \\| \\*bold\\* \\[x\\](y) |\n",
		"| §164.308(a)(7)(ii)(D) | Testing and revision procedures (A) | RTO 12m0s against a target of 15m0s; RPO 1h1m0.5s against a target of 1h0m0s; worst gap between backups 1h5m0s; verdict FAIL |\n",
		"| §164.310(d)(2)(iv) |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("Markdown:\n%s", md)
	}

	page, err := RenderHTML(signed)
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	for _, want := range []string{
		"<!DOCTYPE html>",
		`<span class="verdict fail">FAIL</span>`,
		"<tr><td>RTO</td><td>15m0s (900000 ms)</td><td>12m0s (720000 ms)</td><td class=\"pass\">PASS</td></tr>",
		"<tr><td>RPO</td><td>1h0m0s (3600000 ms)</td><td>1h1m0.5s (3660500 ms)</td><td class=\"fail\">FAIL</td></tr>",
		"<td>2</td><td>restore etcd</td><td>&#43;1.2s</td><td>5m0s</td>",
		"&lt;script&gt;alert(1)&lt;/script&gt;",
		"<td>§164.308(a)(7)(ii)(B)</td><td>Disaster recovery plan (R)</td>",
		"<code>" + signer.KeyID() + "</code>",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	// Self-contained: no scripts, no external resources.
	if m := regexp.MustCompile(`(?i)<script|\bsrc=|\bhref=|https?://|@import|url\(`).FindString(html); m != "" {
		t.Errorf("HTML is not self-contained: %q", m)
	}
	if t.Failed() {
		t.Logf("HTML:\n%s", html)
	}
	// Deterministic.
	md2, _ := RenderMarkdown(got)
	page2, _ := RenderHTML(got)
	if !bytes.Equal(md, md2) || !bytes.Equal(page, page2) {
		t.Error("rendering is not a function of the report")
	}
}

func TestReportEveryByteChangeDetected(t *testing.T) {
	signer := newTestSigner(t)
	_, data, err := signer.SignReport(sampleReport(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		for _, mask := range []byte{0x01, 0x80} {
			changed := bytes.Clone(data)
			changed[i] ^= mask
			_, err := VerifyReport(changed, "report.json", signer.PublicKey())
			var ve *VerifyError
			if !errors.Is(err, ErrTampered) || !errors.As(err, &ve) || ve.Object != "report.json" || ve.Problem == "" {
				t.Fatalf("byte %d ^ %#x (%q): error %v", i, mask, data[i], err)
			}
		}
	}
	// Also without a trusted key: integrity against the report's own key.
	changed := bytes.Clone(data)
	changed[len(changed)/2] ^= 0x01
	if _, err := VerifyReport(changed, "report.json"); !errors.Is(err, ErrTampered) {
		t.Fatalf("without a key: %v", err)
	}
	if _, err := VerifyReport(append(bytes.Clone(data), '\n'), "report.json"); !errors.Is(err, ErrTampered) {
		t.Fatalf("trailing newline: %v", err)
	}
}

func TestVerifyReportFile(t *testing.T) {
	signer, other := newTestSigner(t), newTestSigner(t)
	_, data, err := signer.SignReport(sampleReport(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r, err := VerifyReportFile(path, other.PublicKey(), signer.PublicKey()); err != nil || r.RunID != "drill-20260301T030000Z-a1b2" {
		t.Fatalf("%v", err)
	}
	if _, err := VerifyReportFile(path); err != nil {
		t.Fatalf("without keys: %v", err)
	}
	_, err = VerifyReportFile(path, other.PublicKey())
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), path+": field publicKey: signed by key "+signer.KeyID()) {
		t.Fatalf("wrong key: %v", err)
	}
	_, err = VerifyReportFile(filepath.Join(t.TempDir(), "missing.json"))
	if err == nil || errors.Is(err, ErrTampered) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestReportFieldErrors(t *testing.T) {
	signer := newTestSigner(t)
	for _, tc := range []struct {
		name   string
		change func(*Report)
		field  string
	}{
		{"verdict contradicts numbers", func(r *Report) { r.Verdict = VerdictPass }, "verdict"},
		{"negative measurement", func(r *Report) { r.Measured.RTOMs = Ms(-time.Second) }, "measured.rtoMs"},
		{"finished before started", func(r *Report) { r.Finished = r.Started.Add(-time.Second) }, "finished"},
		{"bad run ID", func(r *Report) { r.RunID = "../x" }, "runId"},
		{"zero target", func(r *Report) { r.Targets.RTOMs = 0 }, "targets.rtoMs"},
		{"phase outcome", func(r *Report) { r.Phases[1].Outcome = "ok" }, "phases[1].outcome"},
		{"check name", func(r *Report) { r.Checks[0].Name = "" }, "checks[0].name"},
		{"hipaa section", func(r *Report) { r.HIPAA[2].Section = "" }, "hipaa[2].section"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleReport(t)
			tc.change(&r)
			_, _, err := signer.SignReport(r)
			if err == nil || !strings.Contains(err.Error(), "field "+tc.field+":") {
				t.Fatalf("SignReport: %v", err)
			}
			// A verifier given such a report, correctly signed, names the
			// same field.
			r.Format, r.Signer, r.PublicKey = ReportFormat, signer.KeyID(), signer.pub.Base64()
			data := signTree(t, signer, r.tree(false))
			_, err = VerifyReport(data, "r.json", signer.PublicKey())
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "r.json: field "+tc.field+":") {
				t.Fatalf("VerifyReport: %v", err)
			}
		})
	}
}

func TestWriteReport(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st := openFS(t, root)
	signer := newTestSigner(t)
	signed, data, err := signer.SignReport(sampleReport(t))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := WriteReport(ctx, st, signed)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "reports/drill-20260301T030000Z-a1b2/"
	if objs.JSON.Key != prefix+"report.json" || objs.Markdown.Key != prefix+"report.md" || objs.HTML.Key != prefix+"report.html" || objs.JSON.SHA256 != Hash(data) {
		t.Fatalf("objects %+v", objs)
	}
	info, err := st.Stat(ctx, objs.JSON.Key)
	if err != nil {
		t.Fatal(err)
	}
	if want := signed.Finished.Add(DefaultRetention); !info.RetainUntil.Equal(want) {
		t.Fatalf("retained until %s, want %s", info.RetainUntil, want)
	}
	stored := readFS(t, root, objs.JSON.Key)
	if !bytes.Equal(stored, data) {
		t.Fatal("stored report.json differs")
	}
	if _, err := VerifyReportFile(filepath.Join(root, "objects", objs.JSON.Key), signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
	// Writing the same report again changes nothing and succeeds.
	if _, err := WriteReport(ctx, st, signed); err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	// Another report under the same run ID is refused.
	r := sampleReport(t)
	r.Checks[0].Detail = "different"
	other, _, err := signer.SignReport(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteReport(ctx, st, other); !errors.Is(err, store.ErrExists) {
		t.Fatalf("conflicting report: %v", err)
	}
	// Unsigned reports are refused.
	unsigned := sampleReport(t)
	unsigned.RunID = "unsigned"
	if _, err := WriteReport(ctx, st, unsigned); err == nil || !strings.Contains(err.Error(), "SignReport") {
		t.Fatalf("unsigned: %v", err)
	}
}

func TestMarkdownEscaping(t *testing.T) {
	for in, want := range map[string]string{
		"a|b":        `a\|b`,
		"line\nnext": "line next",
		"- item":     `\- item`,
		"# head":     `\# head`,
		"1. first":   `1\. first`,
		"2026":       "2026",
		"a_b*c`d~":   "a\\_b\\*c\\`d\\~",
		"<b>&":       "&lt;b&gt;&amp;",
		`back\slash`: `back\\slash`,
	} {
		if got := mdText(in); got != want {
			t.Errorf("mdText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRenderJUnit: a failed drill's report as JUnit XML has one case per
// objective and check, the failed ones (here the RPO) marked failures with
// the reason, and the report key and signer as properties; it parses as
// XML.
func TestRenderJUnit(t *testing.T) {
	signer := newTestSigner(t)
	signed, _, err := signer.SignReport(sampleReport(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := RenderJUnit(signed, "reports/x/report.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Props []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"properties>property"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if doc.Tests != 4 || doc.Failures != 1 || len(doc.Suites) != 1 {
		t.Fatalf("tests %d failures %d\n%s", doc.Tests, doc.Failures, b)
	}
	s := doc.Suites[0]
	if s.Cases[1].Name != "RPO" || s.Cases[1].Failure == nil || !strings.Contains(s.Cases[1].Failure.Message, "exceeds the target 1h0m0s") || s.Cases[0].Failure != nil {
		t.Fatalf("cases %+v", s.Cases)
	}
	props := map[string]string{}
	for _, p := range s.Props {
		props[p.Name] = p.Value
	}
	if props["report"] != "reports/x/report.json" || props["signer"] != signer.KeyID() || props["verdict"] != VerdictFail {
		t.Fatalf("properties %v", props)
	}
}

// TestReportKeysAndTrend: the optional keys and trend members round-trip
// under the signature, are absent when unset (so earlier reports verify
// unchanged), render in both pages, and are checked field by field.
func TestReportKeysAndTrend(t *testing.T) {
	signer := newTestSigner(t)
	plain, plainData, err := signer.SignReport(sampleReport(t))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plainData, []byte(`"keys"`)) || bytes.Contains(plainData, []byte(`"trend"`)) || plain.Keys != nil {
		t.Fatalf("a report without keys or trend carries the members:\n%s", plainData)
	}
	r := trendReport(t)
	signed, data, err := signer.SignReport(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyReport(data, "report.json", signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got.Keys == nil || got.Keys.KeyObject != "vault-transit/lifeboat-kek@v3" || len(got.Trend) != 4 || *got.Trend[2].RTOMs != 17*60_000 || got.Trend[2].Verdict != VerdictFail {
		t.Fatalf("round trip: keys %+v trend %+v", got.Keys, got.Trend)
	}
	for _, want := range []string{
		`"keys":{"dataKeyId":"dk-5f0c1e","keyObject":"vault-transit/lifeboat-kek@v3","keyProviders":["vault-transit","breakglass-kms"]}`,
		`{"finished":"2026-02-01T03:00:00Z","rpoMs":2400000,"rtoMs":540000,"runId":"control-plane-20260201T030000Z-0a00","targetRpoMs":3600000,"targetRtoMs":900000,"verdict":"pass"}`,
	} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("report.json lacks %s:\n%s", want, data)
		}
	}
	md, _ := RenderMarkdown(signed)
	page, _ := RenderHTML(signed)
	for _, want := range []string{"| Data key | `dk-5f0c1e`, unwrapped with `vault-transit/lifeboat-kek@v3` |", "## Earlier runs of this drill", "| `control-plane-20260203T030000Z-0a02` | 2026-02-15T03:00:00Z | FAIL | 17m0s / 15m0s | 30m0s / 1h0m0s |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	for _, want := range []string{`aria-label="RTO of the last 5 runs"`, `aria-label="Phases on the RTO timeline"`, "RTO target 15m0s", "<td>vault-transit, breakglass-kms</td>"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("html lacks %q", want)
		}
	}

	for _, tc := range []struct {
		name   string
		change func(*Report)
		field  string
	}{
		{"empty key object", func(r *Report) { r.Keys.KeyObject = "" }, "keys.keyObject"},
		{"trend out of order", func(r *Report) { r.Trend[1].Finished = r.Trend[0].Finished.Add(-time.Hour) }, "trend[1].finished"},
		{"trend verdict", func(r *Report) { r.Trend[0].Verdict = "ok" }, "trend[0].verdict"},
		{"trend run ID", func(r *Report) { r.Trend[3].RunID = "../x" }, "trend[3].runId"},
		{"trend target", func(r *Report) { r.Trend[0].TargetRTOMs = 0 }, "trend[0].targetRtoMs"},
		{"trend too long", func(r *Report) {
			for len(r.Trend) <= MaxTrend {
				r.Trend = append(r.Trend, r.Trend[len(r.Trend)-1])
			}
		}, "trend"},
	} {
		bad := trendReport(t)
		bad.Format = ReportFormat
		tc.change(&bad)
		err := bad.Validate()
		var fe *fieldError
		if !errors.As(err, &fe) || fe.field != tc.field {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.field)
		}
	}
}

// phaseMemoryReport is sampleReport with each phase's peak memory.
func phaseMemoryReport(t testing.TB) Report {
	r := sampleReport(t)
	for i, b := range []int64{61 << 20, 2_468_184_064, 1_234_567_890} {
		r.Phases[i].PeakMemoryBytes = b
	}
	return r
}

// TestReportPhaseMemory: a phase's peak memory is signed, verified,
// rendered, and refused when not positive; a report without it is the
// report it was before.
func TestReportPhaseMemory(t *testing.T) {
	signer := newTestSigner(t)
	_, plainData, err := signer.SignReport(sampleReport(t))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plainData, []byte("peakMemoryBytes")) {
		t.Fatalf("a report without phase memory carries the member:\n%s", plainData)
	}
	signed, data, err := signer.SignReport(phaseMemoryReport(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`{"durationMs":300000,"name":"restore etcd","outcome":"success","peakMemoryBytes":2468184064,"startedMs":1200}`)) {
		t.Fatalf("report.json phases:\n%s", data)
	}
	got, err := VerifyReport(data, "report.json", signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got.Phases[1].PeakMemoryBytes != 2_468_184_064 {
		t.Fatalf("round trip: %+v", got.Phases)
	}
	md, _ := RenderMarkdown(signed)
	page, _ := RenderHTML(signed)
	if !strings.Contains(string(md), "| # | phase | starts at | duration | outcome | peak memory |") || !strings.Contains(string(md), "| 2 | restore etcd | +1.2s | 5m0s | success | 2.3 GiB |") {
		t.Errorf("markdown phases:\n%s", md)
	}
	if !strings.Contains(string(page), "<th>peak memory</th>") || !strings.Contains(string(page), "<td>61 MiB</td>") {
		t.Errorf("html lacks the peak memory column")
	}
	if pmd, _ := RenderMarkdown(sampleReport(t)); strings.Contains(string(pmd), "peak memory") {
		t.Errorf("markdown of a report without phase memory has the column")
	}

	bad := phaseMemoryReport(t)
	bad.Format = ReportFormat
	bad.Phases[2].PeakMemoryBytes = -1
	var fe *fieldError
	if err := bad.Validate(); !errors.As(err, &fe) || fe.field != "phases[2].peakMemoryBytes" {
		t.Errorf("negative peak memory: %v", err)
	}
	// A verifier refuses a signed report whose member is 0.
	tree := signed.tree(false)
	tree["phases"].([]any)[0].(map[string]any)["peakMemoryBytes"] = int64(0)
	zero := signTree(t, signer, tree)
	if _, err := VerifyReport(zero, "r.json", signer.PublicKey()); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "phases[0].peakMemoryBytes") {
		t.Errorf("a zero peak memory: %v", err)
	}
}

// vectorSigner is the test key of docs/format.md §5.6's vector: the
// Ed25519 key whose seed is 32 bytes of 0x01.
func vectorSigner(t testing.TB) *Signer {
	s, err := NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReportPhaseMemoryVector checks the vector of docs/format.md §5.6.
// Ed25519 signatures are deterministic, so signing the report again gives
// the file's bytes exactly. LIFEBOAT_WRITE_VECTORS=1 writes the file.
func TestReportPhaseMemoryVector(t *testing.T) {
	const path = "testdata/report-phase-memory.json"
	s := vectorSigner(t)
	_, data, err := s.SignReport(phaseMemoryReport(t))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("LIFEBOAT_WRITE_VECTORS") == "1" {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want) {
		t.Fatalf("signing the vector's report gives other bytes:\n%s\nwant:\n%s", data, want)
	}
	got, err := VerifyReport(want, path, s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got.Phases[0].PeakMemoryBytes != 61<<20 {
		t.Fatalf("vector phases %+v", got.Phases)
	}
}

// signTree signs a report's tree as it stands, valid or not, and returns
// the signed report's bytes: what a verifier is given.
func signTree(t testing.TB, signer *Signer, tree map[string]any) []byte {
	t.Helper()
	msg, _ := appendCanonical(nil, tree, "")
	sig, err := signer.sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	tree["signature"] = sig
	data, _ := appendCanonical(nil, tree, "")
	return data
}

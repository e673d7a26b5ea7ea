package evidence

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// trendReport is sampleReport with the keys it restored with and four
// earlier runs, one of them failed.
func trendReport(t testing.TB) Report {
	r := sampleReport(t)
	r.Keys = &ReportKeys{DataKeyID: "dk-5f0c1e", KeyObject: "vault-transit/lifeboat-kek@v3", KeyProviders: []string{"vault-transit", "breakglass-kms"}}
	day := 24 * time.Hour
	for i, p := range []struct {
		rto, rpo time.Duration
		verdict  string
	}{{9 * time.Minute, 40 * time.Minute, VerdictPass}, {11 * time.Minute, 50 * time.Minute, VerdictPass},
		{17 * time.Minute, 30 * time.Minute, VerdictFail}, {10 * time.Minute, 20 * time.Minute, VerdictPass}} {
		r.Trend = append(r.Trend, TrendPoint{
			RunID: fmt.Sprintf("control-plane-2026020%dT030000Z-0a0%d", i+1, i), Finished: r.Started.Add(-time.Duration(7*(4-i)) * day),
			Verdict: p.verdict, RTOMs: Ms(p.rto), RPOMs: Ms(p.rpo), TargetRTOMs: r.Targets.RTOMs, TargetRPOMs: r.Targets.RPOMs,
		})
	}
	return r
}

// TestReportInChromium opens rendered reports in headless chromium, as an
// auditor would, and checks what is seen: the verdict first, the charts
// drawn (bars per phase, the target marker, the trend), the page fetching
// nothing, no browser error; and it takes screenshots for docs/.
func TestReportInChromium(t *testing.T) {
	passing := trendReport(t)
	passing.Measured.RPOMs = Ms(42 * time.Minute)
	passing.Verdict, passing.Reasons = Judge(passing.Targets, passing.Measured, passing.Checks)
	passing.HIPAA = DrillHIPAA(passing)
	if passing.Verdict != VerdictPass {
		t.Fatalf("fixture: verdict %s", passing.Verdict)
	}
	failing := trendReport(t) // RPO 1h1m over its 1h target
	pages := map[string][]byte{}
	for name, r := range map[string]Report{"pass": passing, "fail": failing} {
		signed, _, err := newTestSigner(t).SignReport(r)
		if err != nil {
			t.Fatal(err)
		}
		page, err := RenderHTML(signed)
		if err != nil {
			t.Fatal(err)
		}
		pages["/"+name] = page
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		page, ok := pages[req.URL.Path]
		if !ok {
			http.NotFound(w, req)
			return
		}
		// The policy an auditor's file viewer would apply: nothing but
		// inline style.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	}))
	defer srv.Close()

	br := testenv.StartBrowser(t, 1280, 900)
	tab := br.Tab

	for _, name := range []string{"pass", "fail"} {
		if err := chromedp.Do(tab, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(srv.URL+"/"+name),
			chromedp.WaitVisible(chromedp.CSS("h1"))); err != nil {
			t.Fatalf("load the %s report: %v", name, err)
		}
		var seen struct {
			Badge, Summary, FirstH2   string
			Charts                    []string
			PhaseBars, TrendRTOBars   int
			Targets, Ticks            int
			PhaseBarFill, BarsVisible string
		}
		raw, err := chromedp.Run(tab, chromedp.Evaluate[[]byte](`(() => {
			const charts = Array.from(document.querySelectorAll('svg.chart'));
			const byName = n => charts.find(c => c.getAttribute('aria-label').startsWith(n));
			const phase = byName('Phases');
			const rto = byName('RTO of the last');
			const bar = phase.querySelector('rect.bar');
			const box = bar.getBoundingClientRect();
			return {
				Badge: document.querySelector('h1 .verdict').innerText,
				Summary: document.querySelector('p.summary').innerText,
				FirstH2: document.querySelector('h2').innerText,
				Charts: charts.map(c => c.getAttribute('aria-label')),
				PhaseBars: phase.querySelectorAll('rect.bar').length,
				TrendRTOBars: rto ? rto.querySelectorAll('rect.bar').length : 0,
				Targets: phase.querySelectorAll('line.target').length,
				Ticks: document.querySelectorAll('line.tick').length,
				PhaseBarFill: getComputedStyle(bar).fill,
				BarsVisible: box.width > 0 && box.height > 0 ? 'yes' : 'no',
			}; })()`))
		if err != nil {
			t.Fatalf("%s report: evaluate: %v", name, err)
		}
		if err := json.Unmarshal(raw, &seen); err != nil {
			t.Fatal(err)
		}
		wantBadge := strings.ToUpper(name)
		wantCharts := []string{"Measured against targets", "Phases on the RTO timeline", "RTO of the last 5 runs", "RPO of the last 5 runs"}
		if seen.Badge != wantBadge || !slices.Equal(seen.Charts, wantCharts) || seen.PhaseBars != 3 || seen.TrendRTOBars != 5 ||
			seen.Targets != 1 || seen.Ticks != 3+2*5 || seen.PhaseBarFill != "rgb(45, 164, 78)" || seen.BarsVisible != "yes" {
			t.Errorf("%s report as seen: %+v", name, seen)
		}
		if name == "fail" && !strings.Contains(seen.Summary, "RPO 1h1m0.5s (3660500 ms) exceeds the target") {
			t.Errorf("fail report's summary %q does not say why first", seen.Summary)
		}
		shot, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if _, err := png.Decode(bytes.NewReader(shot)); err != nil {
			t.Fatalf("screenshot is not a PNG: %v", err)
		}
		out := filepath.Join(t.TempDir(), "report.png")
		if os.Getenv("LIFEBOAT_UPDATE_SCREENSHOTS") == "1" {
			out = filepath.Join("..", "..", "docs", "drill-report-"+name+".png")
		}
		if err := os.WriteFile(out, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	requests, problems := br.Requests(), br.Problems()
	if len(requests) != 2 {
		t.Errorf("the pages made network requests %q, want only the two pages", requests)
	}
	if len(problems) > 0 {
		t.Errorf("the browser reported problems (a CSP violation is one):\n%s", strings.Join(problems, "\n"))
	}
}

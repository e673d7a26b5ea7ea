package server

import (
	"bytes"
	"encoding/json"
	"image/png"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// screenshotPath is the committed screenshot of the status page, rewritten
// only when LIFEBOAT_UPDATE_SCREENSHOTS=1.
const screenshotPath = "../../docs/status-page.png"

// TestStatusPageInChromium loads the status page in headless chromium and
// checks what a person sees: the schedules table, the failing badge, the
// plan over its RPO target, the drill's phases; that the page fetched
// nothing but itself and that the browser reported no error (a CSP
// violation would be one); and it takes a full-page screenshot.
func TestStatusPageInChromium(t *testing.T) {
	srv := httptest.NewServer(New(Options{Status: fixedStatus(sampleStatus()), Metrics: NewMetrics(nil)}))
	defer srv.Close()

	br := testenv.StartBrowser(t, 1440, 900)
	tab := br.Tab

	if err := chromedp.Do(tab,
		chromedp.EmulateViewport(1440, 900),
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#schedules table")),
	); err != nil {
		t.Fatalf("load the status page in chromium: %v", err)
	}
	eval := func(js string, out any) {
		t.Helper()
		raw, err := chromedp.Run(tab, chromedp.Evaluate[[]byte](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("evaluate %s: %v (%s)", js, err, raw)
		}
	}

	// The schedules table as a person reads it, cell by cell (innerText is
	// the rendered text: uppercase where CSS says so, nothing hidden).
	var rows [][]string
	eval(`Array.from(document.querySelectorAll('#schedules tbody tr')).map(r =>
		Array.from(r.cells).map(c => c.innerText.replace(/\s+/g, ' ').trim()))`, &rows)
	want := [][]string{
		{"nightly", "BACKUP nightly-full", "0 2 * * * America/New_York", "2026-05-05 06:00 UTC in 15h 57m",
			"2026-05-04 06:00 UTC 8h 3m ago 20260504T060000Z-3f2a", "success", "2026-05-04 06:12 UTC 7h 51m ago"},
		{"etcd-hourly", "BACKUP etcd-only", "0 * * * * UTC", "2026-05-04 15:00 UTC in 57m",
			"2026-05-04 14:00 UTC 3m ago 20260504T140000Z-9b1c", "failure", "2026-05-04 12:01 UTC 2h 2m ago"},
		{"weekly-drill running", "DRILL control-plane", "30 3 * * 0 UTC", "2026-05-10 03:30 UTC in 5d 13h",
			"2026-05-03 03:30 UTC 34h 33m ago r-20260503", "success", "2026-05-03 03:44 UTC 34h 19m ago"},
		{"quarterly-rotation suspended", "ROTATION kms-rotate", "0 4 1 */3 * UTC", "suspended",
			"2026-04-01 04:00 UTC 33d 10h ago rot-20260401", "partial", "2026-04-01 04:09 UTC 33d 9h ago"},
	}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("schedules table reads\n%s\nwant\n%s", table(rows), table(want))
	}

	// The failing schedule's badge says so in words and in red.
	var badge struct{ Text, Background string }
	eval(`(() => { const b = document.querySelector('tr[data-schedule="etcd-hourly"] .badge');
		return {Text: b.innerText, Background: getComputedStyle(b).backgroundColor}; })()`, &badge)
	if badge.Text != "failure" || badge.Background != "rgb(255, 235, 233)" {
		t.Errorf("failing badge: %+v, want the text failure on a red background", badge)
	}

	// The plan over its RPO target: the marker in words, and a red bar.
	var plans []struct {
		Plan, State, BarFill string
		Over                 bool
	}
	eval(`Array.from(document.querySelectorAll('#plans tbody tr')).map(r => ({
		Plan: r.dataset.plan,
		State: r.querySelector('.badge').innerText,
		Over: r.classList.contains('over-target'),
		BarFill: getComputedStyle(r.querySelector('svg.bar rect.fill')).fill }))`, &plans)
	if len(plans) != 2 ||
		plans[0].Plan != "nightly-full" || !plans[0].Over || plans[0].State != "over target" || plans[0].BarFill != "rgb(207, 34, 46)" ||
		plans[1].Plan != "etcd-only" || plans[1].Over || plans[1].State != "within target" || plans[1].BarFill != "rgb(45, 164, 78)" {
		t.Errorf("plans: %+v", plans)
	}

	// The drill's RTO by phase: one coloured segment and one legend entry
	// per phase, the target marker, the report link.
	var drill struct {
		Segments, Targets int
		Legend            []string
		Target, Report    string
	}
	eval(`(() => { const r = document.querySelector('tr[data-drill="control-plane"]');
		return { Segments: r.querySelectorAll('svg.bar rect[class^="p"]').length,
			Targets: r.querySelectorAll('svg.bar line.target').length,
			Legend: Array.from(r.querySelectorAll('.legend li')).map(li => li.innerText.replace(/\s+/g, ' ').trim()),
			Target: r.querySelector('.target-txt').innerText,
			Report: r.querySelector('a').href }; })()`, &drill)
	wantLegend := []string{"select 2.0s", "fetch 3m 10s", "decrypt 48s", "restore etcd 2m 05s", "start etcd 21s", "start control plane 4m 36s", "verify 2m 30s"}
	if drill.Segments != 7 || drill.Targets != 1 || !slices.Equal(drill.Legend, wantLegend) ||
		drill.Target != "target 15m · within target" ||
		drill.Report != "https://reports.example.internal/drills/control-plane/r-20260503" {
		t.Errorf("control-plane drill: %+v", drill)
	}

	// The audit log's row.
	var audit []string
	eval(`Array.from(document.querySelector('#audit tbody tr').cells).map(c => c.innerText.replace(/\s+/g, ' ').trim())`, &audit)
	if want := []string{"apiserver · lifeboat-audit-0", "receiving webhook", "1834 events, oldest 3m 12s old", "seq 20417, sealed 3m ago, events to 3m ago"}; !slices.Equal(audit, want) {
		t.Errorf("audit row %q, want %q", audit, want)
	}

	png1, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(png1))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if w := img.Bounds().Dx(); w != 1440 {
		t.Errorf("screenshot is %dpx wide, want 1440", w)
	}
	out := filepath.Join(t.TempDir(), "status-page.png")
	if os.Getenv("LIFEBOAT_UPDATE_SCREENSHOTS") == "1" {
		out = screenshotPath
	}
	if err := os.WriteFile(out, png1, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)

	requests, problems := br.Requests(), br.Problems()
	if len(requests) != 1 || requests[0] != srv.URL+"/" {
		t.Errorf("the page made network requests %q, want only the page itself", requests)
	}
	if len(problems) > 0 {
		t.Errorf("the browser reported problems:\n%s", strings.Join(problems, "\n"))
	}
}

func table(rows [][]string) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString("  " + strings.Join(r, " | ") + "\n")
	}
	return b.String()
}

package testenv

import (
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser is a tab of Debian's chromium, headless, that records the
// network requests its pages make and the problems it reports (errors and
// warnings in its log and console, failed loads, exceptions: a CSP
// violation is one).
type Browser struct {
	// Tab is the chromedp context of the tab.
	Tab context.Context

	mu       sync.Mutex
	requests []string
	problems []string
}

// StartBrowser starts chromium in a window of width × height for the
// test's lifetime (two minutes at most). The test fails, never skips,
// without chromium: `make test` installs it (`make chromium`).
func StartBrowser(t testing.TB, width, height int) *Browser {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Fatal("chromium is missing: this test drives a real headless browser; install it with `make chromium` at the repository root (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // CI runs as root
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("lang", "en-US"),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	b := &Browser{}
	tab, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(b.listen))
	b.Tab = tab
	t.Cleanup(func() { cancelTab(); cancelAlloc(); cancel() })
	return b
}

func (b *Browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if !strings.HasPrefix(ev.Request.URL, "data:") {
			b.requests = append(b.requests, ev.Request.URL)
		}
	case *network.EventLoadingFailed:
		b.problems = append(b.problems, "loading failed: "+ev.ErrorText)
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
			b.problems = append(b.problems, string(ev.Entry.Source)+": "+ev.Entry.Text)
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
			b.problems = append(b.problems, "console "+string(ev.Type))
		}
	case *runtime.EventExceptionThrown:
		b.problems = append(b.problems, "exception: "+ev.ExceptionDetails.Text)
	}
}

// Requests returns the URLs the pages requested (data: URLs left out).
func (b *Browser) Requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string{}, b.requests...)
}

// Problems returns what the browser reported as wrong.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string{}, b.problems...)
}

package testenv

import (
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// Chromium returns the allocator options that run Debian's chromium
// headless in a window of width × height, with its own profile directory
// and no proxy. A test fails, never skips, without chromium: `make test`
// installs it (`make chromium`).
func Chromium(t testing.TB, width, height int) []chromedp.ExecAllocatorOption {
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
	return append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // CI runs as root
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("lang", "en-US"),
	)
}

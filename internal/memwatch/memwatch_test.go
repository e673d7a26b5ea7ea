package memwatch

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeProc writes a /proc tree: this process with resident pages selfPages
// and a child with childPages, started from a second thread, which has a
// child of its own with grandPages.
func fakeProc(t *testing.T, selfPages, childPages, grandPages int) string {
	t.Helper()
	root := t.TempDir()
	self := os.Getpid()
	write := func(rel, data string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := strconv.Itoa(self)
	write(s+"/statm", fmt.Sprintf("9999 %d 0 0 0 0 0\n", selfPages))
	write(s+"/task/"+s+"/children", "")
	write(s+"/task/424242/children", "777 ")
	write("777/statm", fmt.Sprintf("9999 %d 0 0 0 0 0\n", childPages))
	write("777/task/777/children", "778")
	write("778/statm", fmt.Sprintf("9999 %d 0 0 0 0 0\n", grandPages))
	return root
}

// clock is a fake clock moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// TestSampleSumsTheTreeAndExtra: a sample is the resident sets of this
// process and its descendants (through every thread's children file),
// plus the extra bytes.
func TestSampleSumsTheTreeAndExtra(t *testing.T) {
	root := fakeProc(t, 100, 20, 3)
	page := int64(os.Getpagesize())
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	c := &clock{t: t0}
	w := Start(Options{Proc: root, Extra: func() int64 { return 5 }, Now: c.now, Interval: time.Hour})
	w.Stop()
	want := 123*page + 5
	if got := w.Peak(t0, t0); got != want {
		t.Fatalf("Peak = %d, want %d (123 pages and 5 bytes)", got, want)
	}
}

// TestPeakWindow: Peak takes the samples within a span and the two that
// bracket it, and no others.
func TestPeakWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	w := &Watch{o: Options{Interval: 100 * time.Millisecond}}
	for i, b := range []int64{10, 50, 30, 70, 20, 5} {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		w.samples = append(w.samples, sample{at, at, b})
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		from, to time.Duration
		want     int64
	}{
		{0, 0, 50},             // the first, and the next
		{ms(110), ms(190), 50}, // none inside: the two around it (50, 30)
		{ms(210), ms(290), 70}, // 30 before, 70 after
		{ms(200), ms(200), 70}, // the one at it, and those around it
		{ms(410), ms(450), 20}, // 20 before, 5 after
		{ms(510), ms(600), 5},  // only the last, before it
		{ms(-100), ms(-50), 10},
		{0, ms(500), 70},
	} {
		if got := w.Peak(t0.Add(tc.from), t0.Add(tc.to)); got != tc.want {
			t.Errorf("Peak(+%s, +%s) = %d, want %d", tc.from, tc.to, got, tc.want)
		}
	}
	if got := (&Watch{}).Peak(t0, t0); got != 0 {
		t.Errorf("Peak without samples = %d", got)
	}
}

// TestSamplesBounded: a long run keeps at most maxSamples samples, merged
// in pairs as it goes, and its peaks stay where they were: a spike in one
// sample is found by a span around it, and not by spans away from it.
func TestSamplesBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	c := &clock{t: t0}
	w := &Watch{o: Options{Interval: 20 * time.Millisecond, Now: c.now}}
	const n = 5 * maxSamples
	spike := 3*maxSamples + 7
	for i := range n {
		c.set(t0.Add(time.Duration(i) * 20 * time.Millisecond))
		b := int64(100 + i%3)
		if i == spike {
			b = 1 << 30
		}
		w.record(b)
	}
	if len(w.samples) > maxSamples {
		t.Fatalf("%d samples kept", len(w.samples))
	}
	at := t0.Add(time.Duration(spike) * 20 * time.Millisecond)
	if got := w.Peak(at, at); got != 1<<30 {
		t.Errorf("Peak at the spike = %d", got)
	}
	if got := w.Peak(at.Add(-time.Minute), at.Add(-50*time.Second)); got != 102 {
		t.Errorf("Peak a minute before the spike = %d, want 102", got)
	}
	if got := w.Peak(t0, t0.Add(time.Duration(n)*20*time.Millisecond)); got != 1<<30 {
		t.Errorf("Peak over the run = %d", got)
	}
}

// TestNoProc: where /proc cannot be read, samples are 0 and Peak says
// nothing, even with extra bytes (a sample without this process's own
// memory would understate it).
func TestNoProc(t *testing.T) {
	t0 := time.Now()
	w := Start(Options{Proc: filepath.Join(t.TempDir(), "none"), Extra: func() int64 { return 1 << 20 }})
	w.Stop()
	if got := w.Peak(t0, time.Now()); got != 0 {
		t.Fatalf("Peak = %d without /proc, want 0", got)
	}
}

// TestChildMemoryIsCounted starts a real child process that holds 64 MiB
// and checks that the samples taken while it runs count it, and the ones
// after it exits do not.
func TestChildMemoryIsCounted(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w := Start(Options{Interval: 5 * time.Millisecond})
	defer w.Stop()
	time.Sleep(50 * time.Millisecond)
	before := w.Peak(time.Now().Add(-40*time.Millisecond), time.Now())
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "MEMWATCH_HOLD=64")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "holding\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	// The children are looked for every childrenEvery samples.
	time.Sleep(childrenEvery * 5 * time.Millisecond * 4)
	t1 := time.Now()
	time.Sleep(50 * time.Millisecond)
	during := w.Peak(t1, time.Now())
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(childrenEvery * 5 * time.Millisecond * 4)
	t2 := time.Now()
	time.Sleep(50 * time.Millisecond)
	after := w.Peak(t2, time.Now())
	if before <= 0 || during < before+60<<20 || after > during-60<<20 {
		t.Fatalf("resident memory before %d, while a child held 64 MiB %d, after it exited %d", before, during, after)
	}
}

// TestMain runs the child of TestChildMemoryIsCounted when told to: it
// touches MEMWATCH_HOLD MiB, says so, and holds them until its stdin
// closes.
func TestMain(m *testing.M) {
	if mib, _ := strconv.Atoi(os.Getenv("MEMWATCH_HOLD")); mib > 0 {
		b := make([]byte, mib<<20)
		for i := range b {
			b[i] = byte(i)
		}
		fmt.Println("holding")
		os.Stdin.Read(make([]byte, 1))
		fmt.Fprintln(os.Stderr, len(b), b[len(b)-1])
		os.Exit(0)
	}
	os.Exit(m.Run())
}

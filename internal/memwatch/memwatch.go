package memwatch

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultInterval is how often a Watch samples unless told otherwise.
const DefaultInterval = 20 * time.Millisecond

// childrenEvery is how many samples pass between two looks for
// descendants; the resident sets of those known are read at every sample.
const childrenEvery = 10

// Options configure a Watch.
type Options struct {
	// Interval between samples; DefaultInterval when zero.
	Interval time.Duration
	// Extra, when set, returns bytes held that no resident set shows (a
	// memory file no process maps); it is added to each sample and must
	// be safe to call from another goroutine.
	Extra func() int64
	// Now is the clock samples are timed by, the one the caller times its
	// phases with; time.Now when nil.
	Now func() time.Time
	// Proc is the proc file system's root; "/proc" when empty.
	Proc string
}

// sample is one reading, or, once readings were merged to bound memory,
// the largest of several taken from first to last.
type sample struct {
	first, last time.Time
	bytes       int64
}

// maxSamples bounds what a Watch keeps (about 40 bytes a sample): when it
// is reached, neighbouring samples are merged in pairs, so a long run
// keeps its peaks at a coarser resolution (at 20 ms, the first 5.5
// minutes keep every sample).
const maxSamples = 1 << 14

// Watch samples memory on a goroutine of its own until Stop.
type Watch struct {
	o       Options
	self    int
	page    int64
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// Start takes a first sample and starts sampling.
func Start(o Options) *Watch {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	w := &Watch{o: o, self: os.Getpid(), page: int64(os.Getpagesize()), stop: make(chan struct{}), done: make(chan struct{})}
	pids := w.tree()
	w.record(w.measure(pids))
	go func() {
		defer close(w.done)
		t := time.NewTicker(o.Interval)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			if n%childrenEvery == 0 {
				pids = w.tree()
			}
			w.record(w.measure(pids))
		}
	}()
	return w
}

// Sample takes a sample now, beside those of the ticker: a caller that
// has just ended a span calls it so that Peak has the sample after it.
func (w *Watch) Sample() {
	w.record(w.measure(w.tree()))
}

// Stop takes a last sample and ends sampling; Peak still answers from
// what was sampled.
func (w *Watch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		w.record(w.measure(w.tree()))
	})
}

// Peak returns the largest of the samples taken from from to to, the
// last one before from and the first one after to, in bytes: the samples
// that bracket the span, so that a span shorter than the interval still
// has two. It returns 0 when there were none, or /proc could not be read.
func (w *Watch) Peak(from, to time.Time) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var peak int64
	before, after := -1, -1
	for i, s := range w.samples {
		switch {
		case s.last.Before(from):
			before = i
		case s.first.After(to):
			if after < 0 {
				after = i
			}
		default:
			peak = max(peak, s.bytes)
		}
	}
	for _, i := range []int{before, after} {
		if i >= 0 {
			peak = max(peak, w.samples[i].bytes)
		}
	}
	return peak
}

func (w *Watch) record(bytes int64) {
	at := w.o.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples = append(w.samples, sample{at, at, bytes})
	if len(w.samples) < maxSamples {
		return
	}
	n := 0
	for i := 0; i+1 < len(w.samples); i += 2 {
		a, b := w.samples[i], w.samples[i+1]
		w.samples[n] = sample{a.first, b.last, max(a.bytes, b.bytes)}
		n++
	}
	if len(w.samples)%2 == 1 {
		w.samples[n] = w.samples[len(w.samples)-1]
		n++
	}
	w.samples = w.samples[:n]
}

// measure returns one sample: the resident sets of pids, and Extra.
// A process that has exited meanwhile counts as 0; a sample in which
// even this process's could not be read is 0.
func (w *Watch) measure(pids []int) int64 {
	var total int64
	for i, pid := range pids {
		rss, ok := w.resident(pid)
		if !ok && i == 0 {
			return 0
		}
		total += rss
	}
	if w.o.Extra != nil {
		total += w.o.Extra()
	}
	return total
}

// resident reads a process's resident set in bytes.
func (w *Watch) resident(pid int) (int64, bool) {
	data, err := os.ReadFile(filepath.Join(w.o.Proc, strconv.Itoa(pid), "statm"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || pages < 0 {
		return 0, false
	}
	return pages * w.page, true
}

// tree returns this process and its descendants, this process first.
func (w *Watch) tree() []int {
	pids := []int{w.self}
	seen := map[int]bool{w.self: true}
	for i := 0; i < len(pids); i++ {
		for _, c := range w.children(pids[i]) {
			if !seen[c] {
				seen[c] = true
				pids = append(pids, c)
			}
		}
	}
	return pids
}

// children lists a process's children, from each of its threads' children
// file (a child belongs to the thread that started it).
func (w *Watch) children(pid int) []int {
	tasks, err := os.ReadDir(filepath.Join(w.o.Proc, strconv.Itoa(pid), "task"))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(w.o.Proc, strconv.Itoa(pid), "task", t.Name(), "children"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil && c > 0 {
				out = append(out, c)
			}
		}
	}
	return out
}

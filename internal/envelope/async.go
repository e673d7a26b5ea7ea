package envelope

import (
	"errors"
	"io"
	"sync"
)

// asyncWriter hands what is written to it to a goroutine that writes it to
// w, through a bounded queue of buffers. Between the compressor and the
// AEAD it lets zstd and the encryption (plus the ciphertext digest) run on
// different cores instead of taking turns: the pipeline then runs at about
// the speed of its slowest stage. Memory is bounded by depth × bufSize.
type asyncWriter struct {
	w       io.Writer
	queue   chan []byte
	free    chan []byte
	done    chan struct{}
	mu      sync.Mutex
	err     error
	bufSize int
	closed  bool
}

func newAsyncWriter(w io.Writer, depth, bufSize int) *asyncWriter {
	a := &asyncWriter{w: w, queue: make(chan []byte, depth), free: make(chan []byte, depth+1), done: make(chan struct{}), bufSize: bufSize}
	for i := 0; i < depth+1; i++ {
		a.free <- make([]byte, 0, bufSize)
	}
	go a.run()
	return a
}

func (a *asyncWriter) run() {
	defer close(a.done)
	for b := range a.queue {
		if a.error() == nil {
			if _, err := a.w.Write(b); err != nil {
				a.setError(err)
			}
		}
		a.free <- b[:0]
	}
}

func (a *asyncWriter) error() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *asyncWriter) setError(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
}

// Write copies p into queued buffers. It reports an error the writing
// goroutine met earlier, if any.
func (a *asyncWriter) Write(p []byte) (int, error) {
	if a.closed {
		return 0, errors.New("write to a closed async writer")
	}
	if err := a.error(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		b := <-a.free
		k := min(len(p), a.bufSize)
		b = append(b, p[:k]...)
		p = p[k:]
		a.queue <- b
	}
	return n, nil
}

// Close waits until everything queued is written and returns the first
// error.
func (a *asyncWriter) Close() error {
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
	<-a.done
	return a.error()
}

// Abort stops the writer; queued data is discarded, not written.
func (a *asyncWriter) Abort() {
	a.setError(errors.New("aborted"))
	a.Close()
}

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

// readAhead reads src on a goroutine of its own into a bounded queue of
// buffers, so that fetching the artifact (and the store's own checks of
// it) runs beside its decryption. Read returns src's bytes in order, then
// src's error. Close stops the goroutine once its current Read returns.
type readAhead struct {
	queue chan []byte
	free  chan []byte
	stop  chan struct{}
	done  chan struct{}
	cur   []byte
	buf   []byte // the buffer cur is in, returned to free once read
	err   error  // src's error, delivered after the queue drains
	once  sync.Once
}

func newReadAhead(src io.Reader, depth, bufSize int) *readAhead {
	r := &readAhead{queue: make(chan []byte, depth), free: make(chan []byte, depth+1),
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := 0; i < depth+1; i++ {
		r.free <- make([]byte, bufSize)
	}
	go func() {
		defer close(r.done)
		defer close(r.queue)
		for {
			var b []byte
			select {
			case b = <-r.free:
			case <-r.stop:
				return
			}
			n, err := io.ReadFull(src, b)
			if n > 0 {
				select {
				case r.queue <- b[:n]:
				case <-r.stop:
					return
				}
			} else {
				r.free <- b
			}
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			if err != nil {
				r.err = err // read by Read only after queue is closed
				return
			}
		}
	}()
	return r
}

func (r *readAhead) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.buf != nil {
			r.free <- r.buf[:cap(r.buf)]
			r.buf = nil
		}
		b, ok := <-r.queue
		if !ok {
			return 0, r.err
		}
		r.cur, r.buf = b, b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the reading goroutine. It does not wait for a Read of src
// in progress: closing src (the caller's part) ends that.
func (r *readAhead) Close() {
	r.once.Do(func() { close(r.stop) })
}

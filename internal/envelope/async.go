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
	w      io.Writer
	queue  chan []byte
	free   chan []byte
	done   chan struct{}
	mu     sync.Mutex
	err    error
	bufs   growingBuffers
	closed bool
}

func newAsyncWriter(w io.Writer, depth, bufSize int) *asyncWriter {
	a := &asyncWriter{w: w, queue: make(chan []byte, depth), free: make(chan []byte, depth+1), done: make(chan struct{}),
		bufs: growingBuffers{max: depth + 1, size: bufSize}}
	go a.run()
	return a
}

// growingBuffers hands out up to max buffers, made when first needed: the
// first of firstBufSize, each next one twice the one before, up to size.
// A short artifact (a key object, a configuration) then costs a small
// buffer, not the whole queue's worth.
type growingBuffers struct {
	max, made, size, next int
}

const firstBufSize = 16 << 10

// make returns a new empty buffer, or nil when max have been made.
func (g *growingBuffers) make() []byte {
	if g.made == g.max {
		return nil
	}
	g.made++
	if g.next == 0 {
		g.next = min(firstBufSize, g.size)
	}
	b := make([]byte, 0, g.next)
	g.next = min(2*g.next, g.size)
	return b
}

// get returns a free buffer: one returned to free, a new one while fewer
// than max exist, or else the next one returned. ok is false if stop
// closed first.
func (g *growingBuffers) get(free chan []byte, stop <-chan struct{}) (b []byte, ok bool) {
	select {
	case b = <-free:
		return b, true
	default:
	}
	if b = g.make(); b != nil {
		return b, true
	}
	select {
	case b = <-free:
		return b, true
	case <-stop:
		return nil, false
	}
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
		b, _ := a.bufs.get(a.free, nil)
		k := min(len(p), cap(b))
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
// src's error. After Close no new Read of src starts; one in progress
// ends when the caller closes src.
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
	bufs := growingBuffers{max: depth + 1, size: bufSize}
	go func() {
		defer close(r.done)
		defer close(r.queue)
		for !r.stopped() {
			b, ok := bufs.get(r.free, r.stop)
			if !ok || r.stopped() {
				return
			}
			n, err := fill(src, b[:cap(b)])
			if r.stopped() {
				return
			}
			if n > 0 {
				select {
				case r.queue <- b[:n]:
				case <-r.stop:
					return
				}
			} else {
				r.free <- b
			}
			if err != nil {
				r.err = err // io.EOF, or src's own error; read by Read once queue is closed
				return
			}
		}
	}()
	return r
}

// stopped reports whether Close was called.
func (r *readAhead) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// fill reads src into b until b is full or src returns an error, which it
// returns as is: io.EOF is the end of the stream, anything else (an
// io.ErrUnexpectedEOF from a cut connection included) is the source's
// failure, never to be taken for the end.
func fill(src io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := src.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
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

package fs

import "os"

// writebackChunk is how much of a new object is written before the kernel
// is asked to start writing it to disk.
const writebackChunk = 8 << 20

// writebackAhead writes to a new object's temporary file and, after each
// writebackChunk, asks the kernel to start writing that part back to the
// disk (startWriteback) without waiting for it. The fsync that makes the
// object durable then waits for what is still in flight, not for the whole
// object:
// the disk writes while the backup is still compressing and encrypting,
// instead of after it (as long as the disk keeps up). It is a hint: the
// fsync is still what makes the object durable, and a system without the
// call does the same work there.
type writebackAhead struct {
	f       *os.File
	written int64
	started int64
	// start is startWriteback but for tests.
	start func(f *os.File, off, n int64)
}

func (w *writebackAhead) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.written-w.started >= writebackChunk {
		w.start(w.f, w.started, w.written-w.started)
		w.started = w.written
	}
	return n, err
}

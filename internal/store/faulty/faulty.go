package faulty

import (
	"context"
	"fmt"
	"io"
	"iter"
	"path"
	"sync"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Store is a store.Store that passes calls to an inner store, except
// where an armed fault applies.
type Store struct {
	inner store.Store

	mu     sync.Mutex
	faults []fault
}

var _ store.Store = (*Store)(nil)

type faultKind int

const (
	failPutAfter faultKind = iota
	failGet
	corruptGet
	truncateGet
	failStat
	failDelete
)

type fault struct {
	kind    faultKind
	pattern string
	n       int64 // byte count or offset
	err     error
}

// New returns a Store wrapping inner with no fault armed.
func New(inner store.Store) *Store {
	return &Store{inner: inner}
}

// arm adds f. method names the arming method for panic messages; withErr
// says that f fails with f.err, which must then not be nil.
func (s *Store) arm(method string, withErr bool, f fault) {
	if withErr && f.err == nil {
		// FailPutAfter's cut stream would return (0, nil) forever and make
		// Put spin; the other faults would fail with a "%!w(<nil>)" error
		// no errors.Is matches.
		panic(fmt.Sprintf("faulty: %s(%q, ...) with a nil error: pass the error the call is to fail with", method, f.pattern))
	}
	if _, err := path.Match(f.pattern, ""); err != nil {
		panic(fmt.Sprintf("faulty: bad key pattern %q: %v", f.pattern, err))
	}
	if f.n < 0 {
		panic(fmt.Sprintf("faulty: negative byte count or offset %d", f.n))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// matching returns the armed faults of kind whose pattern matches key, in
// the order they were armed.
func (s *Store) matching(key string, kinds ...faultKind) []fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []fault
	for _, f := range s.faults {
		for _, k := range kinds {
			if f.kind != k {
				continue
			}
			if ok, _ := path.Match(f.pattern, key); ok {
				out = append(out, f)
			}
		}
	}
	return out
}

// FailPutAfter makes the Puts of keys matching keyPattern see a reader
// that delivers the first n bytes of the caller's stream and then fails
// with err, so the inner store gets a stream that breaks midway. A stream
// shorter than n bytes is not affected. A bad pattern, a negative n or a
// nil err panics. Where several such faults match, the first armed
// applies.
func (s *Store) FailPutAfter(keyPattern string, n int64, err error) {
	s.arm("FailPutAfter", true, fault{kind: failPutAfter, pattern: keyPattern, n: n, err: err})
}

// FailGet makes the Gets of keys matching keyPattern fail with an error
// wrapping err, without calling the inner store. A nil err panics.
func (s *Store) FailGet(keyPattern string, err error) {
	s.arm("FailGet", true, fault{kind: failGet, pattern: keyPattern, err: err})
}

// CorruptGet makes the Gets of keys matching keyPattern return the byte at
// offset (counted from the start of the object, whatever GetOptions.Offset
// is) with its lowest bit flipped. The flip happens after the inner store
// has read the byte, so it stands for corruption the store cannot see: the
// inner store's own check at EOF passes. A Get that starts past offset, or
// an object shorter than offset, is not affected.
func (s *Store) CorruptGet(keyPattern string, offset int64) {
	s.arm("CorruptGet", false, fault{kind: corruptGet, pattern: keyPattern, n: offset})
}

// TruncateGet makes the readers of Gets of keys matching keyPattern end
// with io.EOF after n bytes (counted from where the Get starts reading),
// as if a connection had closed early without an error. The inner
// store's check at EOF is never reached.
func (s *Store) TruncateGet(keyPattern string, n int64) {
	s.arm("TruncateGet", false, fault{kind: truncateGet, pattern: keyPattern, n: n})
}

// FailStat makes the Stats of keys matching keyPattern fail with an error
// wrapping err, without calling the inner store. List is not affected. A
// nil err panics.
func (s *Store) FailStat(keyPattern string, err error) {
	s.arm("FailStat", true, fault{kind: failStat, pattern: keyPattern, err: err})
}

// FailDelete makes the Deletes of keys matching keyPattern fail with an
// error wrapping err, without calling the inner store. A nil err panics.
func (s *Store) FailDelete(keyPattern string, err error) {
	s.arm("FailDelete", true, fault{kind: failDelete, pattern: keyPattern, err: err})
}

// Disarm removes every armed fault. Readers already returned by Get keep
// the faults they were made with.
func (s *Store) Disarm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Put stores through the inner store, cutting the stream if a
// FailPutAfter fault matches key.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.ObjectInfo, error) {
	if armed := s.matching(key, failPutAfter); len(armed) > 0 {
		r = &cutReader{r: r, left: armed[0].n, err: armed[0].err}
	}
	return s.inner.Put(ctx, key, r, opts)
}

// cutReader passes left bytes through and then fails with err.
type cutReader struct {
	r    io.Reader
	left int64
	err  error
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, c.err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// Get reads through the inner store, applying the FailGet, CorruptGet and
// TruncateGet faults that match key.
func (s *Store) Get(ctx context.Context, key string, opts store.GetOptions) (io.ReadCloser, error) {
	armed := s.matching(key, failGet, corruptGet, truncateGet)
	for _, f := range armed {
		if f.kind == failGet {
			return nil, fmt.Errorf("faulty store: get %q: %w", key, f.err)
		}
	}
	rc, err := s.inner.Get(ctx, key, opts)
	if err != nil || len(armed) == 0 {
		return rc, err
	}
	fr := &faultReader{rc: rc, start: opts.Offset, limit: -1}
	for _, f := range armed {
		switch f.kind {
		case corruptGet:
			fr.flips = append(fr.flips, f.n)
		case truncateGet:
			if fr.limit < 0 || f.n < fr.limit {
				fr.limit = f.n
			}
		}
	}
	return fr, nil
}

// faultReader flips bits at object offsets flips and ends after limit
// bytes (limit < 0: no limit).
type faultReader struct {
	rc    io.ReadCloser
	start int64 // object offset of the first byte read
	pos   int64 // bytes read so far
	flips []int64
	limit int64
}

func (f *faultReader) Read(p []byte) (int, error) {
	if f.limit >= 0 {
		if f.pos >= f.limit {
			return 0, io.EOF
		}
		if int64(len(p)) > f.limit-f.pos {
			p = p[:f.limit-f.pos]
		}
	}
	n, err := f.rc.Read(p)
	for _, off := range f.flips {
		if i := off - f.start - f.pos; i >= 0 && i < int64(n) {
			p[i] ^= 1
		}
	}
	f.pos += int64(n)
	if f.limit >= 0 && f.pos >= f.limit && err == nil {
		err = io.EOF
	}
	return n, err
}

func (f *faultReader) Close() error {
	return f.rc.Close()
}

// Stat describes the object through the inner store unless a FailStat
// fault matches key.
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	if armed := s.matching(key, failStat); len(armed) > 0 {
		return store.ObjectInfo{}, fmt.Errorf("faulty store: stat %q: %w", key, armed[0].err)
	}
	return s.inner.Stat(ctx, key)
}

// List lists through the inner store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[store.ObjectInfo, error] {
	return s.inner.List(ctx, prefix)
}

// Delete deletes through the inner store unless a FailDelete fault
// matches key.
func (s *Store) Delete(ctx context.Context, key string) error {
	if armed := s.matching(key, failDelete); len(armed) > 0 {
		return fmt.Errorf("faulty store: delete %q: %w", key, armed[0].err)
	}
	return s.inner.Delete(ctx, key)
}

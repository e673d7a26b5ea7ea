package fs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	iofs "io/fs"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

const (
	dirPerm  = 0o750
	filePerm = 0o440

	// tmpMaxAge is how old a file in tmp/ must be before Open removes it
	// as the leftover of a crashed Put. A Put in progress keeps its
	// temporary file's modification time fresh while bytes arrive.
	tmpMaxAge = time.Hour

	// copyBufferSize is the size of the buffer a Put streams through.
	copyBufferSize = 1 << 20

	tmpObjectPattern = "object-*"
	tmpRecordPattern = "retention-*"

	// lockName is the lock file in the root that serialises the publish
	// phase of Puts and Deletes (docs/format.md §1.1).
	lockName = ".lock"
)

// MaxSegmentLength is the longest key segment this store accepts: the
// usual NAME_MAX of 255 bytes less the ".json" suffix the last segment
// takes in retention/.
const MaxSegmentLength = 250

// ErrKeyConflict is returned by Put for a valid key that this store cannot
// hold because its path collides with the path of a key already stored: a
// key that names a directory of other keys ("a" while "a/b" exists), a key
// that passes through another key's file ("a/b" while "a" exists), or a key
// whose retention record collides with a directory of records ("a" while
// "a.json/b" exists). Nothing is written. It is deliberately not
// store.ErrExists: no object with the key exists.
var ErrKeyConflict = errors.New("key conflicts with the path of another key")

// Options configure Open.
type Options struct {
	// Root is the store's directory. Open creates it (and objects/,
	// retention/ and tmp/ inside it) unless ReadOnly is set.
	Root string
	// ReadOnly opens an existing store for reading only: Put and Delete
	// fail with store.ErrReadOnly and Open neither creates nor removes
	// anything. The root must exist.
	ReadOnly bool
	// Now is the clock used for retention decisions and creation times;
	// nil means time.Now. The age of temporary files is always measured
	// with time.Now, because it is compared with their modification times,
	// which the file system sets from the real clock: a clock set ahead
	// must not make the file of a Put in progress look stale.
	Now func() time.Time
	// Logger receives the store's log lines; nil discards them.
	Logger *slog.Logger
}

// Store is the write-once local directory store. It is safe for concurrent
// use, also with other Stores (in this or other processes) on the same
// root.
type Store struct {
	root      string
	objects   string
	retention string
	tmp       string
	lockPath  string
	readOnly  bool
	now       func() time.Time
	log       *slog.Logger
	hooks     hooks

	// mu serialises the publish phases of this Store's Puts and Deletes;
	// the flock on lockPath serialises them with other Stores'.
	mu sync.Mutex
}

var _ store.Store = (*Store)(nil)

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, copyBufferSize)
	return &b
}}

// Open opens the store at opts.Root. Unless opts.ReadOnly is set it
// creates the directory layout and the lock file as needed and removes
// files in tmp/ last modified more than an hour ago (by the real clock),
// the leftovers of Puts interrupted by a crash. It fails with ctx's error
// if ctx is done before it finishes.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("fs store: open: root directory is required")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fs store: open %q: %w", opts.Root, err)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("fs store: open %q: resolve root: %w", opts.Root, err)
	}
	s := &Store{
		root:      root,
		objects:   filepath.Join(root, "objects"),
		retention: filepath.Join(root, "retention"),
		tmp:       filepath.Join(root, "tmp"),
		lockPath:  filepath.Join(root, lockName),
		readOnly:  opts.ReadOnly,
		now:       opts.Now,
		log:       opts.Logger,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.readOnly {
		fi, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("fs store: open %q: %w", root, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("fs store: open %q: not a directory", root)
		}
		return s, nil
	}
	if err := os.MkdirAll(root, dirPerm); err != nil {
		return nil, fmt.Errorf("fs store: open %q: create root: %w", root, err)
	}
	for _, dir := range []string{s.objects, s.retention, s.tmp} {
		if _, err := mkdir(dir); err != nil {
			return nil, fmt.Errorf("fs store: open %q: create %s: %w", root, filepath.Base(dir), err)
		}
	}
	lf, err := os.OpenFile(s.lockPath, os.O_RDONLY|os.O_CREATE|openNoFollow, filePerm)
	if err != nil {
		return nil, fmt.Errorf("fs store: open %q: create lock file: %w", root, err)
	}
	lf.Close()
	// Whoever created them (this Open or a concurrent one, which may not
	// have synced yet), the names in the root are durable once Open
	// returns.
	if err := s.syncDir(root); err != nil {
		return nil, fmt.Errorf("fs store: open %q: sync root: %w", root, err)
	}
	if err := s.removeStaleTemps(ctx); err != nil {
		return nil, fmt.Errorf("fs store: open %q: remove stale temporary files: %w", root, err)
	}
	return s, nil
}

// lock takes the store lock, which serialises the publish phase of Puts
// (the links and the removal of a stale retention record) with Deletes,
// within this process through s.mu and across processes through an
// exclusive flock on <root>/.lock. It waits for the lock without watching
// a context: holders keep it only for a few links, removals and directory
// fsyncs, never while reading a caller's stream.
func (s *Store) lock(op string) (unlock func(), err error) {
	if h := s.hooks.beforeLock; h != nil {
		h(op)
	}
	s.mu.Lock()
	f, err := lockFile(s.lockPath)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	return func() {
		if err := f.Close(); err != nil {
			s.log.Warn("fs store: cannot close lock file", "path", s.lockPath, "err", err)
		}
		s.mu.Unlock()
	}, nil
}

// removeStaleTemps removes the files in tmp/ last modified more than
// tmpMaxAge ago. The age is measured with the real clock (time.Now), not
// the store's clock, because modification times come from the real clock.
// Failures are logged, not returned: leftovers waste space but never
// become visible objects. It returns only ctx's error, when ctx is done.
func (s *Store) removeStaleTemps(ctx context.Context) error {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		s.log.Warn("fs store: cannot list temporary files", "path", s.tmp, "err", err)
		return nil
	}
	now := time.Now()
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(s.tmp, e.Name())
		fi, err := e.Info()
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("fs store: cannot inspect temporary file", "path", p, "err", err)
			}
			continue
		}
		if !fi.Mode().IsRegular() {
			s.log.Warn("fs store: unexpected entry in tmp", "path", p, "mode", fi.Mode().String())
			continue
		}
		age := now.Sub(fi.ModTime())
		if age <= tmpMaxAge {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("fs store: cannot remove stale temporary file", "path", p, "err", err)
			continue
		}
		s.log.Info("fs store: removed stale temporary file", "path", p, "age", age.Round(time.Second).String(), "size", fi.Size())
	}
	return nil
}

// checkKey applies store.ValidateKey and this store's segment length limit.
func checkKey(key string) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > MaxSegmentLength {
			return fmt.Errorf("%w: %q: a segment of %d bytes is longer than this store's limit of %d", store.ErrInvalidKey, key, len(seg), MaxSegmentLength)
		}
	}
	return nil
}

func (s *Store) objectPath(key string) string {
	return filepath.Join(s.objects, filepath.FromSlash(key))
}

func (s *Store) recordPath(key string) string {
	return filepath.Join(s.retention, filepath.FromSlash(key)+".json")
}

// isNotFound reports whether err from opening or stating a path under the
// store means that no object can be there: the name is missing, a parent
// is a file, the name is too long for this store, or (with O_NOFOLLOW) the
// name is a symbolic link.
func isNotFound(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) ||
		errors.Is(err, syscall.ENAMETOOLONG) || errors.Is(err, syscall.ELOOP)
}

// checkFree reports an error if key cannot be put: store.ErrExists when the
// object exists, ErrKeyConflict when its paths collide with other keys'.
// Put's link decides in the end; this check only spares streaming the
// bytes of a Put that cannot succeed.
func (s *Store) checkFree(key string) error {
	fi, err := os.Lstat(s.objectPath(key))
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%w: objects/%s is a directory of other keys", ErrKeyConflict, key)
	case err == nil:
		return store.ErrExists
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: a parent of objects/%s is another key's object", ErrKeyConflict, key)
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	fi, err = os.Lstat(s.recordPath(key))
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%w: retention/%s.json is a directory of other keys' records", ErrKeyConflict, key)
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: a parent of retention/%s.json is another key's record", ErrKeyConflict, key)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return err
	}
	return nil
}

// PutReportsSHA256 reports that Put always returns the SHA-256 of the
// bytes it stored (the digest its record keeps and Get checks), so a
// caller need not hash what it writes a second time.
func (s *Store) PutReportsSHA256() bool { return true }

// Put stores the bytes read from r under key (see docs/format.md §1.1 and
// store.Store). It fails with store.ErrExists if key is taken, with
// store.ErrIntegrity if opts.SHA256 or opts.Size do not match the bytes
// read, and with the context's error if ctx is done before the object is
// published. On any failure no object is visible and the temporary files
// are removed.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.ObjectInfo, error) {
	fail := func(step string, err error) (store.ObjectInfo, error) {
		return store.ObjectInfo{}, fmt.Errorf("fs store: put %q: %s: %w", key, step, err)
	}
	if err := checkKey(key); err != nil {
		return store.ObjectInfo{}, fmt.Errorf("fs store: put: %w", err)
	}
	if s.readOnly {
		return store.ObjectInfo{}, fmt.Errorf("fs store: put %q: %w", key, store.ErrReadOnly)
	}
	now := s.now()
	switch {
	case opts.RetainUntil.IsZero():
		return fail("check options", errors.New("retain-until time is required"))
	case !opts.RetainUntil.After(now):
		return fail("check options", fmt.Errorf("retain-until time %s is not after the current time %s",
			opts.RetainUntil.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano)))
	case opts.SHA256 != "" && !isSHA256Hex(opts.SHA256):
		return fail("check options", fmt.Errorf("expected sha256 %q is not 64 lowercase hex digits", opts.SHA256))
	case opts.Size < 0:
		return fail("check options", fmt.Errorf("expected size %d is negative", opts.Size))
	}
	if err := ctx.Err(); err != nil {
		return fail("begin", err)
	}
	if err := s.checkFree(key); err != nil {
		return fail("check key", err)
	}

	// Temporary names are removed whatever happens; once linked, the
	// object and its record live on under their published names.
	var tmpNames []string
	defer func() {
		for _, name := range tmpNames {
			if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("fs store: cannot remove temporary file", "key", key, "path", name, "err", err)
			}
		}
	}()

	// 1. The bytes, into tmp/.
	tmpObj, err := os.CreateTemp(s.tmp, tmpObjectPattern)
	if err != nil {
		return fail("create temporary file", err)
	}
	tmpNames = append(tmpNames, tmpObj.Name())
	defer tmpObj.Close() // a second Close after the explicit one is harmless
	size, sum, step, err := copyData(ctx, &writebackAhead{f: tmpObj, start: s.writebackFunc()}, r, opts.Size)
	if err != nil {
		return fail(step, err)
	}
	if opts.Size > 0 && size != opts.Size {
		return fail("check size", fmt.Errorf("got %d bytes, expected %d: %w", size, opts.Size, store.ErrIntegrity))
	}
	if opts.SHA256 != "" && sum != opts.SHA256 {
		return fail("check sha256", fmt.Errorf("got sha256 %s, expected %s: %w", sum, opts.SHA256, store.ErrIntegrity))
	}
	if err := tmpObj.Chmod(filePerm); err != nil {
		return fail("chmod temporary file", err)
	}
	if err := tmpObj.Sync(); err != nil {
		return fail("sync temporary file", err)
	}
	if err := tmpObj.Close(); err != nil {
		return fail("close temporary file", err)
	}

	// 2. The retention record, into tmp/ too.
	rec := &record{
		Format:      recordFormat,
		Key:         key,
		Size:        size,
		SHA256:      sum,
		Created:     s.now().UTC(),
		RetainUntil: opts.RetainUntil.UTC(),
	}
	tmpRec, err := s.writeTempRecord(rec)
	if tmpRec != "" {
		tmpNames = append(tmpNames, tmpRec)
	}
	if err != nil {
		return fail("write retention record", err)
	}

	// 3. Publish: object first, record second, under the store lock so
	// that no Delete or other Put of the key runs between the checks and
	// the links. The directories are made (and made durable) before: no
	// Delete removes a directory.
	objPath, recPath := s.objectPath(key), s.recordPath(key)
	if err := s.makeParents(s.objects, key); err != nil {
		return fail("create object directory", err)
	}
	if err := s.makeParents(s.retention, key); err != nil {
		return fail("create retention directory", err)
	}
	unlock, err := s.lock("put")
	if err != nil {
		return fail("lock store", err)
	}
	defer unlock() // deferred before the rollback, so it runs after it
	if err := ctx.Err(); err != nil {
		return fail("commit", err)
	}
	staleRemoved, err := s.removeStaleRecord(objPath, recPath)
	if err != nil {
		return fail("remove stale retention record", err)
	}
	if staleRemoved {
		s.log.Warn("fs store: replaced stale retention record of a deleted object", "key", key)
	}
	if err := os.Link(tmpObj.Name(), objPath); err != nil {
		if errors.Is(err, os.ErrExist) {
			if fi, lerr := os.Lstat(objPath); lerr == nil && fi.IsDir() {
				return fail("link object", fmt.Errorf("%w: objects/%s is a directory of other keys", ErrKeyConflict, key))
			}
			return fail("link object", store.ErrExists)
		}
		return fail("link object", err)
	}
	if h := s.hooks.afterObjectLink; h != nil {
		h(key)
	}
	// From here on the object is visible. If anything below fails, take
	// it back: nothing else can have made it, since link(2) let only this
	// Put create the name, and no Delete can remove it and no other Put
	// link it again while this Put holds the lock.
	committed, recLinked := false, false
	defer func() {
		if !committed {
			s.rollback(key, objPath, recPath, recLinked)
		}
	}()
	if err := os.Link(tmpRec, recPath); err != nil {
		if errors.Is(err, os.ErrExist) {
			if fi, lerr := os.Lstat(recPath); lerr == nil && fi.IsDir() {
				return fail("link retention record", fmt.Errorf("%w: retention/%s.json is a directory of other keys' records", ErrKeyConflict, key))
			}
			// Only a writer that ignores the store lock can have made it.
			return fail("link retention record", fmt.Errorf("retention/%s.json appeared while the store was locked: %w", key, err))
		}
		return fail("link retention record", err)
	}
	recLinked = true
	if err := s.syncDir(filepath.Dir(objPath)); err != nil {
		return fail("sync object directory", err)
	}
	if err := s.syncDir(filepath.Dir(recPath)); err != nil {
		return fail("sync retention directory", err)
	}
	committed = true
	s.log.Debug("fs store: object stored", "key", key, "size", size)
	return rec.info(), nil
}

// removeStaleRecord removes the retention record at recPath if it is
// stale: a record without its object, left by a crash in Delete between
// removing the object and removing the record. The caller holds the
// store lock, so the object cannot appear meanwhile. The removal is made
// durable before the caller links its object, so that a crash can never
// leave the new object beside the old object's record. It reports whether
// it removed a record; a record whose object exists is left alone (the
// caller's link then fails with the key taken).
func (s *Store) removeStaleRecord(objPath, recPath string) (bool, error) {
	fi, err := os.Lstat(recPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		// A directory of other keys' records: the record's link fails
		// with a key conflict.
		return false, nil
	}
	if _, err := os.Lstat(objPath); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := os.Remove(recPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := s.syncDir(filepath.Dir(recPath)); err != nil {
		return false, fmt.Errorf("sync retention directory: %w", err)
	}
	return true, nil
}

// rollback removes what a failed Put published.
func (s *Store) rollback(key, objPath, recPath string, recLinked bool) {
	if recLinked {
		if err := os.Remove(recPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("fs store: cannot roll back retention record of failed put", "key", key, "err", err)
		}
	}
	if err := os.Remove(objPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("fs store: cannot roll back object of failed put", "key", key, "err", err)
		return
	}
	if err := s.syncDir(filepath.Dir(objPath)); err != nil {
		s.log.Error("fs store: cannot sync directory after rolling back failed put", "key", key, "err", err)
	}
}

// copyData streams r into w, checking ctx between chunks, and returns the
// number of bytes, their SHA-256 in hex, and on failure the step that
// failed. It stops as soon as more than limit bytes arrive (limit > 0).
func copyData(ctx context.Context, w io.Writer, r io.Reader, limit int64) (n int64, sum, step string, err error) {
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	buf := *bufp
	h := sha256.New()
	for {
		if err := ctx.Err(); err != nil {
			return n, "", "read data", err
		}
		m, rerr := r.Read(buf)
		if m < 0 || m > len(buf) {
			return n, "", "read data", fmt.Errorf("reader returned invalid count %d", m)
		}
		if m > 0 {
			h.Write(buf[:m])
			if _, err := w.Write(buf[:m]); err != nil {
				return n, "", "write temporary file", err
			}
			n += int64(m)
			if limit > 0 && n > limit {
				return n, "", "check size", fmt.Errorf("got more than the expected %d bytes: %w", limit, store.ErrIntegrity)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, "", "read data", rerr
		}
	}
	if err := ctx.Err(); err != nil {
		return n, "", "read data", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), "", nil
}

// writeTempRecord writes rec to a new file in tmp/, mode 0440, fsynced,
// and returns its name (also on failure, when the file was created).
func (s *Store) writeTempRecord(rec *record) (string, error) {
	b, err := rec.marshal()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(s.tmp, tmpRecordPattern)
	if err != nil {
		return "", err
	}
	name := f.Name()
	if _, err := f.Write(b); err != nil {
		f.Close()
		return name, err
	}
	if err := f.Chmod(filePerm); err != nil {
		f.Close()
		return name, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return name, err
	}
	return name, f.Close()
}

// readRecord reads key's retention record; it returns nil and no error
// when there is none.
func (s *Store) readRecord(key string) (*record, error) {
	f, err := os.OpenFile(s.recordPath(key), os.O_RDONLY|openNoFollow, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ENAMETOOLONG) {
			return nil, nil
		}
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("read retention record: a symbolic link: %w", store.ErrIntegrity)
		}
		return nil, fmt.Errorf("read retention record: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read retention record: %w", err)
	}
	if fi.IsDir() {
		// The records of keys below "<key>.json/", not a record of key.
		return nil, nil
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read retention record: not a regular file: %w", store.ErrIntegrity)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("read retention record: %w", err)
	}
	if len(b) > maxRecordSize {
		return nil, fmt.Errorf("read retention record: longer than %d bytes: %w", maxRecordSize, store.ErrIntegrity)
	}
	rec, err := parseRecord(b, key)
	if err != nil {
		return nil, fmt.Errorf("read retention record: %w", err)
	}
	return rec, nil
}

// openObject opens key's object file, which must be a regular file.
func (s *Store) openObject(key string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(s.objectPath(key), os.O_RDONLY|openNoFollow, 0)
	if err != nil {
		if isNotFound(err) {
			return nil, nil, store.ErrNotFound
		}
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, store.ErrNotFound
	}
	return f, fi, nil
}

// statObject checks that key's object file exists and is a regular file.
func (s *Store) statObject(key string) (os.FileInfo, error) {
	fi, err := os.Lstat(s.objectPath(key))
	if err != nil {
		if isNotFound(err) {
			return nil, store.ErrNotFound
		}
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, store.ErrNotFound
	}
	return fi, nil
}

// Get opens key's object for reading from opts.Offset. A read from offset
// 0 hashes the bytes and, at the end, returns an error wrapping
// store.ErrIntegrity instead of io.EOF if they differ from the recorded
// SHA-256; callers must not trust the bytes until Read returns io.EOF.
// Reads from a later offset are not checked against the digest. Any read
// fails once ctx is done.
func (s *Store) Get(ctx context.Context, key string, opts store.GetOptions) (io.ReadCloser, error) {
	fail := func(step string, err error) (io.ReadCloser, error) {
		return nil, fmt.Errorf("fs store: get %q: %s: %w", key, step, err)
	}
	if err := store.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("fs store: get: %w", err)
	}
	if opts.Offset < 0 {
		return fail("check options", fmt.Errorf("negative offset %d", opts.Offset))
	}
	if err := ctx.Err(); err != nil {
		return fail("begin", err)
	}
	rec, err := s.readRecord(key)
	if err != nil {
		return fail("read", err)
	}
	f, fi, err := s.openObject(key)
	if err != nil {
		return fail("open object", err)
	}
	if rec != nil && fi.Size() != rec.Size {
		f.Close()
		return fail("verify", fmt.Errorf("file has %d bytes, recorded %d: %w", fi.Size(), rec.Size, store.ErrIntegrity))
	}
	if opts.Offset > 0 {
		if _, err := f.Seek(opts.Offset, io.SeekStart); err != nil {
			f.Close()
			return fail("seek", err)
		}
	}
	or := &objectReader{ctx: ctx, f: f, key: key}
	if opts.Offset == 0 && rec != nil {
		or.h = sha256.New()
		or.want = rec.SHA256
	}
	return or, nil
}

// objectReader reads an object file and, when h is set, checks its digest
// at EOF. Errors are sticky.
type objectReader struct {
	ctx  context.Context
	f    *os.File
	key  string
	h    hash.Hash // nil: not verified
	want string
	err  error
}

func (r *objectReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		r.err = fmt.Errorf("fs store: get %q: read: %w", r.key, err)
		return 0, r.err
	}
	n, err := r.f.Read(p)
	if r.h != nil && n > 0 {
		r.h.Write(p[:n])
	}
	switch {
	case err == io.EOF:
		if r.h != nil {
			if got := hex.EncodeToString(r.h.Sum(nil)); got != r.want {
				r.err = fmt.Errorf("fs store: get %q: verify: read sha256 %s, recorded %s: %w", r.key, got, r.want, store.ErrIntegrity)
				return n, r.err
			}
		}
		r.err = io.EOF
	case err != nil:
		r.err = fmt.Errorf("fs store: get %q: read: %w", r.key, err)
	}
	return n, r.err
}

func (r *objectReader) Close() error {
	return r.f.Close()
}

// Stat describes key's object from its retention record. For an object
// without a record (a crash came between the two links of its Put) it
// reports the file's size, a SHA-256 computed from the file, the file's
// modification time as Created, and a zero RetainUntil: unknown, which
// counts as forever.
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.ObjectInfo{}, fmt.Errorf("fs store: stat: %w", err)
	}
	info, step, err := s.stat(ctx, key)
	if err != nil {
		return store.ObjectInfo{}, fmt.Errorf("fs store: stat %q: %s: %w", key, step, err)
	}
	return info, nil
}

func (s *Store) stat(ctx context.Context, key string) (store.ObjectInfo, string, error) {
	if err := ctx.Err(); err != nil {
		return store.ObjectInfo{}, "begin", err
	}
	rec, err := s.readRecord(key)
	if err != nil {
		return store.ObjectInfo{}, "read", err
	}
	if rec != nil {
		if _, err := s.statObject(key); err != nil {
			return store.ObjectInfo{}, "stat object", err
		}
		return rec.info(), "", nil
	}
	f, fi, err := s.openObject(key)
	if err != nil {
		return store.ObjectInfo{}, "open object", err
	}
	defer f.Close()
	n, sum, step, err := copyData(ctx, io.Discard, f, 0)
	if err != nil {
		return store.ObjectInfo{}, "hash object: " + step, err
	}
	return store.ObjectInfo{
		Key:     key,
		Size:    n,
		SHA256:  sum,
		Created: fi.ModTime().UTC(),
	}, "", nil
}

// List yields the objects whose keys start with prefix in lexicographic
// (byte) order of their keys, each described as Stat describes it. It
// walks only the directory the prefix leads to and keeps the matching keys
// in memory to sort them. Objects deleted while the listing runs are
// skipped.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[store.ObjectInfo, error] {
	return func(yield func(store.ObjectInfo, error) bool) {
		fail := func(step string, err error) {
			yield(store.ObjectInfo{}, fmt.Errorf("fs store: list %q: %s: %w", prefix, step, err))
		}
		if err := store.ValidatePrefix(prefix); err != nil {
			yield(store.ObjectInfo{}, fmt.Errorf("fs store: list: %w", err))
			return
		}
		keys, err := s.listKeys(ctx, prefix)
		if err != nil {
			fail("walk objects", err)
			return
		}
		for _, key := range keys {
			info, step, err := s.stat(ctx, key)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				fail(fmt.Sprintf("stat %q: %s", key, step), err)
				return
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// listKeys returns the sorted keys of the objects under objects/ that
// start with prefix. filepath.WalkDir visits each directory's entries in
// name order, which is not the order of full keys ("a/b" sorts after
// "a-c" and "a.c"), so the keys are collected and sorted.
func (s *Store) listKeys(ctx context.Context, prefix string) ([]string, error) {
	startKey := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		startKey = prefix[:i]
	}
	start := s.objects
	if startKey != "" {
		start = s.objectPath(startKey)
	}
	var keys []string
	err := filepath.WalkDir(start, func(p string, d iofs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if p == start && isNotFound(err) {
				return filepath.SkipAll // nothing under the prefix
			}
			return err
		}
		if p == s.objects {
			return nil
		}
		rel, err := filepath.Rel(s.objects, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if p == start || strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				return nil
			}
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		if err := store.ValidateKey(key); err != nil {
			s.log.Warn("fs store: ignoring file that is not a valid key", "path", p)
			return nil
		}
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete removes key's object and then its retention record once the
// retention has ended. It fails with store.ErrRetained before then, when
// the object has no retention record (unknown retention counts as
// forever), and when the record does not describe the object (its size
// differs from the file's: the record is a stale one and the object's own
// retention is unknown); with store.ErrNotFound for a missing object; and
// with store.ErrReadOnly on a read-only store. The checks and the removals
// run under the store lock, so no Put publishes under the key in between.
func (s *Store) Delete(ctx context.Context, key string) error {
	fail := func(step string, err error) error {
		return fmt.Errorf("fs store: delete %q: %s: %w", key, step, err)
	}
	if err := store.ValidateKey(key); err != nil {
		return fmt.Errorf("fs store: delete: %w", err)
	}
	if s.readOnly {
		return fmt.Errorf("fs store: delete %q: %w", key, store.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return fail("begin", err)
	}
	unlock, err := s.lock("delete")
	if err != nil {
		return fail("lock store", err)
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return fail("begin", err)
	}
	// Read under the lock: a record read before it could be a stale one
	// that a Put has since replaced.
	rec, err := s.readRecord(key)
	if err != nil {
		return fail("check retention", err)
	}
	f, fi, err := s.openObject(key)
	if err != nil {
		return fail("stat object", err)
	}
	f.Close()
	if rec == nil {
		return fail("check retention", fmt.Errorf("%w: no retention record, so retention is unknown", store.ErrRetained))
	}
	if fi.Size() != rec.Size {
		return fail("check retention", fmt.Errorf("%w: the object has %d bytes but its retention record says %d, so the record is not the object's and its retention is unknown",
			store.ErrRetained, fi.Size(), rec.Size))
	}
	if now := s.now(); now.Before(rec.RetainUntil) {
		return fail("check retention", fmt.Errorf("%w until %s", store.ErrRetained, rec.RetainUntil.Format(time.RFC3339Nano)))
	}
	if h := s.hooks.afterDeleteCheck; h != nil {
		h(key)
	}
	// Files are 0440, but unlinking needs write permission on the
	// directory only, so no chmod is needed. The object goes first: a
	// crash between the two removals leaves a stale record, which the next
	// Put of the key removes.
	objPath, recPath := s.objectPath(key), s.recordPath(key)
	if err := os.Remove(objPath); err != nil {
		if isNotFound(err) {
			return fail("remove object", store.ErrNotFound)
		}
		return fail("remove object", err)
	}
	if err := s.syncDir(filepath.Dir(objPath)); err != nil {
		return fail("sync object directory", err)
	}
	if err := os.Remove(recPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail("remove retention record", err)
	}
	if err := s.syncDir(filepath.Dir(recPath)); err != nil {
		return fail("sync retention directory", err)
	}
	s.log.Info("fs store: object deleted", "key", key, "retainUntil", rec.RetainUntil)
	return nil
}

// LockStatus reports that the store's write-once rules are kept by
// lifeboat, not by the storage: they hold against lifeboat's own mistakes,
// not against someone with write access to the directory.
func (s *Store) LockStatus(ctx context.Context) (store.LockStatus, error) {
	if err := ctx.Err(); err != nil {
		return store.LockStatus{}, err
	}
	return store.LockStatus{EnforcedByLifeboat: true}, nil
}

var _ store.LockChecker = (*Store)(nil)

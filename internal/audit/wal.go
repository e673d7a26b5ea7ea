package audit

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// WAL format constants (docs/format.md §8.2).
const (
	batchFlag     = 1 << 31
	walMagic      = "LBWAL\x00\r\n"
	frameHeader   = 24
	MaxEventBytes = 16 << 20
	walPrefix     = "wal-"
	walSuffix     = ".log"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrWALDamaged marks a WAL whose acknowledged part cannot be read: a bad
// frame before the last file's tail, a break in the indexes, a file that
// is not a WAL file.
var ErrWALDamaged = errors.New("audit WAL damaged")

// Frame is one event in the WAL.
type Frame struct {
	Index uint64
	// Time is the event's time (docs/format.md §8.2): its stageTimestamp,
	// else its requestReceivedTimestamp, else when it was received.
	Time    time.Time
	Payload []byte
}

// walFile is a closed WAL file: every frame in it is fsynced and
// acknowledged, and it becomes exactly one segment.
type walFile struct {
	path        string
	first, last uint64
	events      int64
	bytes       int64 // payload bytes
	oldest      time.Time
}

// WAL is the write-ahead log of one stream (docs/format.md §8.2). Append
// is safe for concurrent use; sealing reads closed files only.
type WAL struct {
	dir string
	id  string
	log *slog.Logger

	mu     sync.Mutex
	broken error

	// snap is Stats as of the last change, read without mu (which an
	// fsync on a stalled disk can hold for long).
	snapMu sync.Mutex
	snap   Stats
	next   uint64
	cur    *os.File
	curF   walFile
	curLen int64 // file length, for rolling back a failed append
	closed []walFile
}

// Recovery says what OpenWAL found.
type Recovery struct {
	// Files and Events are the closed files and events waiting to be sealed.
	Files  int
	Events int64
	// Removed counts files already sealed (covered by the head record).
	Removed int
	// TornBytes is what was cut from the last file's torn tail: an append
	// interrupted before its fsync, never acknowledged.
	TornBytes int64
}

// OpenWAL opens (creating) the WAL in dir. head is the stream's newest
// record in the store (nil for none): files it covers are removed, but
// only when it was sealed from this WAL (its walId; another WAL's head
// over files of ours means two writers on one stream), and the WAL must
// continue from it (from index 1 for a new stream). Every existing file is
// closed, to be sealed; appends go to a new file.
func OpenWAL(dir string, head *evidence.AuditSegment, log *slog.Logger) (*WAL, Recovery, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var rec Recovery
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, rec, fmt.Errorf("audit WAL: create %s: %w", dir, err)
	}
	id, err := walID(dir)
	if err != nil {
		return nil, rec, err
	}
	var sealed uint64
	if head != nil {
		sealed = uint64(head.WALLast)
	}
	names, err := walNames(dir)
	if err != nil {
		return nil, rec, err
	}
	w := &WAL{dir: dir, id: id, log: log, next: sealed + 1}
	for i, name := range names {
		path := filepath.Join(dir, name)
		last := i == len(names)-1
		f, torn, err := scanWALFile(path, last)
		if err != nil {
			return nil, rec, err
		}
		if torn > 0 {
			rec.TornBytes += torn
			log.Warn("audit WAL: cut a torn tail (an append that was never acknowledged)", "file", path, "bytes", torn)
		}
		if f.events == 0 {
			if err := os.Remove(path); err != nil {
				return nil, rec, fmt.Errorf("audit WAL: remove empty %s: %w", path, err)
			}
			continue
		}
		switch {
		case f.first <= sealed && head.WALID != id:
			return nil, rec, fmt.Errorf("%w: %s holds indexes %d to %d, but the stream's head record (walId %s) was sealed from another WAL than this one (walId %s): two replicas write one stream (give each its own --identity), or this volume was copied", ErrWALDamaged, path, f.first, f.last, head.WALID, id)
		case f.last <= sealed:
			// Only the head's own file can be left (a crash between its
			// record's commit and the file's removal): the same indexes and
			// the same events, byte for byte. Anything else covered is
			// another writer's head over events of ours (a copied volume
			// has the same walId), never to be removed.
			sum, err := walPlaintextSHA256(f)
			if err != nil {
				return nil, rec, err
			}
			if f.first != uint64(head.WALFirst) || f.last != uint64(head.WALLast) || sum != head.PlaintextSHA256 {
				return nil, rec, fmt.Errorf("%w: %s holds indexes %d to %d, covered by the stream's head record (indexes %d to %d) but not the events it sealed: two writers on one stream (a copied volume?)", ErrWALDamaged, path, f.first, f.last, head.WALFirst, head.WALLast)
			}
			if err := os.Remove(path); err != nil {
				return nil, rec, fmt.Errorf("audit WAL: remove sealed %s: %w", path, err)
			}
			rec.Removed++
			continue
		case f.first <= sealed:
			return nil, rec, fmt.Errorf("%w: %s holds indexes %d to %d, but the store's head record sealed up to %d, inside the file", ErrWALDamaged, path, f.first, f.last, sealed)
		}
		if len(w.closed) > 0 {
			if prev := w.closed[len(w.closed)-1]; f.first != prev.last+1 {
				return nil, rec, fmt.Errorf("%w: %s starts at index %d, but %s ended at %d", ErrWALDamaged, path, f.first, prev.path, prev.last)
			}
		} else if f.first != sealed+1 {
			return nil, rec, fmt.Errorf("%w: %s starts at index %d, but the store's head record sealed up to %d: events %d to %d are missing", ErrWALDamaged, path, f.first, sealed, sealed+1, f.first-1)
		}
		w.closed = append(w.closed, f)
		w.next = f.last + 1
		rec.Files++
		rec.Events += f.events
	}
	if err := syncDir(dir); err != nil {
		return nil, rec, err
	}
	w.snapshot()
	return w, rec, nil
}

// walPlaintextSHA256 is the SHA-256 of a closed file's events as a
// segment's plaintext (each followed by a newline): what a record that
// sealed it says in plaintextSHA256.
func walPlaintextSHA256(f walFile) (string, error) {
	h := sha256.New()
	err := readWALFile(f, func(fr Frame) error {
		h.Write(fr.Payload)
		h.Write([]byte{'\n'})
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// walID returns the WAL directory's ID, making it on first use.
func walID(dir string) (string, error) {
	path := filepath.Join(dir, "wal-id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
			return "", fmt.Errorf("%w: %s: not a WAL ID (16 lowercase hex digits)", ErrWALDamaged, path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("audit WAL: read %s: %w", path, err)
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("audit WAL: make an ID: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("audit WAL: write %s: %w", tmp, err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return "", fmt.Errorf("audit WAL: write %s: %w", path, err)
	}
	return id, syncDir(dir)
}

// ID returns the WAL directory's ID (the records' walId).
func (w *WAL) ID() string { return w.id }

func walNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit WAL: read %s: %w", dir, err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, walPrefix) && strings.HasSuffix(n, walSuffix) {
			if _, ok := parseWALName(n); !ok {
				return nil, fmt.Errorf("%w: %s: not a WAL file name (wal-<20 digits>.log)", ErrWALDamaged, filepath.Join(dir, n))
			}
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func walName(first uint64) string { return fmt.Sprintf("%s%020d%s", walPrefix, first, walSuffix) }

func parseWALName(n string) (uint64, bool) {
	d := strings.TrimSuffix(strings.TrimPrefix(n, walPrefix), walSuffix)
	if len(d) != 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(d, 10, 64)
	return v, err == nil
}

// scanWALFile checks every batch of path. In the last file a torn tail
// (the unfinished last append, never acknowledged) is cut, and its length
// returned; any other problem is damage.
func scanWALFile(path string, last bool) (walFile, int64, error) {
	f := walFile{path: path}
	first, _ := parseWALName(filepath.Base(path))
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return f, 0, fmt.Errorf("audit WAL: open %s: %w", path, err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return f, 0, fmt.Errorf("audit WAL: stat %s: %w", path, err)
	}
	size := st.Size()
	if last && size < walHeaderLen() {
		// Created, but the crash came before its magic was synced: no
		// frame in it was ever acknowledged.
		if err := file.Truncate(0); err != nil {
			return f, 0, fmt.Errorf("audit WAL: cut torn tail of %s: %w", path, err)
		}
		return f, size, nil
	}
	damage := func(off int64, what string) error {
		return fmt.Errorf("%w: %s at byte %d: %s", ErrWALDamaged, path, off, what)
	}
	b := newBatchReader(first)
	err = readFrames(bufio.NewReaderSize(file, 1<<20), b.frame)
	var fe *frameError
	problem := int64(-1)
	switch {
	case err == nil && b.remaining == 0:
		return b.committed(path), 0, nil
	case err == nil:
		problem = b.batchOff // an incomplete last batch
		fe = &frameError{problem, fmt.Sprintf("a batch of %d events ends after %d", b.count, b.count-b.remaining), true}
	case errors.As(err, &fe):
		problem = fe.off
	default:
		return f, 0, err
	}
	if !last || !fe.physical {
		return f, 0, damage(problem, fe.msg)
	}
	// The last file: a torn tail only if no acknowledged batch follows
	// the problem (a batch is written only after the one before it is
	// fsynced and acknowledged).
	data, err := os.ReadFile(path)
	if err != nil {
		return f, 0, fmt.Errorf("audit WAL: read %s: %w", path, err)
	}
	if at := findBatchStart(data, problem+1, b.lastCommitted()); at >= 0 {
		return f, 0, damage(problem, fmt.Sprintf("%s, and a whole batch follows at byte %d: acknowledged events would be lost", fe.msg, at))
	}
	if err := file.Truncate(b.goodEnd); err != nil {
		return f, 0, fmt.Errorf("audit WAL: cut torn tail of %s: %w", path, err)
	}
	if err := file.Sync(); err != nil {
		return f, 0, fmt.Errorf("audit WAL: sync %s: %w", path, err)
	}
	return b.committed(path), size - b.goodEnd, nil
}

func walHeaderLen() int64 { return int64(len(walMagic)) }

// frameError is a problem with a frame at off. physical problems (a
// short frame, a bad length or CRC) may be the torn tail of an append
// interrupted by a crash; others (an index out of place in a frame whose
// CRC holds) are damage.
type frameError struct {
	off      int64
	msg      string
	physical bool
}

func (e *frameError) Error() string { return fmt.Sprintf("byte %d: %s", e.off, e.msg) }

// rawFrame is one frame as read: a batch start or an event.
type rawFrame struct {
	off     int64
	batch   bool
	index   uint64
	time    time.Time
	payload []byte
}

// batchReader checks frames against the batch structure and counts what
// complete batches hold.
type batchReader struct {
	expect           uint64
	remaining, count uint32
	batchOff         int64
	batchTime        time.Time
	goodEnd          int64
	first, last      uint64
	events, bytes    int64
	oldest           time.Time
	pendingBytes     int64
	onEvent          func(Frame) error
}

func newBatchReader(first uint64) *batchReader {
	return &batchReader{expect: first, goodEnd: walHeaderLen()}
}

func (b *batchReader) frame(fr rawFrame) error {
	if fr.batch {
		switch {
		case b.remaining > 0:
			return &frameError{fr.off, fmt.Sprintf("a batch starts %d events before the previous one's end", b.remaining), false}
		case fr.index != b.expect:
			return &frameError{fr.off, fmt.Sprintf("a batch starts at index %d, want %d", fr.index, b.expect), false}
		}
		b.count = binary.BigEndian.Uint32(fr.payload)
		if b.count == 0 {
			return &frameError{fr.off, "an empty batch", false}
		}
		b.remaining, b.batchOff, b.batchTime, b.pendingBytes = b.count, fr.off, fr.time, 0
		return nil
	}
	switch {
	case b.remaining == 0:
		return &frameError{fr.off, "an event outside a batch", false}
	case fr.index != b.expect:
		return &frameError{fr.off, fmt.Sprintf("index %d follows %d", fr.index, b.expect-1), false}
	}
	if b.onEvent != nil {
		if err := b.onEvent(Frame{Index: fr.index, Time: fr.time, Payload: fr.payload}); err != nil {
			return err
		}
	}
	b.expect++
	b.remaining--
	b.pendingBytes += int64(len(fr.payload))
	if b.remaining == 0 {
		if b.events == 0 {
			b.first, b.oldest = b.expect-uint64(b.count), b.batchTime
		}
		b.last = b.expect - 1
		b.events += int64(b.count)
		b.bytes += b.pendingBytes
		b.goodEnd = fr.off + frameHeader + int64(len(fr.payload))
	}
	return nil
}

// lastCommitted is the last index of the last whole batch.
func (b *batchReader) lastCommitted() uint64 {
	if b.remaining == 0 {
		return b.expect - 1
	}
	return b.expect - uint64(b.count-b.remaining) - 1
}

func (b *batchReader) committed(path string) walFile {
	return walFile{path: path, first: b.first, last: b.last, events: b.events, bytes: b.bytes, oldest: b.oldest}
}

// findBatchStart returns the offset of the first whole, CRC-valid batch
// start frame in data at or after from whose first index is after
// afterIndex; -1 if there is none.
func findBatchStart(data []byte, from int64, afterIndex uint64) int64 {
	for i := max(from, 0); i+frameHeader+4 <= int64(len(data)); i++ {
		if binary.BigEndian.Uint32(data[i:]) != batchFlag|4 {
			continue
		}
		if binary.BigEndian.Uint64(data[i+4:]) <= afterIndex {
			continue
		}
		crc := crc32.Update(crc32.Checksum(data[i+4:i+20], castagnoli), castagnoli, data[i+24:i+28])
		if crc == binary.BigEndian.Uint32(data[i+20:]) {
			return i
		}
	}
	return -1
}

// readFrames reads a WAL file's magic and frames, calling fn for each
// whole, CRC-checked frame. A short or bad frame or magic is a
// *frameError; fn's errors are returned as they are.
func readFrames(r io.Reader, fn func(rawFrame) error) error {
	magic := make([]byte, len(walMagic))
	if n, err := io.ReadFull(r, magic); err != nil || string(magic) != walMagic {
		if err == nil || n == len(magic) {
			return &frameError{0, "not a lifeboat WAL file (bad magic)", false}
		}
		return &frameError{0, "short magic", true}
	}
	off := int64(len(walMagic))
	var hdr [frameHeader]byte
	var payload []byte
	for {
		n, err := io.ReadFull(r, hdr[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return &frameError{off, fmt.Sprintf("frame header cut after %d bytes", n), true}
			}
			return err
		}
		word := binary.BigEndian.Uint32(hdr[0:4])
		batch := word&batchFlag != 0
		l := word &^ batchFlag
		if batch && l != 4 || !batch && (l == 0 || l > MaxEventBytes) {
			return &frameError{off, fmt.Sprintf("frame length word %#x is not a batch start (4 bytes) or an event of 1 to %d bytes", word, MaxEventBytes), true}
		}
		if cap(payload) < int(l) {
			payload = make([]byte, l)
		}
		payload = payload[:l]
		if _, err := io.ReadFull(r, payload); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
				return &frameError{off, "payload cut short", true}
			}
			return err
		}
		crc := crc32.Update(crc32.Checksum(hdr[4:20], castagnoli), castagnoli, payload)
		if crc != binary.BigEndian.Uint32(hdr[20:24]) {
			return &frameError{off, "CRC-32C mismatch", true}
		}
		fr := rawFrame{off: off, batch: batch, index: binary.BigEndian.Uint64(hdr[4:12]),
			time: time.Unix(0, int64(binary.BigEndian.Uint64(hdr[12:20]))).UTC(), payload: payload}
		if err := fn(fr); err != nil {
			return err
		}
		off += frameHeader + int64(l)
	}
}

// appendFrame appends one frame to buf.
func appendFrame(buf []byte, word uint32, index uint64, t time.Time, payload []byte) []byte {
	var hdr [frameHeader]byte
	binary.BigEndian.PutUint32(hdr[0:4], word)
	binary.BigEndian.PutUint64(hdr[4:12], index)
	binary.BigEndian.PutUint64(hdr[12:20], uint64(t.UnixNano()))
	crc := crc32.Update(crc32.Checksum(hdr[4:20], castagnoli), castagnoli, payload)
	binary.BigEndian.PutUint32(hdr[20:24], crc)
	buf = append(buf, hdr[:]...)
	return append(buf, payload...)
}

// appendBatch appends one append's frames to buf: the batch start (the
// first index, the receive time, the count), then each event.
func appendBatch(buf []byte, first uint64, received time.Time, events []Event) []byte {
	var count [4]byte
	binary.BigEndian.PutUint32(count[:], uint32(len(events)))
	buf = appendFrame(buf, batchFlag|4, first, received, count[:])
	for i, e := range events {
		buf = appendFrame(buf, uint32(len(e.JSON)), first+uint64(i), e.Time, e.JSON)
	}
	return buf
}

// Event is one audit event to append.
type Event struct {
	// JSON is the event, compact JSON, at most MaxEventBytes.
	JSON []byte
	// Time is the event's time (Frame.Time).
	Time time.Time
}

// Append writes events as consecutive frames and fsyncs them: when it
// returns nil they are durable and may be acknowledged. On an error
// nothing of them counts (the file is cut back to where it was).
// received is the local clock, for the age of what waits to be sealed.
func (w *WAL) Append(events []Event, received time.Time) error {
	for i, e := range events {
		if len(e.JSON) == 0 || len(e.JSON) > MaxEventBytes {
			return fmt.Errorf("audit WAL: event %d is %d bytes, outside 1 to %d", i, len(e.JSON), MaxEventBytes)
		}
	}
	if len(events) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken != nil {
		return w.broken
	}
	if w.cur == nil {
		if err := w.startFile(received); err != nil {
			return err
		}
	}
	buf := appendBatch(nil, w.next, received, events)
	idx := w.next + uint64(len(events))
	var payload int64
	for _, e := range events {
		payload += int64(len(e.JSON))
	}
	_, err := w.cur.Write(buf)
	if err == nil {
		err = w.cur.Sync()
	}
	if err != nil {
		// Cut back what may have been written, so that the file holds only
		// acknowledged frames; if even that fails, stop appending.
		if terr := w.cur.Truncate(w.curLen); terr != nil {
			w.broken = fmt.Errorf("audit WAL: %s cannot be cut back after a failed append (%w); restart to recover", w.curF.path, terr)
		} else if terr := w.cur.Sync(); terr != nil {
			// The cut is not durable: a crash could bring the bytes back
			// in a file that is no longer the last. Stop appending here.
			w.broken = fmt.Errorf("audit WAL: %s: the cut after a failed append is not synced (%w); restart to recover", w.curF.path, terr)
		} else if _, serr := w.cur.Seek(w.curLen, io.SeekStart); serr != nil {
			w.broken = fmt.Errorf("audit WAL: %s: seek after a failed append: %w", w.curF.path, serr)
		}
		return fmt.Errorf("audit WAL: append to %s: %w", w.curF.path, err)
	}
	if w.curF.events == 0 {
		w.curF.first, w.curF.oldest = w.next, received
	}
	w.curF.last = idx - 1
	w.curF.events += int64(len(events))
	w.curF.bytes += payload
	w.curLen += int64(len(buf))
	w.next = idx
	w.snapshot()
	return nil
}

func (w *WAL) startFile(now time.Time) error {
	path := filepath.Join(w.dir, walName(w.next))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit WAL: create %s: %w", path, err)
	}
	if _, err := f.Write([]byte(walMagic)); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("audit WAL: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("audit WAL: sync %s: %w", path, err)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	w.cur, w.curF, w.curLen = f, walFile{path: path}, int64(len(walMagic))
	return nil
}

// Rotate closes the file being appended to when it holds events and
// maxBytes or maxAge is reached (or always, with force), so that it can be
// sealed. It reports whether it closed one.
func (w *WAL) Rotate(now time.Time, maxBytes int64, maxAge time.Duration, force bool) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur == nil || w.curF.events == 0 {
		return false, nil
	}
	if !force && w.curF.bytes < maxBytes && now.Sub(w.curF.oldest) < maxAge {
		return false, nil
	}
	if err := w.cur.Close(); err != nil {
		return false, fmt.Errorf("audit WAL: close %s: %w", w.curF.path, err)
	}
	w.closed = append(w.closed, w.curF)
	w.cur, w.curF = nil, walFile{}
	w.snapshot()
	return true, nil
}

// closedFiles returns the closed files, oldest first.
func (w *WAL) closedFiles() []walFile {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.closed)
}

// remove deletes a sealed file; it must be the oldest closed one.
func (w *WAL) remove(f walFile) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.closed) == 0 || w.closed[0].path != f.path {
		return fmt.Errorf("audit WAL: %s is not the oldest closed file", f.path)
	}
	if err := os.Remove(f.path); err != nil {
		return fmt.Errorf("audit WAL: remove sealed %s: %w", f.path, err)
	}
	w.closed = w.closed[1:]
	w.snapshot()
	return syncDir(w.dir)
}

// Stats describes what waits in the WAL.
type Stats struct {
	// Bytes is the payload bytes not yet sealed.
	Bytes int64
	// Events not yet sealed.
	Events int64
	// Oldest is the receive time of the oldest event not yet sealed; zero
	// when there is none.
	Oldest time.Time
	// Next is the index the next event gets.
	Next uint64
}

// Stats returns what waits in the WAL, as of its last change.
func (w *WAL) Stats() Stats {
	w.snapMu.Lock()
	defer w.snapMu.Unlock()
	return w.snap
}

// snapshot recomputes Stats; the caller holds mu.
func (w *WAL) snapshot() {
	s := Stats{Next: w.next}
	for _, f := range append(slices.Clone(w.closed), w.curF) {
		if f.events == 0 {
			continue
		}
		s.Bytes += f.bytes
		s.Events += f.events
		if s.Oldest.IsZero() || f.oldest.Before(s.Oldest) {
			s.Oldest = f.oldest
		}
	}
	w.snapMu.Lock()
	w.snap = s
	w.snapMu.Unlock()
}

// Close closes the file being appended to (its frames are already durable).
func (w *WAL) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.broken = errors.New("audit WAL: closed")
	if w.cur == nil {
		return nil
	}
	err := w.cur.Close()
	if w.curF.events > 0 {
		w.closed = append(w.closed, w.curF)
	}
	w.cur, w.curF = nil, walFile{}
	w.snapshot()
	return err
}

// readWALFile reads a closed file's events again, checking them against
// the batch structure and what was recorded when it was closed.
func readWALFile(f walFile, fn func(Frame) error) error {
	file, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("audit WAL: read %s: %w", f.path, err)
	}
	defer file.Close()
	b := newBatchReader(f.first)
	b.onEvent = fn
	err = readFrames(bufio.NewReaderSize(file, 1<<20), b.frame)
	var fe *frameError
	if errors.As(err, &fe) {
		return fmt.Errorf("%w: %s at byte %d: %s", ErrWALDamaged, f.path, fe.off, fe.msg)
	}
	if err != nil {
		return err
	}
	if b.remaining != 0 || b.events != f.events || b.last != f.last {
		return fmt.Errorf("%w: %s holds %d whole events to index %d, want %d to %d", ErrWALDamaged, f.path, b.events, b.last, f.events, f.last)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit WAL: open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit WAL: sync directory %s: %w", dir, err)
	}
	return nil
}

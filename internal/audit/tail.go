package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The file mode (docs/format.md §8.6): the API server's log backend
// (--audit-log-path, --audit-log-format=json) writes one event per line
// and rotates the file by renaming it beside itself
// (audit-<time>.log) and starting a new one. Tail follows it across
// rotations; where it is, is a checkpoint in the WAL directory written
// after each WAL append, so a restart resumes there (at least once: a
// crash between the append and the checkpoint repeats those events).

const (
	checkpointName = "tail-checkpoint.json"
	tailPoll       = 250 * time.Millisecond
	tailBatch      = 400
	tailChunk      = 1 << 20
)

// checkpoint is where Tail has read to: the file (by device and inode,
// which a rename keeps, and the digest of its first bytes, which tells a
// reused inode), the offset after its last complete line, and the file's
// modification time then (when the file is gone, the rotated files
// modified after it hold what came next).
type checkpoint struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Head    string `json:"head"`
	HeadLen int    `json:"headLen"`
	Offset  int64  `json:"offset"`
	ModNs   int64  `json:"modNs"`
}

// headBytes is how much of a file's start identifies it.
const headBytes = 256

// logFile is one file of the log: the path or a rotated one.
type logFile struct {
	path     string
	dev, ino uint64
	mod      time.Time
}

// same reports whether f is the file c names: its inode, and the same
// first bytes (a file only grows, so its start does not change).
func (c *checkpoint) same(f logFile) bool {
	if f.dev != c.Dev || f.ino != c.Ino {
		return false
	}
	h, n, err := fileHead(f.path, c.HeadLen)
	return err == nil && n == c.HeadLen && h == c.Head
}

// fileHead is the hex SHA-256 of the first min(n, size) bytes of path.
func fileHead(path string, n int) (string, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", 0, err
	}
	sum := sha256.Sum256(b[:m])
	return hex.EncodeToString(sum[:]), m, nil
}

func fileID(fi os.FileInfo) (dev, ino uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(st.Dev), st.Ino, true
}

func (r *Receiver) checkpointPath() string { return filepath.Join(r.o.WALDir, checkpointName) }

func (r *Receiver) loadCheckpoint() (*checkpoint, error) {
	b, err := os.ReadFile(r.checkpointPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit file: read checkpoint: %w", err)
	}
	var c checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("audit file: checkpoint %s: %w", r.checkpointPath(), err)
	}
	return &c, nil
}

func (r *Receiver) saveCheckpoint(c checkpoint) error {
	b, _ := json.Marshal(c)
	tmp := r.checkpointPath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("audit file: write checkpoint: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, r.checkpointPath())
	}
	if err != nil {
		return fmt.Errorf("audit file: write checkpoint: %w", err)
	}
	return syncDir(r.o.WALDir)
}

// listLogFiles returns path's rotated siblings (<stem>-*<ext>), oldest
// first by modification time, then path itself when it exists.
func listLogFiles(path string) ([]logFile, error) {
	dir, base := filepath.Split(path)
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil, fmt.Errorf("audit file: read %s: %w", dir, err)
	}
	var out []logFile
	var current *logFile
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || n != base && (!strings.HasPrefix(n, stem+"-") || !strings.HasSuffix(n, ext)) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		dev, ino, _ := fileID(fi)
		lf := logFile{path: filepath.Join(dir, n), dev: dev, ino: ino, mod: fi.ModTime()}
		if n == base {
			current = &lf
			continue
		}
		out = append(out, lf)
	}
	slices.SortStableFunc(out, func(a, b logFile) int { return a.mod.Compare(b.mod) })
	if current != nil {
		out = append(out, *current)
	}
	return out, nil
}

// Tail follows the API server's audit log file at path until ctx ends,
// appending its events to the WAL in batches (sealing is Run's). It
// resumes at the checkpoint: in the file it names (found among the rotated
// files by inode and first bytes), then every file rotated after it, in
// order, then path. A checkpointed file that is gone (rotated and deleted
// while lifeboat was down) is logged as lost, and reading goes on with the
// files modified after it. Without a checkpoint it starts at the start of
// path.
func (r *Receiver) Tail(ctx context.Context, path string) error {
	cp, err := r.loadCheckpoint()
	if err != nil {
		return err
	}
	// cur is the file being read and off where; after is the modification
	// time the next file must follow when cur cannot be found.
	var cur *logFile
	var off int64
	var after time.Time
	for ctx.Err() == nil {
		files, err := listLogFiles(path)
		if err != nil {
			return err
		}
		i := -1
		switch {
		case cp != nil:
			for j := range files {
				if cp.same(files[j]) {
					i, off = j, cp.Offset
				}
			}
			if i < 0 {
				r.log.Error("audit file: the file last read was rotated away and removed while lifeboat was down; its unread events are lost (audit verify reports the gap)", "path", path)
				after = time.Unix(0, cp.ModNs)
			}
			cp = nil
		case cur != nil:
			for j := range files {
				if files[j].dev == cur.dev && files[j].ino == cur.ino {
					i = j
				}
			}
			if i < 0 {
				after = cur.mod
			}
		}
		switch {
		case i >= 0 && cur != nil:
			// cur was read to its end: the next file.
			i, off = i+1, 0
		case i < 0 && (cur != nil || !after.IsZero()):
			// cur is gone: the first file modified after it.
			i = slices.IndexFunc(files, func(f logFile) bool { return f.mod.After(after) })
			off = 0
		case i < 0:
			// No checkpoint: the current file, once it exists.
			if len(files) > 0 && files[len(files)-1].path == path {
				i = len(files) - 1
			}
		}
		if i < 0 || i >= len(files) {
			// Nothing to read yet (no file, or between a rotation's rename
			// and the new file): wait, where we are.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(tailPoll):
			}
			continue
		}
		f := files[i]
		end, mod, err := r.tailFile(ctx, f, off, f.path == path)
		if errors.Is(err, errRelist) {
			continue // renamed since the listing: list again
		}
		if err != nil {
			return err
		}
		cur = &logFile{path: f.path, dev: f.dev, ino: f.ino, mod: mod}
		off = end
	}
	return nil
}

// errRelist says a file was renamed between the listing and its opening.
var errRelist = errors.New("renamed since listed")

// tailFile reads f from off. Following path, it waits for more at EOF
// until path names another file (the rotation: it then reads f to its
// end) or ctx ends; otherwise it returns at EOF. It returns where it ended
// and f's modification time then.
func (r *Receiver) tailFile(ctx context.Context, lf logFile, off int64, follow bool) (int64, time.Time, error) {
	path := lf.path
	f, err := os.Open(path)
	if err != nil {
		return off, lf.mod, fmt.Errorf("audit file: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return off, lf.mod, fmt.Errorf("audit file: stat %s: %w", path, err)
	}
	dev, ino, _ := fileID(fi)
	if dev != lf.dev || ino != lf.ino {
		return off, lf.mod, errRelist
	}
	head, headLen, err := fileHead(path, headBytes)
	if err != nil {
		return off, lf.mod, fmt.Errorf("audit file: read %s: %w", path, err)
	}
	if fi.Size() < off {
		r.log.Warn("audit file: shorter than the checkpoint (truncated); reading it from the start", "path", path, "size", fi.Size(), "checkpoint", off)
		off = 0
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, lf.mod, fmt.Errorf("audit file: seek %s: %w", path, err)
	}
	mod := fi.ModTime()
	var pending []byte
	skipping := false
	buf := make([]byte, tailChunk)
	// take appends pending's complete lines, skips a line too long to be
	// an event, then checkpoints after what it took.
	take := func() error {
		if skipping {
			nl := bytes.IndexByte(pending, '\n')
			if nl < 0 {
				off += int64(len(pending))
				pending = pending[:0]
				return nil
			}
			off += int64(nl + 1)
			pending = append(pending[:0], pending[nl+1:]...)
			skipping = false
		}
		consumed, err := r.appendLines(pending, path, off)
		if err != nil {
			return err
		}
		off += int64(consumed)
		pending = append(pending[:0], pending[consumed:]...)
		if len(pending) > MaxEventBytes {
			r.m.refused.Inc()
			r.log.Warn("audit file: a line longer than an event may be is skipped", "path", path, "offset", off, "limit", MaxEventBytes)
			skipping = true
			off += int64(len(pending))
			pending = pending[:0]
		}
		if head, headLen, err = fileHead(path, headBytes); err != nil {
			return fmt.Errorf("audit file: read %s: %w", path, err)
		}
		if st, err := f.Stat(); err == nil {
			mod = st.ModTime()
		}
		return r.saveCheckpoint(checkpoint{Dev: dev, Ino: ino, Head: head, HeadLen: headLen, Offset: off, ModNs: mod.UnixNano()})
	}
	for ctx.Err() == nil {
		n, rerr := f.Read(buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			if err := take(); err != nil {
				return off, mod, err
			}
			continue
		}
		if rerr != nil && rerr != io.EOF {
			return off, mod, fmt.Errorf("audit file: read %s: %w", path, rerr)
		}
		// At EOF.
		if !follow {
			break
		}
		if cur, err := os.Stat(path); err != nil || func() bool { d, i, _ := fileID(cur); return d != dev || i != ino }() {
			// Rotated (or being rotated): what the writer wrote before the
			// rename is in this file; read it to its end, then go on.
			for n, _ := f.Read(buf); n > 0 && ctx.Err() == nil; n, _ = f.Read(buf) {
				pending = append(pending, buf[:n]...)
				if err := take(); err != nil {
					return off, mod, err
				}
			}
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(tailPoll):
		}
	}
	if len(bytes.TrimSpace(pending)) > 0 && !follow {
		r.log.Warn("audit file: a rotated file ends in an incomplete line, which is dropped", "path", path, "offset", off)
	}
	return off, mod, nil
}

// appendLines appends the complete lines of data (read from path at off)
// to the WAL, in batches, and returns how many bytes they took. A line
// that is not an audit event is skipped and counted, naming its offset.
func (r *Receiver) appendLines(data []byte, path string, off int64) (int, error) {
	end := bytes.LastIndexByte(data, '\n') + 1
	if end == 0 {
		return 0, nil
	}
	now := r.o.Now()
	var batch []Event
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		r.m.received.Add(float64(len(batch)))
		if err := r.wal.Append(batch, now); err != nil {
			r.m.walFailures.Inc()
			return err
		}
		r.m.acknowledged.Add(float64(len(batch)))
		batch = batch[:0]
		r.observe()
		return nil
	}
	pos := 0
	for pos < end {
		nl := bytes.IndexByte(data[pos:end], '\n')
		line := bytes.TrimSpace(data[pos : pos+nl])
		at := off + int64(pos)
		pos += nl + 1
		if len(line) == 0 {
			continue
		}
		ev, err := parseEvent(line, now)
		if err != nil {
			r.m.refused.Inc()
			r.log.Warn("audit file: a line that is not an audit event is skipped", "path", path, "offset", at, "err", err)
			continue
		}
		batch = append(batch, ev)
		if len(batch) == tailBatch {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return end, nil
}

package audit

import (
	"bytes"
	"context"
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
// which a rename keeps) and the offset after its last complete line.
type checkpoint struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
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

// logFiles returns path's rotated siblings (<base>-*<ext>) and path itself,
// oldest first by modification time, path last.
func logFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil, fmt.Errorf("audit file: read %s: %w", dir, err)
	}
	type cand struct {
		path string
		mod  time.Time
	}
	var cs []cand
	for _, e := range ents {
		n := e.Name()
		if n == base || !strings.HasPrefix(n, stem+"-") || !strings.HasSuffix(n, ext) || e.IsDir() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		cs = append(cs, cand{filepath.Join(dir, n), fi.ModTime()})
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return a.mod.Compare(b.mod) })
	out := make([]string, 0, len(cs)+1)
	for _, c := range cs {
		out = append(out, c.path)
	}
	return append(out, path), nil
}

// Tail follows the API server's audit log file at path until ctx ends,
// appending its events to the WAL in batches (sealing is Run's). It
// resumes at the checkpoint: in the file it names, found among the rotated
// files by inode, then every file rotated after it, then path. A
// checkpointed file that is gone (rotated and deleted while lifeboat was
// down) is reported: its unread events are lost, and `audit verify`
// shows the gap.
func (r *Receiver) Tail(ctx context.Context, path string) error {
	cp, err := r.loadCheckpoint()
	if err != nil {
		return err
	}
	if cp != nil {
		files, err := logFiles(path)
		if err != nil {
			return err
		}
		start := -1
		for i, f := range files {
			if fi, err := os.Stat(f); err == nil {
				if dev, ino, ok := fileID(fi); ok && dev == cp.Dev && ino == cp.Ino {
					start = i
					break
				}
			}
		}
		if start < 0 {
			r.log.Error("audit file: the file last read was rotated away and removed while lifeboat was down; its unread events are lost (audit verify reports the gap)", "path", path)
			cp = nil
		} else {
			// Catch up over the checkpointed file and those rotated after
			// it; then follow path.
			for i, f := range files[start : len(files)-1] {
				off := int64(0)
				if i == 0 {
					off = cp.Offset
				}
				if _, err := r.tailFile(ctx, f, off, false); err != nil {
					return err
				}
			}
			if start == len(files)-1 {
				return r.follow(ctx, path, cp.Offset)
			}
			return r.follow(ctx, path, 0)
		}
	}
	return r.follow(ctx, path, 0)
}

// follow reads path from off and on, switching to the new file when path
// is rotated, until ctx ends.
func (r *Receiver) follow(ctx context.Context, path string, off int64) error {
	for {
		rotated, err := r.tailFile(ctx, path, off, true)
		if err != nil || !rotated {
			return err
		}
		off = 0
	}
}

// tailFile reads the file at path from off. With follow, it waits for
// more at EOF until the path names another file (rotated: it then reads
// the old file to its end and returns true) or ctx ends; without, it
// returns at EOF.
func (r *Receiver) tailFile(ctx context.Context, path string, off int64, follow bool) (bool, error) {
	f, err := os.Open(path)
	for errors.Is(err, os.ErrNotExist) && follow {
		// Between a rotation's rename and the new file's creation.
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(tailPoll):
		}
		f, err = os.Open(path)
	}
	if err != nil {
		return false, fmt.Errorf("audit file: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("audit file: stat %s: %w", path, err)
	}
	dev, ino, _ := fileID(fi)
	if fi.Size() < off {
		r.log.Warn("audit file: shorter than the checkpoint (truncated); reading it from the start", "path", path, "size", fi.Size(), "checkpoint", off)
		off = 0
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return false, fmt.Errorf("audit file: seek %s: %w", path, err)
	}
	var pending []byte
	buf := make([]byte, tailChunk)
	// take appends pending's complete lines, then checkpoints after them.
	take := func() error {
		consumed, err := r.appendLines(pending, path, off)
		if err != nil || consumed == 0 {
			return err
		}
		off += int64(consumed)
		pending = append(pending[:0], pending[consumed:]...)
		return r.saveCheckpoint(checkpoint{Dev: dev, Ino: ino, Offset: off})
	}
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			if err := take(); err != nil {
				return false, err
			}
			if len(pending) > MaxEventBytes+1 {
				return false, fmt.Errorf("audit file: %s at byte %d: a line longer than %d bytes", path, off, MaxEventBytes)
			}
		}
		if rerr != nil && rerr != io.EOF {
			return false, fmt.Errorf("audit file: read %s: %w", path, rerr)
		}
		if n > 0 {
			continue
		}
		// At EOF.
		if !follow {
			return false, nil
		}
		if cur, err := os.Stat(path); err == nil {
			if d, i, _ := fileID(cur); d != dev || i != ino {
				// Rotated: what the writer wrote before the rename is in
				// this file; read to its end, then go to the new one.
				for n, _ := f.Read(buf); n > 0; n, _ = f.Read(buf) {
					pending = append(pending, buf[:n]...)
					if err := take(); err != nil {
						return false, err
					}
				}
				if len(bytes.TrimSpace(pending)) > 0 {
					r.log.Warn("audit file: the rotated file ends in an incomplete line, which is dropped", "path", path, "offset", off)
				}
				return true, nil
			}
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(tailPoll):
		}
	}
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

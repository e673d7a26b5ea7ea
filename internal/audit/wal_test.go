package audit

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

func ev(i int) Event {
	return Event{JSON: fmt.Appendf(nil, `{"auditID":"id-%d","stage":"ResponseComplete"}`, i), Time: time.Date(2026, 12, 6, 1, 2, 3, i*1000, time.UTC)}
}

// sealedAt is a head record of this WAL directory's own that sealed up to
// index n: the record of the file that ends at n, when there is one.
func sealedAt(t testing.TB, dir string, n uint64) *evidence.AuditSegment {
	t.Helper()
	id, err := walID(dir)
	if err != nil {
		t.Fatal(err)
	}
	head := &evidence.AuditSegment{WALFirst: int64(n), WALLast: int64(n), WALID: id}
	names, _ := walNames(dir)
	for _, name := range names {
		f, _, err := scanWALFile(filepath.Join(dir, name), false)
		if err != nil || f.last != n || f.events == 0 {
			continue
		}
		sum, err := walPlaintextSHA256(f)
		if err != nil {
			t.Fatal(err)
		}
		head.WALFirst, head.PlaintextSHA256 = int64(f.first), sum
	}
	return head
}

func readAllFrames(t *testing.T, w *WAL) []Frame {
	t.Helper()
	var out []Frame
	for _, f := range w.closedFiles() {
		if err := readWALFile(f, func(fr Frame) error {
			fr.Payload = bytes.Clone(fr.Payload)
			out = append(out, fr)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestWALAppendRotateReopen(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	w, rec, err := OpenWAL(dir, nil, nil)
	if err != nil || rec.Files != 0 {
		t.Fatalf("open: %v %+v", err, rec)
	}
	if err := w.Append([]Event{ev(1), ev(2)}, now); err != nil {
		t.Fatal(err)
	}
	if rotated, _ := w.Rotate(now, 1<<20, time.Minute, false); rotated {
		t.Fatal("rotated before maxBytes or maxAge")
	}
	if rotated, _ := w.Rotate(now.Add(time.Minute), 1<<20, time.Minute, false); !rotated {
		t.Fatal("not rotated at maxAge")
	}
	if err := w.Append([]Event{ev(3)}, now); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Events != 3 || st.Next != 4 || !st.Oldest.Equal(now) {
		t.Fatalf("stats %+v", st)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]Event{ev(4)}, now); err == nil {
		t.Fatal("append after close succeeded")
	}

	w, rec, err = OpenWAL(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Files != 2 || rec.Events != 3 || rec.TornBytes != 0 {
		t.Fatalf("recovery %+v", rec)
	}
	frames := readAllFrames(t, w)
	for i, fr := range frames {
		want := ev(i + 1)
		if fr.Index != uint64(i+1) || !bytes.Equal(fr.Payload, want.JSON) || !fr.Time.Equal(want.Time) {
			t.Fatalf("frame %d: %d %s %v", i, fr.Index, fr.Payload, fr.Time)
		}
	}
	// The next append continues the indexes in a new file.
	if err := w.Append([]Event{ev(4)}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, walName(4))); err != nil {
		t.Fatal(err)
	}

	// A head that sealed the first file removes it on open.
	w.Close()
	w, rec, err = OpenWAL(dir, sealedAt(t, dir, 2), nil)
	if err != nil || rec.Removed != 1 || rec.Events != 2 {
		t.Fatalf("open after seal of 1-2: %v %+v", err, rec)
	}
	w.Close()
	// A head at the end of a file removes it; a head behind a gap is refused.
	w, rec, err = OpenWAL(dir, sealedAt(t, dir, 3), nil)
	if err != nil || rec.Removed != 1 || rec.Events != 1 {
		t.Fatalf("open after seal of 3: %v %+v", err, rec)
	}
	w.Close()
	if _, _, err := OpenWAL(dir, sealedAt(t, dir, 1), nil); !errors.Is(err, ErrWALDamaged) || !strings.Contains(err.Error(), "events 2 to 3 are missing") {
		t.Fatalf("open with a gap: %v", err)
	}
	// A head inside a file is refused.
	if err := w2(t, dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenWAL(dir, sealedAt(t, dir, 5), nil); !errors.Is(err, ErrWALDamaged) {
		t.Fatalf("open with the head inside a file: %v", err)
	}
	os.Remove(filepath.Join(dir, walName(4)))
	if _, _, err := OpenWAL(dir, sealedAt(t, dir, 5), nil); !errors.Is(err, ErrWALDamaged) || !strings.Contains(err.Error(), "inside the file") {
		t.Fatalf("open with the head inside a file: %v", err)
	}
}

// w2 appends two events to the WAL in dir (indexes 5 and 6).
func w2(t *testing.T, dir string) error {
	w, _, err := OpenWAL(dir, sealedAt(t, dir, 3), nil)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Append([]Event{ev(5), ev(6)}, time.Now())
}

func TestWALTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	w, _, err := OpenWAL(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]Event{ev(1), ev(2)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	w.Close()
	path := filepath.Join(dir, walName(1))
	torn := appendBatch(nil, 3, time.Now(), []Event{ev(3)})
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(torn[:len(torn)-5])
	f.Close()
	w, rec, err := OpenWAL(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Events != 2 || rec.TornBytes != int64(len(torn)-5) {
		t.Fatalf("recovery %+v", rec)
	}
	if n := len(readAllFrames(t, w)); n != 2 {
		t.Fatalf("%d frames after the cut", n)
	}
	// A file created but never synced past its magic is dropped.
	w.Close()
	os.WriteFile(filepath.Join(dir, walName(3)), []byte("LBW"), 0o600)
	if _, rec, err = OpenWAL(dir, nil, nil); err != nil || rec.Files != 1 || rec.TornBytes != 3 {
		t.Fatalf("short magic: %v %+v", err, rec)
	}
}

func TestWALDamageIsRefused(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"bad-crc-then-batch.log", "CRC-32C mismatch"},
		{"index-skips.log", "a batch starts at index 9, want 8"},
		{"bad-magic.log", "bad magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data, err := os.ReadFile(filepath.Join("testdata", "negative", tc.name))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, walName(7)), data, 0o600)
			// As the last file (where a torn tail is cut) and as a file
			// followed by another: refused both ways.
			for _, later := range []bool{false, true} {
				if later {
					os.WriteFile(filepath.Join(dir, walName(100)), []byte(walMagic), 0o600)
				}
				_, _, err = OpenWAL(dir, nil, nil)
				if !errors.Is(err, ErrWALDamaged) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), walName(7)) {
					t.Fatalf("later file %v: got %v, want ErrWALDamaged naming %s: %s", later, err, walName(7), tc.want)
				}
			}
		})
	}
}

// TestWALVectors checks the test vectors of docs/format.md §8.7 (and writes
// them with -update).
func TestWALVectors(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)
	events := [][]byte{
		[]byte(`{"auditID":"7c1d2f60-0001","stage":"ResponseComplete","verb":"create"}`),
		[]byte(`{"auditID":"7c1d2f60-0002","stage":"ResponseComplete","verb":"patch"}`),
		[]byte(`{"auditID":"7c1d2f60-0003","stage":"ResponseComplete","verb":"delete"}`),
	}
	// wal-3.log: one append of events 7 and 8, then one of event 9.
	evs := make([]Event, 3)
	for i, e := range events {
		evs[i] = Event{JSON: e, Time: at.Add(time.Duration(i) * time.Second)}
	}
	good := appendBatch([]byte(walMagic), 7, at, evs[:2])
	second := len(good)
	good = appendBatch(good, 9, at.Add(time.Second), evs[2:])
	// Cut in the middle of the last append: a torn tail.
	torn := good[:second+frameHeader+4+frameHeader+10]
	// A flipped byte in event 8, followed by the whole second append:
	// damage even in the last file (the second append was only written
	// after the first was fsynced and acknowledged).
	event8 := len(walMagic) + frameHeader + 4 + frameHeader + len(events[0])
	badCRC := bytes.Clone(good)
	badCRC[event8+frameHeader+3] ^= 0x01
	skip := appendBatch([]byte(walMagic), 7, at, evs[:1])
	skip = appendBatch(skip, 9, at, evs[2:])
	badMagic := append([]byte("LBWAL\x00\n\n"), good[8:]...)
	files := map[string][]byte{
		"wal-3.log": good, "wal-torn.log": torn,
		"negative/bad-crc-then-batch.log": badCRC, "negative/index-skips.log": skip, "negative/bad-magic.log": badMagic,
	}
	for name, want := range files {
		path := filepath.Join("testdata", name)
		if *update {
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the encoder's output", path)
		}
	}
	// The good file reads as three frames, the torn one as two.
	for name, n := range map[string]int{"wal-3.log": 3, "wal-torn.log": 2} {
		// (The torn file keeps the first append whole: events 7 and 8.)
		dir := t.TempDir()
		data, _ := os.ReadFile(filepath.Join("testdata", name))
		os.WriteFile(filepath.Join(dir, walName(7)), data, 0o600)
		w, rec, err := OpenWAL(dir, sealedAt(t, dir, 6), nil)
		if err != nil || rec.Events != int64(n) {
			t.Fatalf("%s: %v %+v", name, err, rec)
		}
		frames := readAllFrames(t, w)
		if len(frames) != n || frames[0].Index != 7 || !bytes.Equal(frames[n-1].Payload, events[n-1]) {
			t.Fatalf("%s: frames %+v", name, frames)
		}
	}
}

// TestWALAnotherWritersHead: a head sealed from another WAL (another
// walId) never removes this WAL's files: two writers on one stream, or a
// copied volume, are refused; an empty WAL continues the other's chain.
func TestWALAnotherWritersHead(t *testing.T) {
	dir := t.TempDir()
	w, _, err := OpenWAL(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]Event{ev(1), ev(2)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	w.Close()
	other := &evidence.AuditSegment{WALLast: 2, WALID: "0123456789abcdef"}
	if _, _, err := OpenWAL(dir, other, nil); !errors.Is(err, ErrWALDamaged) || !strings.Contains(err.Error(), "another WAL") {
		t.Fatalf("another writer's head over our files: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, walName(1))); err != nil {
		t.Fatalf("our unsealed file was touched: %v", err)
	}
	// A copy of this volume (the same walId) whose head sealed other
	// events under the same indexes: refused, never removed.
	copied := &evidence.AuditSegment{WALFirst: 1, WALLast: 2, WALID: w.ID(), PlaintextSHA256: strings.Repeat("0", 64)}
	if _, _, err := OpenWAL(dir, copied, nil); !errors.Is(err, ErrWALDamaged) || !strings.Contains(err.Error(), "not the events it sealed") {
		t.Fatalf("a copied volume's head over other events: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, walName(1))); err != nil {
		t.Fatalf("the copied volume's unsealed file was removed: %v", err)
	}
	// A new, empty WAL (a new volume) continues after the other's head.
	w, rec, err := OpenWAL(t.TempDir(), other, nil)
	if err != nil || rec.Events != 0 || w.Stats().Next != 3 {
		t.Fatalf("empty WAL after another's head: %v %+v next %d", err, rec, w.Stats().Next)
	}
	// Without a head, a WAL must start at index 1.
	lost := t.TempDir()
	os.WriteFile(filepath.Join(lost, walName(5)), appendBatch([]byte(walMagic), 5, time.Now(), []Event{ev(5)}), 0o600)
	if _, _, err := OpenWAL(lost, nil, nil); !errors.Is(err, ErrWALDamaged) || !strings.Contains(err.Error(), "events 1 to 4 are missing") {
		t.Fatalf("a new stream whose WAL starts at 5: %v", err)
	}
}

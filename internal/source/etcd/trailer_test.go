package etcd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// fakeSnapshot returns a database of pages bytes' worth of 4 KiB pages
// followed by its SHA-256, as etcd streams it.
func fakeSnapshot(pages int) []byte {
	db := make([]byte, pages*4096)
	for i := range db {
		db[i] = byte(i * 7)
	}
	sum := sha256.Sum256(db)
	return append(db, sum[:]...)
}

func readAllWith(r io.Reader, chunk int) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

func TestTrailerReaderPassesAndChecks(t *testing.T) {
	for _, pages := range []int{1, 3, 100} {
		snap := fakeSnapshot(pages)
		for _, chunk := range []int{1, 7, 32, 33, 4096, 1 << 20} {
			for name, src := range map[string]io.Reader{
				"whole":    bytes.NewReader(snap),
				"onebyte":  iotest.OneByteReader(bytes.NewReader(snap)),
				"dataeof":  iotest.DataErrReader(bytes.NewReader(snap)),
				"halfread": iotest.HalfReader(bytes.NewReader(snap)),
			} {
				tr := newTrailerReader(src)
				got, err := readAllWith(tr, chunk)
				if err != nil || !bytes.Equal(got, snap) {
					t.Fatalf("pages %d chunk %d %s: %d bytes, %v", pages, chunk, name, len(got), err)
				}
				want := sha256.Sum256(snap[:len(snap)-32])
				if tr.sum != hexOf(want[:]) {
					t.Fatalf("sum %s", tr.sum)
				}
				// The same hash, with the trailer, is the stream's digest:
				// the artifact's plaintext SHA-256.
				if whole := sha256.Sum256(snap); tr.full != hexOf(whole[:]) {
					t.Fatalf("pages %d chunk %d %s: full %s, want %x", pages, chunk, name, tr.full, whole)
				}
			}
		}
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestTrailerReaderRejects(t *testing.T) {
	snap := fakeSnapshot(8)
	cases := map[string][]byte{
		"empty":            {},
		"shorter than sum": snap[:20],
		"no trailer":       snap[:len(snap)-32],
		"cut mid-database": snap[:5000],
		"cut at a page":    snap[:4096],
		"cut in trailer":   snap[:len(snap)-1],
		"trailing byte":    append(append([]byte{}, snap...), 0),
	}
	for _, at := range []int{0, 4095, len(snap) - 33, len(snap) - 1} {
		b := append([]byte{}, snap...)
		b[at] ^= 0x40
		cases["flipped byte "+string(rune('a'+at%26))] = b
	}
	// A database whose length is not whole pages, with a correct digest:
	// the size rule still catches it.
	odd := make([]byte, 1000)
	sum := sha256.Sum256(odd)
	cases["odd size"] = append(odd, sum[:]...)
	for name, b := range cases {
		got, err := readAllWith(newTrailerReader(bytes.NewReader(b)), 4096)
		if !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: err %v, want ErrIntegrity", name, err)
		}
		if len(got) > len(b)-32 && len(b) >= 32 {
			t.Errorf("%s: released %d of %d bytes, including the unchecked trailer", name, len(got), len(b))
		}
	}
	// A source error is passed on, not mistaken for the end.
	boom := errors.New("connection reset")
	_, err := readAllWith(newTrailerReader(io.MultiReader(bytes.NewReader(snap[:9000]), iotest.ErrReader(boom))), 4096)
	if !errors.Is(err, boom) {
		t.Fatalf("source error: %v", err)
	}
}

// TestTrailerReaderStopped: a reader whose digest was stopped before the
// stream's end never passes its check, even when the bytes are intact:
// stopped early, or from another goroutine once every byte before the
// trailer was queued.
func TestTrailerReaderStopped(t *testing.T) {
	snap := fakeSnapshot(64)
	for _, late := range []bool{false, true} {
		tr := newTrailerReader(bytes.NewReader(snap))
		buf := make([]byte, 4096)
		if !late {
			if _, err := tr.Read(buf); err != nil {
				t.Fatal(err)
			}
			tr.stop()
		}
		_, err := readUntilError(tr, buf, func(got int) {
			if late && got == len(snap)-trailerSize-len(buf) {
				done := make(chan struct{})
				go func() { tr.stop(); close(done) }()
				<-done
			}
		})
		if err == io.EOF || !strings.Contains(err.Error(), "stopped") {
			t.Fatalf("late %v: Read after stop: %v, want the digest's stop", late, err)
		}
		if tr.verified || tr.sum != "" || tr.full != "" {
			t.Fatalf("late %v: a stopped digest left verified %v, sum %q, full %q", late, tr.verified, tr.sum, tr.full)
		}
		if n, err2 := tr.Read(buf); n != 0 || err2 != err {
			t.Fatalf("late %v: Read after the failure gave %d bytes, %v", late, n, err2)
		}
	}
}

// TestTrailerReaderReleasesNothingAfterFailure: once the check failed, the
// bytes still held (the source gave its last data with io.EOF) are never
// returned.
func TestTrailerReaderReleasesNothingAfterFailure(t *testing.T) {
	snap := fakeSnapshot(8)
	snap[100] ^= 1
	tr := newTrailerReader(iotest.DataErrReader(bytes.NewReader(snap)))
	buf := make([]byte, 1<<20)
	got, err := readUntilError(tr, buf, nil)
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("a corrupted stream ended with %v", err)
	}
	if got >= len(snap)-trailerSize {
		t.Fatalf("%d bytes returned before the failure: the held ones too", got)
	}
	for range 3 {
		if n, err2 := tr.Read(buf); n != 0 || err2 != err {
			t.Fatalf("Read after the failure gave %d bytes, %v", n, err2)
		}
	}
}

// readUntilError reads r into buf until it returns an error, calling after
// (when given) with the bytes read so far after each Read, and returns the
// total and the error.
func readUntilError(r io.Reader, buf []byte, after func(got int)) (int, error) {
	var got int
	for {
		n, err := r.Read(buf)
		got += n
		if err != nil {
			return got, err
		}
		if after != nil {
			after(got)
		}
	}
}

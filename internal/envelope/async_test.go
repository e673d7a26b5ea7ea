package envelope

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// TestReadAhead: bytes come out in order whatever the read sizes, then
// the source's error; Close mid-stream stops the goroutine.
func TestReadAhead(t *testing.T) {
	data := make([]byte, 1<<20+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, bufSize := range []int{1, 4096, 300 << 10} {
		r := newReadAhead(iotest.HalfReader(bytes.NewReader(data)), 3, bufSize)
		got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(r, 5000)))
		if err != nil || !bytes.Equal(got, data[:5000]) {
			t.Fatalf("buffers of %d: first bytes differ (%v)", bufSize, err)
		}
		rest, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(rest, data[5000:]) {
			t.Fatalf("buffers of %d: %d bytes after, want %d (%v)", bufSize, len(rest), len(data)-5000, err)
		}
		r.Close()
	}
	boom := errors.New("boom")
	r := newReadAhead(io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(boom)), 2, 256)
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) || !bytes.Equal(got, data[:1000]) {
		t.Fatalf("read %d bytes, err %v; want 1000 then boom", len(got), err)
	}
	// After Close, no new Read of the source starts.
	counting := &countingReader{r: bytes.NewReader(data)}
	r = newReadAhead(counting, 2, 256)
	r.Read(make([]byte, 10))
	r.Close()
	<-r.done
	reads := counting.n.Load()
	time.Sleep(20 * time.Millisecond)
	if counting.n.Load() != reads {
		t.Fatal("the source was read after Close")
	}
	r = newReadAhead(bytes.NewReader(data), 2, 256)
	r.Read(make([]byte, 10))
	r.Close()
	select {
	case <-r.done:
	case <-timeAfter():
		t.Fatal("Close did not stop the goroutine")
	}
}

func timeAfter() <-chan time.Time { return time.After(5 * time.Second) }

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.n.Add(1)
	return c.r.Read(p)
}

package vault

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
)

// snapshot returns a gzip-compressed tar with the given members.
func snapshot(t *testing.T, members ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m[0], Mode: 0o600, Size: int64(len(m[1]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(m[1]))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func newSnapshotReader(body []byte) *snapshotReader {
	pr, pw := io.Pipe()
	s := &snapshotReader{addr: "http://vault.test", body: io.NopCloser(bytes.NewReader(body)), pw: pw, pr: pr, done: make(chan error, 1)}
	go s.scan()
	return s
}

// TestSnapshotReader passes a complete snapshot through unchanged and
// fails one that is cut short, lacks its sealed sums or is not gzip.
func TestSnapshotReader(t *testing.T) {
	state := strings.Repeat("raft state ", 50000)
	complete := snapshot(t, [2]string{"meta.json", "{}"}, [2]string{"state.bin", state}, [2]string{"SHA256SUMS", "sums"}, [2]string{"SHA256SUMS.sealed", "sealed"})
	s := newSnapshotReader(complete)
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, complete) {
		t.Fatalf("complete snapshot: %d bytes, %v", len(got), err)
	}
	s.Close()

	for name, body := range map[string][]byte{
		"cut short":      complete[:len(complete)/2],
		"no sealed sums": snapshot(t, [2]string{"meta.json", "{}"}, [2]string{"state.bin", state}),
		"empty sealed":   snapshot(t, [2]string{"state.bin", state}, [2]string{"SHA256SUMS.sealed", ""}),
		"not gzip":       []byte(state),
	} {
		s := newSnapshotReader(body)
		_, err := io.ReadAll(s)
		if err == nil || !strings.Contains(err.Error(), "vault http://vault.test: raft snapshot: incomplete") {
			t.Errorf("%s: err %v", name, err)
		}
		s.Close()
	}

	// Closing early does not hang.
	s = newSnapshotReader(complete)
	buf := make([]byte, 100)
	s.Read(buf)
	s.Close()
}

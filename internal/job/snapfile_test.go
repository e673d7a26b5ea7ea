package job

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshotFile: a snapshot that fits in memory is a memfd that another
// opener (etcdutl) reads, seeks and closes through its /proc path; one that
// does not is a 0600 file in the output directory; Close leaves nothing.
func TestSnapshotFile(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("snapshot"), 4096)
	for _, size := range []int64{int64(len(data)), 1 << 50} {
		sf, err := newSnapshotFile(dir, size)
		if err != nil {
			t.Fatal(err)
		}
		if want := size < 1<<40; sf.memory != want {
			t.Fatalf("size %d: memory %v, want %v", size, sf.memory, want)
		}
		if _, err := sf.f.Write(data); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(sf.path) // a second open, as etcdutl does
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes through %s: %v", size, len(got), sf.path, err)
		}
		if !sf.memory {
			if fi, err := os.Stat(sf.path); err != nil || fi.Mode().Perm() != 0o600 || filepath.Dir(sf.path) != dir {
				t.Fatalf("on disk: %s %v %v", sf.path, fi.Mode(), err)
			}
		}
		sf.Close()
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("size %d: %d entries left in the output directory", size, len(entries))
		}
	}
	if avail, ok := memAvailable(); !ok || avail <= 0 {
		t.Fatalf("MemAvailable: %d, %v", avail, ok)
	}
}

package plainfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestFile: a snapshot that fits in memory is a memfd that another
// opener (etcdutl) reads, seeks and closes through its /proc path; one that
// does not is a 0600 file in the output directory; Close leaves nothing.
func TestFile(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("snapshot"), 4096)
	for _, size := range []int64{int64(len(data)), 1 << 50} {
		sf, err := New(dir, "etcd-snapshot.db", size)
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
	if avail, ok := memoryFor("/"); !ok || avail <= 0 {
		t.Fatalf("memory available: %d, %v", avail, ok)
	}
}

// TestMemoryFor: the limits of the process's memory cgroup and of its
// parents (v2 or v1, found through /proc/self/cgroup) cap what
// /proc/meminfo says is available; "max" and v1's unlimited value do not.
func TestMemoryFor(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/meminfo", "MemTotal:       65000000 kB\nMemFree:  1 kB\nMemAvailable:   60000000 kB\n")
	if got, ok := memoryFor(root); !ok || got != 60000000<<10 {
		t.Fatalf("no cgroup: %d, %v", got, ok)
	}
	// v2: the process in /kubepods/pod1/c1; the pod's cgroup has the limit.
	write("proc/self/cgroup", "0::/kubepods/pod1/c1\n")
	write("sys/fs/cgroup/kubepods/pod1/c1/memory.max", "max\n")
	write("sys/fs/cgroup/kubepods/pod1/c1/memory.current", "1000\n")
	if got, _ := memoryFor(root); got != 60000000<<10 {
		t.Fatalf("cgroup v2 without a limit: %d", got)
	}
	write("sys/fs/cgroup/kubepods/pod1/memory.max", "3221225472\n") // the pod's 3Gi
	write("sys/fs/cgroup/kubepods/pod1/memory.current", "1073741824\n")
	if got, _ := memoryFor(root); got != 2<<30 {
		t.Fatalf("cgroup v2, a parent with 3 GiB, 1 GiB used: %d", got)
	}
	// v1: the memory controller's line, its own cgroup over its limit.
	write("proc/self/cgroup", "4:memory:/system.slice/x.service\n3:cpu:/\n")
	write("sys/fs/cgroup/memory/system.slice/x.service/memory.limit_in_bytes", "1073741824\n")
	write("sys/fs/cgroup/memory/system.slice/x.service/memory.usage_in_bytes", "2147483648\n")
	write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
	write("sys/fs/cgroup/memory/memory.usage_in_bytes", "5\n")
	if got, _ := memoryFor(root); got != 0 {
		t.Fatalf("cgroup v1 over its limit: %d", got)
	}
	// Inside a cgroup namespace: the path is "/", the mount's own files.
	write("proc/self/cgroup", "0::/\n")
	write("sys/fs/cgroup/memory.max", "2147483648\n")
	write("sys/fs/cgroup/memory.current", "1073741824\n")
	if got, _ := memoryFor(root); got != 1<<30 {
		t.Fatalf("cgroup namespace: %d", got)
	}
}

// TestSealed: once sealed, the memory file refuses writes and says so.
func TestSealed(t *testing.T) {
	sf, err := New(t.TempDir(), "etcd-snapshot.db", 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	if !sf.memory {
		t.Fatal("a 1 KiB snapshot was not held in memory")
	}
	if _, err := sf.f.Write([]byte("verified bytes")); err != nil {
		t.Fatal(err)
	}
	if sf.Sealed() || IsSealed(sf.Path()) {
		t.Fatal("sealed before Seal")
	}
	if disk := filepath.Join(t.TempDir(), "f"); os.WriteFile(disk, nil, 0o600) != nil || IsSealed(disk) {
		t.Fatal("a file on disk passes for sealed")
	}
	if err := sf.Seal(); err != nil {
		t.Fatal(err)
	}
	if !sf.Sealed() || !IsSealed(sf.Path()) {
		t.Fatal("not sealed after Seal")
	}
	if _, err := sf.f.Write([]byte("x")); err == nil {
		t.Fatal("a sealed snapshot took a write")
	}
	if f, err := os.OpenFile(sf.path, os.O_WRONLY, 0); err == nil {
		_, werr := f.WriteAt([]byte("y"), 0)
		f.Close()
		if werr == nil {
			t.Fatal("a sealed snapshot took a write through /proc")
		}
	}
	got, err := os.ReadFile(sf.path)
	if err != nil || string(got) != "verified bytes" {
		t.Fatalf("read back %q, %v", got, err)
	}
}

package plainfile

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// File holds a decrypted artifact that another tool reads by its path:
// the etcd snapshot that etcdutl copies into a data directory.
//
// When the host has the memory for it (MemAvailable, and what the memory
// cgroups' limits leave, above twice its size plus 512 MiB: the reader's
// copy is cached beside it), it is an anonymous memory file (memfd),
// sealed once written and verified, read through /proc/self/fd. The
// plaintext then never reaches a file system (swap aside, where the host
// has it), nothing is left behind by a crash, and the kernel does not
// write it back: on disk, its dirty pages and etcdutl's copy together
// passed the kernel's dirty limit at a 2 GiB snapshot, and the copy ran at
// the disk's speed (docs/performance.md). Otherwise it is a file in the
// directory given (mode 0600), not fsynced, removed by Close.
type File struct {
	f      *os.File
	path   string
	memory bool
	sealed bool
}

// memoryHeadroom is what must stay available beyond two copies of the
// plaintext for it to be held in memory.
const memoryHeadroom = 512 << 20

// New returns a File for size bytes of plaintext: in memory when there is
// room, else a new file named after name in dir.
func New(dir, name string, size int64) (*File, error) {
	if avail, ok := memoryFor("/"); ok && avail > 2*size+memoryHeadroom {
		fd, err := unix.MemfdCreate("lifeboat-"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err == nil {
			path := "/proc/self/fd/" + strconv.Itoa(fd)
			f := os.NewFile(uintptr(fd), path)
			// Open it as the reader will; where that is refused (no
			// /proc, a sandbox), use the disk.
			if probe, err := os.Open(path); err == nil {
				probe.Close()
				return &File{f: f, path: path, memory: true}, nil
			}
			f.Close()
		}
	}
	f, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return nil, fmt.Errorf("create the file for the decrypted %s: %w", name, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create the file for the decrypted %s: %w", name, err)
	}
	return &File{f: f, path: f.Name()}, nil
}

// Write writes the plaintext.
func (s *File) Write(p []byte) (int, error) { return s.f.Write(p) }

// Path is where a reader opens the plaintext.
func (s *File) Path() string { return s.path }

// Seal makes a memory file unchangeable once written and verified:
// nothing (another process that can open /proc/<pid>/fd included) can
// change the bytes between their check and the reader's. A file on disk
// is left as it is.
func (s *File) Seal() error {
	if !s.memory {
		return nil
	}
	_, err := unix.FcntlInt(s.f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL)
	if err != nil {
		return fmt.Errorf("seal the decrypted plaintext: %w", err)
	}
	s.sealed = true
	return nil
}

// Sealed reports whether the bytes can no longer change: a sealed memory
// file. A reader's own check of them (etcdutl's of etcd's trailer) then
// adds nothing to the check made before Seal.
func (s *File) Sealed() bool { return s.sealed }

// IsSealed reports whether the file at path is a memory file whose writes,
// growth and shrinking are sealed: a reader given a path and told its bytes
// were checked can confirm that they cannot have changed since.
func IsSealed(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return false
	}
	const want = unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK
	return seals&want == want
}

// InMemory reports whether the plaintext is held in memory.
func (s *File) InMemory() bool { return s.memory }

// Where says where the plaintext is held, for a restore's stages.
func (s *File) Where() string {
	if s.memory {
		return "in memory (memfd)"
	}
	return "in " + s.path
}

// Close discards the plaintext.
func (s *File) Close() {
	s.f.Close()
	if !s.memory {
		os.Remove(s.path)
	}
}

// memoryFor returns the memory this process may still use, in bytes: the
// kernel's MemAvailable, or less when the process's memory cgroup or one of
// its parents (a pod's limit, a systemd unit's MemoryMax) leaves less, since
// a memfd is charged to the cgroup and /proc/meminfo shows the whole host's
// memory. root is "/" but for tests.
func memoryFor(root string) (int64, bool) {
	avail, ok := memAvailable(filepath.Join(root, "proc/meminfo"))
	if !ok {
		return 0, false
	}
	data, _ := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	for _, line := range strings.Split(string(data), "\n") {
		// hierarchy-ID:controllers:path; v2 is "0::path".
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var mount, limitFile, usageFile string
		switch {
		case parts[0] == "0" && parts[1] == "":
			mount, limitFile, usageFile = "sys/fs/cgroup", "memory.max", "memory.current"
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			mount, limitFile, usageFile = "sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
		default:
			continue
		}
		// The process's cgroup and each parent up to the mount (inside a
		// cgroup namespace the path is "/", the mount itself).
		base := filepath.Join(root, mount)
		for dir := filepath.Join(base, filepath.Clean("/"+parts[2])); ; dir = filepath.Dir(dir) {
			limit, lok := readInt(filepath.Join(dir, limitFile))
			used, uok := readInt(filepath.Join(dir, usageFile))
			if lok && uok && limit < 1<<60 { // "max", or v1's page-rounded 2^63: no limit
				avail = min(avail, max(0, limit-used))
			}
			if dir == base || len(dir) < len(base) {
				break
			}
		}
	}
	return avail, true
}

// readInt reads a file holding one decimal integer.
func readInt(path string) (int64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
	return n, err == nil
}

// memAvailable returns the kernel's estimate of the memory available for
// new work (MemAvailable in /proc/meminfo), in bytes.
func memAvailable(path string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemAvailable:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

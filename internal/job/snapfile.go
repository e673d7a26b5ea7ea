package job

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

// snapshotFile holds the decrypted etcd snapshot that restore apply hands
// to etcdutl, which copies it into each member's data directory.
//
// When the host has the memory for it (MemAvailable, and what the memory
// cgroups' limits leave, above twice the snapshot plus 512 MiB: etcdutl's
// copy is cached beside it), it is an anonymous memory file (memfd),
// sealed once written and verified, read by etcdutl through /proc/self/fd.
// The plaintext then never reaches a file system outside the data
// directories (swap aside, where the host has it), nothing is left behind
// by a crash, and the kernel does not write it back:
// on disk, its dirty pages and etcdutl's copy together passed the kernel's
// dirty limit at a 2 GiB snapshot, and the copy ran at the disk's speed
// (docs/performance.md). Otherwise it is a file in the output directory
// (mode 0600), not fsynced, removed by Close.
type snapshotFile struct {
	f      *os.File
	path   string
	memory bool
}

// memoryHeadroom is what must stay available beyond two copies of the
// snapshot for it to be held in memory.
const memoryHeadroom = 512 << 20

func newSnapshotFile(dir string, size int64) (*snapshotFile, error) {
	if avail, ok := memoryFor("/"); ok && avail > 2*size+memoryHeadroom {
		fd, err := unix.MemfdCreate("lifeboat-etcd-snapshot", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err == nil {
			path := "/proc/self/fd/" + strconv.Itoa(fd)
			f := os.NewFile(uintptr(fd), path)
			// Open it as etcdutl will; where that is refused (no /proc, a
			// sandbox), use the disk.
			if probe, err := os.Open(path); err == nil {
				probe.Close()
				return &snapshotFile{f: f, path: path, memory: true}, nil
			}
			f.Close()
		}
	}
	f, err := os.CreateTemp(dir, ".etcd-snapshot-*.db")
	if err != nil {
		return nil, fmt.Errorf("create the decrypted snapshot's file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create the decrypted snapshot's file: %w", err)
	}
	return &snapshotFile{f: f, path: f.Name()}, nil
}

// seal makes the memory file unchangeable once written and verified:
// nothing (another process that can open /proc/<pid>/fd included) can
// change the bytes between their check and etcdutl's read.
func (s *snapshotFile) seal() error {
	if !s.memory {
		return nil
	}
	_, err := unix.FcntlInt(s.f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL)
	if err != nil {
		return fmt.Errorf("seal the decrypted snapshot: %w", err)
	}
	return nil
}

// where says where the snapshot is held, for the restore's stages.
func (s *snapshotFile) where() string {
	if s.memory {
		return "in memory (memfd)"
	}
	return "in " + s.path
}

// Close discards the snapshot.
func (s *snapshotFile) Close() {
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

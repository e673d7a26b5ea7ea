//go:build linux

package fs

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts the writeback of n bytes of f from off
// (sync_file_range with SYNC_FILE_RANGE_WRITE: dirty pages not already
// under writeback are submitted; nothing is waited for). An error is
// ignored: the object's fsync, which follows, reports what matters.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

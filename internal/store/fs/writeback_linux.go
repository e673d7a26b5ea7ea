//go:build linux

package fs

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts the writeback of n bytes of f from off
// (sync_file_range with SYNC_FILE_RANGE_WRITE: dirty pages not already
// under writeback are submitted, and their completion is not waited for;
// the call itself can block while the device's queue is full). Its error
// is ignored: an error of the writeback stays recorded on the file and the
// object's fsync, which follows, reports it. Do not add the WAIT flags
// without checking the result: waiting consumes that recorded error, and
// the fsync would then not see it.
func startWriteback(f *os.File, off, n int64) {
	_ = writeback(f, off, n)
}

// writeback is startWriteback with its error, for tests.
func writeback(f *os.File, off, n int64) error {
	return unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

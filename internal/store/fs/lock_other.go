//go:build !unix || aix || (solaris && !illumos)

package fs

import "os"

// lockFile opens (creating it if needed) the lock file at path. This
// system has no flock(2) in package syscall, so the file is not locked:
// Puts and Deletes are serialised only among the goroutines of one Store,
// and two processes must not write to one root at the same time.
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|os.O_CREATE|openNoFollow, filePerm)
}

//go:build unix && !aix && !(solaris && !illumos)

package fs

import (
	"errors"
	"os"
	"syscall"
)

// lockFile opens (creating it if needed) the lock file at path and takes
// an exclusive flock(2) on it, waiting for other holders. Closing the
// returned file releases the lock. flock locks belong to an open file
// description, so each call opens the file anew: two Stores on one root,
// in one process or in two, exclude each other.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|openNoFollow, filePerm)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return f, nil
}

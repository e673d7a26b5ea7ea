package fs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// syncDir fsyncs a directory so that the names created or removed in it
// survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// mkdir creates dir with mode dirPerm unless it exists, and reports
// whether it created it. An existing non-directory at dir is an error
// wrapping ErrKeyConflict.
func mkdir(dir string) (created bool, err error) {
	err = os.Mkdir(dir, dirPerm)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return false, err
	}
	fi, lerr := os.Lstat(dir)
	if lerr != nil {
		return false, lerr
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("%w: %s exists and is not a directory", ErrKeyConflict, dir)
	}
	return false, nil
}

// makeParents creates the directories between base and the file named by
// key under base, each with mode dirPerm, and fsyncs the parent of every
// directory it creates, top down, so that a later fsync of the file's own
// directory makes the whole path durable.
func makeParents(base, key string) error {
	dir := path.Dir(key)
	if dir == "." {
		return nil
	}
	full := filepath.Join(base, filepath.FromSlash(dir))
	if fi, err := os.Lstat(full); err == nil && fi.IsDir() {
		return nil
	}
	parent := base
	for _, seg := range strings.Split(dir, "/") {
		p := filepath.Join(parent, seg)
		created, err := mkdir(p)
		if err != nil {
			return err
		}
		if created {
			if err := syncDir(parent); err != nil {
				return fmt.Errorf("sync directory %s: %w", parent, err)
			}
		}
		parent = p
	}
	return nil
}

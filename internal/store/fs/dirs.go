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

// makeParents makes sure the directories between base and the file named
// by key under base exist, creating the missing ones with mode dirPerm,
// and fsyncs base and each of them but the last, top down, whether this
// call created them or found them: a directory that exists may have been
// created by a concurrent Put that has not yet fsynced its parent, and
// returning before that fsync could let a power loss take this Put's file
// with the directory. The caller fsyncs the last directory, the file's
// own, after linking the file into it, which then makes the whole path
// durable. base itself is made durable in the root by Open.
func (s *Store) makeParents(base, key string) error {
	dir := path.Dir(key)
	if dir == "." {
		return nil
	}
	parent := base
	for seg := range strings.SplitSeq(dir, "/") {
		p := filepath.Join(parent, seg)
		if _, err := mkdir(p); err != nil {
			return err
		}
		if err := s.syncDir(parent); err != nil {
			return fmt.Errorf("sync directory %s: %w", parent, err)
		}
		parent = p
	}
	return nil
}

package fs

import "os"

// hooks lets tests of this package observe and pause a Store at points
// where its races and durability steps matter. Every field is nil outside
// tests; they are set only through export_test.go.
type hooks struct {
	// syncDir replaces the fsync of a directory.
	syncDir func(dir string) error
	// beforeLock runs before Put ("put") or Delete ("delete") waits for
	// the store lock.
	beforeLock func(op string)
	// afterObjectLink runs in Put right after the object's link.
	afterObjectLink func(key string)
	// afterDeleteCheck runs in Delete once the retention check has passed,
	// before anything is removed.
	afterDeleteCheck func(key string)
	// startWriteback replaces the start of a new object's writeback.
	startWriteback func(f *os.File, off, n int64)
}

// writebackFunc returns the function that starts the writeback of part
// of a new object: the test hook when one is set.
func (s *Store) writebackFunc() func(f *os.File, off, n int64) {
	if s.hooks.startWriteback != nil {
		return s.hooks.startWriteback
	}
	return startWriteback
}

// syncDir fsyncs dir, through the test hook when one is set.
func (s *Store) syncDir(dir string) error {
	if s.hooks.syncDir != nil {
		return s.hooks.syncDir(dir)
	}
	return syncDir(dir)
}

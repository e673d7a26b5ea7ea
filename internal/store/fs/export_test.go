package fs

import "os"

// Hooks are the test hooks of a Store (see hooks).
type Hooks struct {
	SyncDir          func(dir string) error
	BeforeLock       func(op string)
	AfterObjectLink  func(key string)
	AfterDeleteCheck func(key string)
	StartWriteback   func(f *os.File, off, n int64)
}

// SetHooks installs h on s. Call it before s is used concurrently.
func SetHooks(s *Store, h Hooks) {
	s.hooks = hooks{
		syncDir:          h.SyncDir,
		beforeLock:       h.BeforeLock,
		afterObjectLink:  h.AfterObjectLink,
		afterDeleteCheck: h.AfterDeleteCheck,
		startWriteback:   h.StartWriteback,
	}
}

// SyncDirForTest is the real fsync of a directory, for hooks that record
// the call and then do it.
var SyncDirForTest = syncDir

// WritebackForTest is the real start of a new object's writeback, with its
// error, for hooks that record the call and then make it.
var WritebackForTest = writeback

// WritebackChunk is how much of a new object is written before its
// writeback is started.
const WritebackChunk = writebackChunk

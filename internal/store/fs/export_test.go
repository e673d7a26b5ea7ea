package fs

// Hooks are the test hooks of a Store (see hooks).
type Hooks struct {
	SyncDir          func(dir string) error
	BeforeLock       func(op string)
	AfterObjectLink  func(key string)
	AfterDeleteCheck func(key string)
}

// SetHooks installs h on s. Call it before s is used concurrently.
func SetHooks(s *Store, h Hooks) {
	s.hooks = hooks{
		syncDir:          h.SyncDir,
		beforeLock:       h.BeforeLock,
		afterObjectLink:  h.AfterObjectLink,
		afterDeleteCheck: h.AfterDeleteCheck,
	}
}

// SyncDirForTest is the real fsync of a directory, for hooks that record
// the call and then do it.
var SyncDirForTest = syncDir

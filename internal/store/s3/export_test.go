package s3

import "time"

// SetListPage sets the page size of List's version listings, so that a
// test crosses page boundaries with a few keys.
func (s *Store) SetListPage(n int32) { s.listPage = n }

// SetPartGrace sets how long the parts in flight are let finish once
// another part failed, and returns a function that restores it.
func SetPartGrace(d time.Duration) (restore func()) {
	old := partGrace
	partGrace = d
	return func() { partGrace = old }
}

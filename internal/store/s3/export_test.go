package s3

// SetListPage sets the page size of List's version listings, so that a
// test crosses page boundaries with a few keys.
func (s *Store) SetListPage(n int32) { s.listPage = n }

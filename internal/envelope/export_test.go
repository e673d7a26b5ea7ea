package envelope

// SetZstdWindow sets the window new Writers compress with, for a test that
// needs a frame readers refuse, and returns the function that restores it.
func SetZstdWindow(n int) (restore func()) {
	old := zstdWindow
	zstdWindow = n
	return func() { zstdWindow = old }
}

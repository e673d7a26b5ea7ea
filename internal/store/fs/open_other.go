//go:build !unix

package fs

// openNoFollow is not available on this system; objects are still checked
// to be regular files after opening.
const openNoFollow = 0

//go:build unix

package fs

import "syscall"

// openNoFollow makes opening a symbolic link fail, so a link planted under
// objects/ or retention/ is never followed out of the store.
const openNoFollow = syscall.O_NOFOLLOW

package main

import "crypto/fips140"

// fipsMode reports whether Go's FIPS 140-3 module is enforced
// (GODEBUG=fips140=on or only).
func fipsMode() string {
	if fips140.Enabled() {
		return "on"
	}
	return "off"
}

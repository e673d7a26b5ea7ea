package main

import "crypto/fips140"

// fipsMode reports Go's FIPS 140-3 mode: "only" when enforced
// (GODEBUG=fips140=only), "on" when enabled, else "off". Artifacts need
// "on" or "off": Tink's streaming AEAD derives GCM nonces from a counter,
// which the "only" mode refuses (docs/format.md §2).
func fipsMode() string {
	switch {
	case fips140.Enforced():
		return "only"
	case fips140.Enabled():
		return "on"
	default:
		return "off"
	}
}

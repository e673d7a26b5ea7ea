//go:debug fips140=only

package local_test

import (
	"crypto/fips140"
	"testing"
)

// This file puts the package's test binary in FIPS 140-3 "only" mode, so
// the conformance suite above proves the keyring works where only approved
// algorithms may run.
func TestRunsUnderFIPSOnly(t *testing.T) {
	if !fips140.Enforced() {
		t.Fatal("the test binary is not in fips140=only mode; the //go:debug line was ignored")
	}
}

package vault

import (
	"strings"
	"testing"
)

// TestCheckRestoredVersion accepts a key that rotated between the backup
// reading its configuration and taking its backup (restored version above
// the recorded one), and refuses one restored with fewer versions.
func TestCheckRestoredVersion(t *testing.T) {
	for _, tc := range []struct {
		restored, artifact, manifest int
		ok                           bool
	}{
		{2, 2, 2, true},
		{3, 2, 2, true}, // rotated after the configuration was read
		{5, 2, 2, true},
		{1, 2, 2, false},
		{2, 3, 2, false},
		{2, 2, 3, false},
	} {
		err := checkRestoredVersion("ehr", tc.restored, tc.artifact, tc.manifest)
		if (err == nil) != tc.ok {
			t.Errorf("restored %d, artifact %d, manifest %d: %v", tc.restored, tc.artifact, tc.manifest, err)
		}
		if err != nil && !strings.Contains(err.Error(), "transit key ehr: restored with latest version") {
			t.Errorf("error %v", err)
		}
	}
}

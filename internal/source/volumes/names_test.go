package volumes

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestSnapshotName(t *testing.T) {
	id := "control-plane-20261125T020000Z-7f3a"
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60)
	longPlanID := strings.Repeat("p", 63) + "-20261125T020000Z-7f3a"
	for _, tc := range []struct {
		backup, claim, want string
	}{
		{id, "db", "control-plane-20261125t020000z-7f3a-db"},
		{id, "data.v2", "control-plane-20261125t020000z-7f3a-data.v2"},
		{"x_y-20261125T020000Z-7f3a", "db", "x-y-20261125t020000z-7f3a-db"},
		{id, long, ""},
		{longPlanID, long, ""},
		// A cut that would end in "." or "-" is trimmed before the digest.
		{id, strings.Repeat("e", 236-len(id)-2) + ".f" + strings.Repeat("g", 40), ""},
	} {
		got := SnapshotName(tc.backup, tc.claim)
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("SnapshotName(%q, %q) = %q: %v", tc.backup, tc.claim, got, errs)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("SnapshotName(%q, %q) = %q, want %q", tc.backup, tc.claim, got, tc.want)
		}
		if got != SnapshotName(tc.backup, tc.claim) {
			t.Errorf("SnapshotName(%q, %q) is not deterministic", tc.backup, tc.claim)
		}
	}
	// Long names of different claims or backups stay distinct.
	a, b := SnapshotName(id, long), SnapshotName(id, long+"x")
	c := SnapshotName("control-plane-20261125T020000Z-7f3b", long)
	if a == b || a == c || len(a) > 253 || !strings.HasPrefix(a, "control-plane-20261125t020000z-7f3a-aaaa") {
		t.Errorf("long names: %q %q %q", a, b, c)
	}
}

func TestLabelValue(t *testing.T) {
	short := "control-plane-20261125T020000Z-7f3a"
	if got := LabelValue(short); got != short {
		t.Errorf("LabelValue(%q) = %q", short, got)
	}
	long := strings.Repeat("p", 40) + "-----" + strings.Repeat("q", 20) + "-20261125T020000Z-7f3a"
	got := LabelValue(long)
	if errs := validation.IsValidLabelValue(got); len(errs) > 0 || len(got) > 63 || got != LabelValue(long) ||
		!strings.HasPrefix(got, strings.Repeat("p", 40)+"-") || got == LabelValue(long+"0") {
		t.Errorf("LabelValue(%q) = %q: %v", long, got, errs)
	}
	if got := LabelValue("-" + strings.Repeat("x", 70)); len(validation.IsValidLabelValue(got)) > 0 {
		t.Errorf("LabelValue of a value starting with '-' = %q", got)
	}
}

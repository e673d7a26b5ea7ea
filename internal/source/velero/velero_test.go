package velero

import (
	"strings"
	"testing"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestName(t *testing.T) {
	if got := Name("control-plane-20261125T020000Z-7f3a"); got != "control-plane-20261125t020000z-7f3a" {
		t.Errorf("Name = %q", got)
	}
	long := strings.Repeat("p", 63) + "-20261125T020000Z-7f3a"
	got := Name(long)
	if len(got) > 63 || len(validation.IsDNS1123Subdomain(got)) > 0 || len(validation.IsValidLabelValue(got)) > 0 ||
		got == Name(strings.Repeat("p", 63)+"-20261125T020000Z-7f3b") {
		t.Errorf("Name(%q) = %q", long, got)
	}
}

// TestOutcome judges each phase without a server.
func TestOutcome(t *testing.T) {
	opts := Options{IncludeNamespaces: []string{"ehr"}}
	for _, tc := range []struct {
		status     velerov1.BackupStatus
		done, fail bool
		skipped    int
		want       string
	}{
		{status: velerov1.BackupStatus{Phase: ""}},
		{status: velerov1.BackupStatus{Phase: velerov1.BackupPhaseInProgress}},
		{status: velerov1.BackupStatus{Phase: velerov1.BackupPhaseWaitingForPluginOperations}},
		{status: velerov1.BackupStatus{Phase: velerov1.BackupPhaseFinalizingPartiallyFailed}},
		{status: velerov1.BackupStatus{Phase: velerov1.BackupPhaseCompleted, Warnings: 2}, done: true},
		{status: velerov1.BackupStatus{Phase: velerov1.BackupPhasePartiallyFailed, Errors: 3}, done: true, skipped: 1, want: "PartiallyFailed with 3 errors"},
		{status: velerov1.BackupStatus{Phase: velerov1.BackupPhaseFailed, FailureReason: "bsl unavailable"}, done: true, fail: true, want: "Failed (0 errors): bsl unavailable"},
		{status: velerov1.BackupStatus{Phase: velerov1.BackupPhaseFailedValidation, ValidationErrors: []string{"a", "b"}}, done: true, fail: true, want: "FailedValidation: a; b"},
		{status: velerov1.BackupStatus{Phase: velerov1.BackupPhaseDeleting}, done: true, fail: true, want: "Deleting"},
	} {
		b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: "x"}, Status: tc.status}
		res, done, err := outcome("velero/x", b, opts)
		if done != tc.done || (err != nil) != tc.fail || len(res.Skipped) != tc.skipped {
			t.Errorf("%s: done %v, err %v, result %+v", tc.status.Phase, done, err, res)
			continue
		}
		text := ""
		if err != nil {
			text = err.Error()
		} else if len(res.Skipped) > 0 {
			text = res.Skipped[0].Reason
		}
		if !strings.Contains(text, tc.want) {
			t.Errorf("%s: %q lacks %q", tc.status.Phase, text, tc.want)
		}
		if done && err == nil && (res.Velero.Phase != string(tc.status.Phase) || res.Velero.Backup != "x" || res.Velero.IncludedNamespaces[0] != "ehr") {
			t.Errorf("%s: velero %+v", tc.status.Phase, res.Velero)
		}
	}
}

package volumes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

// TestWaitKeepsStateAtDeadline: a List still in flight when the timeout
// runs out, and failing with a deadline error, does not replace the
// snapshot's last observed state in the ErrNotReady error.
func TestWaitKeepsStateAtDeadline(t *testing.T) {
	const backup = "plan-20261126T020000Z-0000"
	cs := fake.NewSimpleClientset(&snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{
		Name: SnapshotName(backup, "db"), Namespace: "ns", UID: "uid-1",
		Labels: map[string]string{LabelBackup: LabelValue(backup)},
	}})
	var lists atomic.Int32
	cs.PrependReactor("list", "volumesnapshots", func(k8stesting.Action) (bool, runtime.Object, error) {
		if lists.Add(1) == 1 {
			return false, nil, nil // the tracker answers
		}
		// Past the overall timeout, as a call cut short by it would.
		time.Sleep(300 * time.Millisecond)
		return true, nil, fmt.Errorf("list volume snapshots: %w", context.DeadlineExceeded)
	})
	tk := &taker{opts: Options{Backup: backup, Timeout: 400 * time.Millisecond}, log: slog.New(slog.DiscardHandler),
		snaps: cs.SnapshotV1()}
	s := &snap{rec: catalog.VolumeSnapshot{Namespace: "ns", Claim: "db", Snapshot: SnapshotName(backup, "db")},
		created: true, uid: "uid-1", state: "created"}
	if err := tk.wait(context.Background(), []*snap{s}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(s.err, ErrNotReady) || !strings.Contains(s.err.Error(), "last state: waiting for the snapshot controller)") {
		t.Fatalf("snapshot error %v", s.err)
	}
	if n := lists.Load(); n < 2 {
		t.Fatalf("%d lists", n)
	}
}

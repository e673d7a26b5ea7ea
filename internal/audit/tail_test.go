package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

func eventLine(i int) string {
	b, _ := json.Marshal(event(i, "alice", "create", "secrets", "ehr", t0.Add(time.Duration(i)*time.Second)))
	return string(b) + "\n"
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	f.Close()
	time.Sleep(5 * time.Millisecond) // distinct modification times
}

func waitEvents(t *testing.T, r *Receiver, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.WALStats().Events < n {
		if time.Now().After(deadline) {
			t.Fatalf("the WAL holds %d events, want %d", r.WALStats().Events, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(3 * tailPoll)
	if got := r.WALStats().Events; got != n {
		t.Fatalf("the WAL holds %d events, want exactly %d", got, n)
	}
}

// startTail runs r.Tail on path until the returned stop is called, which
// fails the test if Tail did.
func startTail(t *testing.T, r *Receiver, path string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Tail(ctx, path) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestTailFollowsRotations: the file mode reads complete lines only,
// follows a rotation, and after a restart resumes at its checkpoint across
// rotations that happened while it was down; each event is kept once.
func TestTailFollowsRotations(t *testing.T) {
	f := newFixture(t)
	logDir := t.TempDir()
	path := filepath.Join(logDir, "audit.log")
	r := f.open(t, nil)
	stop := startTail(t, r, path)

	var lines strings.Builder
	for i := 1; i <= 5; i++ {
		lines.WriteString(eventLine(i))
	}
	six := eventLine(6)
	appendTo(t, path, lines.String()+six[:40])
	waitEvents(t, r, 5)
	appendTo(t, path, six[40:]+eventLine(7)+"this line is not an audit event\n")
	waitEvents(t, r, 7)
	// Rotation as the API server's log backend does it: rename, new file.
	appendTo(t, path, eventLine(8))
	if err := os.Rename(path, filepath.Join(logDir, "audit-2026-12-06T10-00-00.000.log")); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, eventLine(9)+eventLine(10))
	waitEvents(t, r, 10)
	stop()
	r.wal.Close()

	// While lifeboat is down: more events, and two more rotations.
	appendTo(t, path, eventLine(11))
	os.Rename(path, filepath.Join(logDir, "audit-2026-12-06T10-05-00.000.log"))
	appendTo(t, path, eventLine(12))
	os.Rename(path, filepath.Join(logDir, "audit-2026-12-06T10-10-00.000.log"))
	appendTo(t, path, eventLine(13))

	r2 := f.open(t, nil)
	stop2 := startTail(t, r2, path)
	waitEvents(t, r2, 13)
	appendTo(t, path, eventLine(14))
	waitEvents(t, r2, 14)
	stop2()
	if err := r2.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := Search(context.Background(), f.st, SearchOptions{Log: "apiserver", Trusted: []evidence.PublicKey{f.signer.PublicKey()}, Unwrappers: []envelope.Unwrapper{f.keyring}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range res.Matches {
		var e struct{ AuditID string }
		json.Unmarshal(m.JSON, &e)
		ids = append(ids, strings.TrimLeft(e.AuditID[len(e.AuditID)-3:], "0"))
	}
	want := make([]string, 14)
	for i := range want {
		want[i] = fmt.Sprint(i + 1)
	}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("events kept: %v, want each of 1 to 14 once, in order", ids)
	}
}

// TestTailSkipsLongLinesAndLostFiles: a line longer than an event may be
// is skipped (the lines after it are taken), and when the checkpointed
// file was rotated and deleted while lifeboat was down, the files rotated
// after it are still read.
func TestTailSkipsLongLinesAndLostFiles(t *testing.T) {
	f := newFixture(t)
	logDir := t.TempDir()
	path := filepath.Join(logDir, "audit.log")
	r := f.open(t, nil)
	stop := startTail(t, r, path)
	long := `{"auditID":"x","pad":"` + strings.Repeat("a", MaxEventBytes+10) + `"}` + "\n"
	appendTo(t, path, eventLine(1)+long+eventLine(2))
	waitEvents(t, r, 2)
	stop()
	r.wal.Close()

	// Down: the file is rotated twice; the one the checkpoint names is
	// deleted (as --audit-log-maxbackup would).
	appendTo(t, path, eventLine(3))
	first := filepath.Join(logDir, "audit-2026-12-06T10-00-00.000.log")
	os.Rename(path, first)
	appendTo(t, path, eventLine(4))
	os.Rename(path, filepath.Join(logDir, "audit-2026-12-06T10-05-00.000.log"))
	appendTo(t, path, eventLine(5))
	os.Remove(first)

	r2 := f.open(t, nil)
	stop2 := startTail(t, r2, path)
	waitEvents(t, r2, 4) // events 1 and 2 (still in the WAL), 4 and 5; 3 is lost with its file
	stop2()
}

package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	fsstore "github.com/lifeboat-dr/lifeboat/internal/store/fs"
)

type fixture struct {
	root    string
	st      *fsstore.Store
	keyring *local.Keyring
	signer  *evidence.Signer
	walDir  string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := fsstore.Open(ctx, fsstore.Options{Root: filepath.Join(dir, "store")})
	if err != nil {
		t.Fatal(err)
	}
	k, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "keyring.json")}, "audit-kek")
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := evidence.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{root: filepath.Join(dir, "store"), st: st, keyring: k, signer: signer, walDir: filepath.Join(dir, "wal")}
}

func (f *fixture) options(st Store) Options {
	if st == nil {
		st = f.st
	}
	return Options{Log: "apiserver", Stream: "lifeboat-0", WALDir: f.walDir, Store: st,
		Wrappers: []envelope.Wrapper{f.keyring}, Signer: f.signer, Retention: 24 * time.Hour}
}

func (f *fixture) open(t *testing.T, st Store) *Receiver {
	t.Helper()
	r, _, err := Open(context.Background(), f.options(st))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// event builds an audit event as the API server sends it.
func event(id int, user, verb, resource, ns string, at time.Time) map[string]any {
	return map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
		"auditID": fmt.Sprintf("00000000-0000-0000-0000-%012d", id), "stage": "ResponseComplete",
		"requestURI": "/api/v1/namespaces/" + ns + "/" + resource, "verb": verb,
		"user":                     map[string]any{"username": user, "groups": []string{"system:authenticated"}},
		"objectRef":                map[string]any{"resource": resource, "namespace": ns, "name": fmt.Sprintf("obj-%d", id), "apiVersion": "v1"},
		"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": 201},
		"requestReceivedTimestamp": at.Format(time.RFC3339Nano), "stageTimestamp": at.Add(time.Millisecond).Format(time.RFC3339Nano),
	}
}

func post(t *testing.T, h http.Handler, events ...map[string]any) int {
	t.Helper()
	body, _ := json.MarshalIndent(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": map[string]any{}, "items": events}, "", "  ")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
	return rec.Code
}

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func TestReceiveSealVerifySearch(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	r := f.open(t, nil)
	// Two segments: ids 1-3, then 4-6 an hour later (a gap verify reports).
	if c := post(t, r, event(1, "alice", "create", "secrets", "ehr", t0), event(2, "alice", "patch", "secrets", "ehr", t0.Add(time.Second)),
		event(3, "bob", "delete", "rolebindings", "ehr", t0.Add(2*time.Second))); c != 200 {
		t.Fatalf("post: %d", c)
	}
	if err := r.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	if c := post(t, r, event(4, "alice", "delete", "secrets", "ehr", t0.Add(time.Hour)), event(5, "carol", "get", "pods", "web", t0.Add(time.Hour+time.Second)),
		event(6, "alice", "create", "secrets", "web", t0.Add(time.Hour+2*time.Second))); c != 200 {
		t.Fatalf("post: %d", c)
	}
	if err := r.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	if h := r.HeadRecord(); h == nil || h.Record.Seq != 2 || h.Record.WALFirst != 4 || h.Record.Events != 3 {
		t.Fatalf("head %+v", h)
	}
	if st := r.WALStats(); st.Events != 0 {
		t.Fatalf("WAL still holds %d events", st.Events)
	}

	// Refused: not an EventList, an event without auditID, a GET.
	if c := post(t, r, map[string]any{"kind": "Event"}); c != http.StatusBadRequest {
		t.Fatalf("event without auditID: %d", c)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"kind":"Pod","apiVersion":"v1"}`)))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("a Pod: %d", rec.Code)
	}

	trusted := []evidence.PublicKey{f.signer.PublicKey()}
	vr, err := Verify(ctx, f.st, VerifyOptions{Log: "apiserver", Trusted: trusted})
	if err != nil || !vr.OK() {
		t.Fatalf("verify: %v %+v", err, vr)
	}
	s := vr.Streams[0]
	if s.Segments != 2 || s.Events != 6 || s.SegmentsRead != 2 || len(s.Gaps) != 1 || s.Head.Record.Seq != 2 {
		t.Fatalf("stream %+v", s)
	}
	// With a range only the overlapping segment is read.
	vr, _ = Verify(ctx, f.st, VerifyOptions{Log: "apiserver", Trusted: trusted, From: t0.Add(30 * time.Minute)})
	if !vr.OK() || vr.Streams[0].SegmentsRead != 1 {
		t.Fatalf("verify from: %+v", vr)
	}

	search := func(fl Filter) []string {
		t.Helper()
		res, err := Search(ctx, f.st, SearchOptions{Log: "apiserver", Filter: fl, Trusted: trusted, Unwrappers: []envelope.Unwrapper{f.keyring}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range res.Matches {
			var e struct{ AuditID string }
			json.Unmarshal(m.JSON, &e)
			ids = append(ids, e.AuditID[len(e.AuditID)-1:])
		}
		return ids
	}
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{User: "alice"}, "1246"},
		{Filter{User: "alice", Verb: "delete"}, "4"},
		{Filter{Resource: "secrets", Namespace: "ehr"}, "124"},
		{Filter{Resource: "rolebindings"}, "3"},
		{Filter{From: t0.Add(30 * time.Minute)}, "456"},
		{Filter{From: t0, To: t0.Add(time.Second + time.Millisecond)}, "12"},
		{Filter{User: "mallory"}, ""},
	} {
		if got := strings.Join(search(tc.f), ""); got != tc.want {
			t.Errorf("search %+v: got %q, want %q", tc.f, got, tc.want)
		}
	}
	// The stored segment holds the events byte for byte (compacted), and
	// no event text is in the store in clear.
	found := false
	filepath.WalkDir(f.root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte("alice")) {
				t.Errorf("%s holds an event in clear", p)
			}
			found = true
		}
		return nil
	})
	if !found {
		t.Fatal("nothing in the store")
	}
}

// failingStore fails Puts of keys containing a substring while armed.
type failingStore struct {
	Store
	match string
	armed atomic.Bool
}

func (s *failingStore) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) (store.ObjectInfo, error) {
	if s.armed.Load() && strings.Contains(key, s.match) {
		io.Copy(io.Discard, r)
		return store.ObjectInfo{}, errors.New("injected failure")
	}
	return s.Store.Put(ctx, key, r, o)
}

// lostReplyStore commits record Puts but answers them with an error, and
// fails reads of the records so committed, until done.
type lostReplyStore struct {
	Store
	done      bool
	committed map[string]bool
}

func (s *lostReplyStore) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) (store.ObjectInfo, error) {
	info, err := s.Store.Put(ctx, key, r, o)
	if err == nil && !s.done && strings.Contains(key, "/chain/") {
		s.committed[key] = true
		return store.ObjectInfo{}, errors.New("injected: reply lost")
	}
	return info, err
}

func (s *lostReplyStore) Get(ctx context.Context, key string, o store.GetOptions) (io.ReadCloser, error) {
	if !s.done && s.committed[key] {
		return nil, errors.New("injected: read failed")
	}
	return s.Store.Get(ctx, key, o)
}

func TestInterruptedSealsAndRestarts(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	fs := &failingStore{Store: f.st, match: "/chain/"}
	r := f.open(t, fs)
	post(t, r, event(1, "alice", "create", "secrets", "ehr", t0))
	// The record cannot be written: the segment is left uncited, the
	// events stay in the WAL.
	fs.armed.Store(true)
	if err := r.Seal(ctx); err == nil {
		t.Fatal("seal succeeded without its record")
	}
	if st := r.WALStats(); st.Events != 1 {
		t.Fatalf("WAL holds %d events after a failed seal", st.Events)
	}
	fs.armed.Store(false)
	if err := r.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	// A record that commits but whose reply is lost, and whose read-back
	// fails too: the retry adopts it instead of sealing the seq again.
	post(t, r, event(10, "dave", "create", "secrets", "ehr", t0.Add(time.Second)))
	lost := &lostReplyStore{Store: f.st, committed: map[string]bool{}}
	r.sealer.Store = lost
	if err := r.Seal(ctx); err == nil || len(lost.committed) != 1 {
		t.Fatalf("seal with the commit's reply and read-back lost: %v, %d committed", err, len(lost.committed))
	}
	lost.done = true
	if err := r.Seal(ctx); err != nil {
		t.Fatalf("the retry after a lost reply: %v", err)
	}
	if h := r.HeadRecord(); h.Record.Seq != 2 || r.WALStats().Events != 0 {
		t.Fatalf("after the retry: head seq %d, %d events in the WAL", h.Record.Seq, r.WALStats().Events)
	}
	r.sealer.Store = fs

	// A crash after the record but before the WAL file is removed: the
	// next start removes it instead of sealing it twice.
	post(t, r, event(2, "bob", "create", "secrets", "ehr", t0.Add(time.Second)))
	r.wal.Rotate(time.Now(), 0, 0, true)
	files := r.wal.closedFiles()
	if _, err := r.sealer.seal(ctx, files[0], r.HeadRecord()); err != nil {
		t.Fatal(err)
	}
	r.wal.Close()
	r2, rec, err := Open(ctx, f.options(nil))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Removed != 1 || rec.Events != 0 {
		t.Fatalf("recovery %+v: the sealed file was not removed", rec)
	}
	post(t, r2, event(3, "carol", "create", "secrets", "ehr", t0.Add(2*time.Second)))
	if err := r2.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	vr, err := Verify(ctx, f.st, VerifyOptions{Log: "apiserver", Trusted: []evidence.PublicKey{f.signer.PublicKey()}})
	if err != nil || !vr.OK() {
		t.Fatalf("verify: %v %+v", err, vr)
	}
	s := vr.Streams[0]
	if s.Segments != 4 || s.Events != 4 || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "no record cites") {
		t.Fatalf("stream %+v", s)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, f *fixture, h *Head)
		want   string
	}{
		{"flipped byte in a segment", func(t *testing.T, f *fixture, h *Head) {
			key := segmentDir("apiserver", "lifeboat-0", h.Record.Segment) + eventsObject
			b, err := os.ReadFile(filepath.Join(f.root, "objects", filepath.FromSlash(key)))
			if err != nil {
				t.Fatal(err)
			}
			b[100] ^= 0x40
			replace(t, f, key, b)
		}, "events.lbe"},
		{"record signed by another key", func(t *testing.T, f *fixture, h *Head) {
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			other, _ := evidence.NewSigner(priv)
			forged := h.Record
			forged.Events, forged.WALLast = forged.Events+1, forged.WALLast+1
			data, err := other.SignAuditSegment(forged)
			if err != nil {
				t.Fatal(err)
			}
			replace(t, f, h.Key, data)
		}, "not one of the trusted keys"},
		{"the newest record removed", func(t *testing.T, f *fixture, h *Head) {
			os.Remove(filepath.Join(f.root, "objects", filepath.FromSlash(recordKey("apiserver", "lifeboat-0", 2))))
			os.Remove(filepath.Join(f.root, "objects", filepath.FromSlash(recordKey("apiserver", "lifeboat-0", 1))))
		}, "records were removed from its end"},
		{"record removed from the middle", func(t *testing.T, f *fixture, h *Head) {
			os.Remove(filepath.Join(f.root, "objects", filepath.FromSlash(recordKey("apiserver", "lifeboat-0", 1))))
		}, "past a gap"},
		{"an object planted in a committed segment", func(t *testing.T, f *fixture, h *Head) {
			key := segmentDir("apiserver", "lifeboat-0", h.Record.Segment) + "keys/planted.json"
			if _, err := f.st.Put(ctx, key, strings.NewReader("{}"), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}, "keys/planted.json: an object the record"},
		{"an object planted in the log", func(t *testing.T, f *fixture, h *Head) {
			if _, err := f.st.Put(ctx, "audit/apiserver/lifeboat-0/notes.txt", strings.NewReader("x"), store.PutOptions{RetainUntil: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}, "not an object of the audit log layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.open(t, nil)
			for i := 1; i <= 2; i++ {
				post(t, r, event(i, "alice", "create", "secrets", "ehr", t0.Add(time.Duration(i)*time.Second)))
				if err := r.Seal(ctx); err != nil {
					t.Fatal(err)
				}
			}
			tc.tamper(t, f, r.HeadRecord())
			vr, err := Verify(ctx, f.st, VerifyOptions{Log: "apiserver", Trusted: []evidence.PublicKey{f.signer.PublicKey()}})
			if err != nil {
				t.Fatal(err)
			}
			text := fmt.Sprintf("%+v", vr)
			if vr.OK() || !strings.Contains(text, tc.want) {
				t.Fatalf("verify did not report %q: %s", tc.want, text)
			}
		})
	}
}

// replace swaps an fs store object's bytes and its digest record, as
// someone who can write the store's disk would, so that only what
// authenticates the object can catch it.
func replace(t *testing.T, f *fixture, key string, data []byte) {
	t.Helper()
	p := filepath.Join(f.root, "objects", filepath.FromSlash(key))
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rp := filepath.Join(f.root, "retention", filepath.FromSlash(key)+".json")
	var rec map[string]any
	b, err := os.ReadFile(rp)
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &rec)
	rec["sha256"], rec["size"] = evidence.Hash(data), len(data)
	b, _ = json.Marshal(rec)
	os.Chmod(rp, 0o600)
	if err := os.WriteFile(rp, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPlantedStreamAndSearchGaps: a stream planted under another key fails
// verify even without --key (one key must sign every stream); search names
// a stream it cannot walk, or one with a record past a gap, and still
// searches the others.
func TestPlantedStreamAndSearchGaps(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	r := f.open(t, nil)
	for i := 1; i <= 3; i++ {
		post(t, r, event(i, "alice", "create", "secrets", "ehr", t0.Add(time.Duration(i)*time.Second)))
		if err := r.Seal(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Another key's stream, as someone who can write the bucket makes it.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	mallory, _ := evidence.NewSigner(priv)
	o := f.options(nil)
	o.Stream, o.Signer, o.WALDir = "lifeboat-9", mallory, filepath.Join(t.TempDir(), "wal")
	r9, _, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	post(t, r9, event(99, "mallory", "delete", "secrets", "ehr", t0))
	if err := r9.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	vr, err := Verify(ctx, f.st, VerifyOptions{Log: "apiserver"})
	if err != nil {
		t.Fatal(err)
	}
	if vr.OK() || vr.OriginChecked || !strings.Contains(fmt.Sprint(vr.Streams), "not one of the trusted keys") {
		t.Fatalf("verify without --key accepted a stream under another key: %+v", vr)
	}
	trusted := []evidence.PublicKey{f.signer.PublicKey()}
	res, err := Search(ctx, f.st, SearchOptions{Log: "apiserver", Trusted: trusted, Unwrappers: []envelope.Unwrapper{f.keyring}})
	if err == nil || !strings.Contains(err.Error(), "stream lifeboat-9") || len(res.Matches) != 3 {
		t.Fatalf("search: %v, %d matches; want the planted stream named and the 3 real events", err, len(res.Matches))
	}
	// A record removed from the middle (a disk writer on an fs store):
	// search does not stop silently before it.
	os.Remove(filepath.Join(f.root, "objects", filepath.FromSlash(recordKey("apiserver", "lifeboat-0", 2))))
	_, err = Search(ctx, f.st, SearchOptions{Log: "apiserver", Trusted: trusted, Unwrappers: []envelope.Unwrapper{f.keyring}})
	if err == nil || !strings.Contains(err.Error(), "past a gap") {
		t.Fatalf("search with a record missing from the middle: %v", err)
	}
	// After stop, nothing more is acknowledged.
	if err := r.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if c := post(t, r, event(4, "alice", "create", "secrets", "ehr", t0)); c != http.StatusServiceUnavailable {
		t.Fatalf("a batch after stop: %d", c)
	}
}

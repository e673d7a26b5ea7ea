package vault

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// snapshot returns a gzip-compressed tar with the given members.
func snapshot(t *testing.T, members ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m[0], Mode: 0o600, Size: int64(len(m[1]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(m[1]))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func newSnapshotReader(body []byte) *snapshotReader {
	pr, pw := io.Pipe()
	s := &snapshotReader{addr: "http://vault.test", body: io.NopCloser(bytes.NewReader(body)), pw: pw, pr: pr, done: make(chan error, 1)}
	go s.scan()
	return s
}

// sumsOf returns a SHA256SUMS member listing members, as raft-snapshot
// writes it.
func sumsOf(members ...[2]string) string {
	var b strings.Builder
	for _, m := range members {
		fmt.Fprintf(&b, "%x  %s\n", sha256.Sum256([]byte(m[1])), m[0])
	}
	return b.String()
}

// TestSnapshotReader passes a complete snapshot through unchanged and
// fails one that is cut short, lacks its sealed sums, does not match its
// SHA256SUMS, has a bad gzip CRC or is not gzip.
func TestSnapshotReader(t *testing.T) {
	state := strings.Repeat("raft state ", 50000)
	meta := [2]string{"meta.json", `{"Index":7}`}
	st := [2]string{"state.bin", state}
	sums := [2]string{"SHA256SUMS", sumsOf(st, meta)}
	sealed := [2]string{"SHA256SUMS.sealed", "sealed"}
	complete := snapshot(t, meta, st, sums, sealed)
	s := newSnapshotReader(complete)
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, complete) {
		t.Fatalf("complete snapshot: %d bytes, %v", len(got), err)
	}
	s.Close()

	tamperedState := [2]string{"state.bin", strings.Replace(state, "raft", "RAFT", 1)}
	badCRC := slices.Clone(complete)
	badCRC[len(badCRC)-8] ^= 0xff // the gzip trailer: CRC-32, then size
	for name, tc := range map[string]struct {
		body []byte
		says string
	}{
		"cut short":        {complete[:len(complete)/2], "unexpected EOF"},
		"no sealed sums":   {snapshot(t, meta, st, sums), "does not end with a non-empty SHA256SUMS.sealed"},
		"empty sealed":     {snapshot(t, meta, st, sums, [2]string{"SHA256SUMS.sealed", ""}), "does not end with a non-empty SHA256SUMS.sealed"},
		"sealed not last":  {snapshot(t, meta, st, sealed, sums), "does not end with a non-empty SHA256SUMS.sealed"},
		"not gzip":         {[]byte(state), "not gzip"},
		"bad gzip CRC":     {badCRC, "gzip: invalid checksum"},
		"tampered state":   {snapshot(t, meta, tamperedState, sums, sealed), "member state.bin has SHA-256"},
		"tampered meta":    {snapshot(t, [2]string{"meta.json", `{"Index":8}`}, st, sums, sealed), "member meta.json has SHA-256"},
		"no sums":          {snapshot(t, meta, st, sealed), "has no SHA256SUMS"},
		"sums lack meta":   {snapshot(t, meta, st, [2]string{"SHA256SUMS", sumsOf(st)}, sealed), "SHA256SUMS does not list meta.json"},
		"no meta":          {snapshot(t, st, [2]string{"SHA256SUMS", sumsOf(st)}, sealed), "has no meta.json"},
		"sums list extra":  {snapshot(t, meta, st, [2]string{"SHA256SUMS", sumsOf(st, meta, [2]string{"x.bin", "x"})}, sealed), `lists "x.bin"`},
		"malformed sums":   {snapshot(t, meta, st, [2]string{"SHA256SUMS", "nonsense\n"}, sealed), "SHA256SUMS line 1"},
		"unexpected entry": {snapshot(t, meta, st, [2]string{"extra", "x"}, sums, sealed), `unexpected tar member "extra"`},
		"member twice":     {snapshot(t, meta, st, st, sums, sealed), "state.bin appears twice"},
	} {
		s := newSnapshotReader(tc.body)
		_, err := io.ReadAll(s)
		if err == nil || !strings.Contains(err.Error(), "vault http://vault.test: raft snapshot: incomplete") || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: err %v", name, err)
		}
		if strings.HasPrefix(name, "tampered") && !errors.Is(err, ErrSnapshotCorrupt) {
			t.Errorf("%s: err %v is not ErrSnapshotCorrupt", name, err)
		}
		s.Close()
	}

	// Closing early does not hang.
	s = newSnapshotReader(complete)
	buf := make([]byte, 100)
	s.Read(buf)
	s.Close()
}

// TestRaftSnapshotOutlastsClientTimeout streams a snapshot that takes
// longer than the client's request timeout: the stream is not cut.
func TestRaftSnapshotOutlastsClientTimeout(t *testing.T) {
	meta := [2]string{"meta.json", `{"Index":7}`}
	st := [2]string{"state.bin", strings.Repeat("raft state ", 20000)}
	body := snapshot(t, meta, st, [2]string{"SHA256SUMS", sumsOf(meta, st)}, [2]string{"SHA256SUMS.sealed", "sealed"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/sys/storage/raft/configuration":
			w.Write([]byte(`{"data":{"config":{"servers":[]}}}`))
		case "/v1/sys/storage/raft/snapshot":
			if r.Header.Get("X-Vault-Token") != "t" {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			half := len(body) / 2
			w.Write(body[:half])
			w.(http.Flusher).Flush()
			time.Sleep(600 * time.Millisecond)
			w.Write(body[half:])
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c, err := New(Options{Address: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	c.c.SetClientTimeout(200 * time.Millisecond)
	rc, err := c.RaftSnapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
}

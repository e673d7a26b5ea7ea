package vault

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/hashicorp/vault/api"

	keysvault "github.com/lifeboat-dr/lifeboat/internal/keys/vault"
)

// sealedSums is the last member of a complete raft snapshot's tar.
const sealedSums = "SHA256SUMS.sealed"

// ErrSnapshotCorrupt is wrapped when a raft snapshot member's SHA-256 is
// not the one its SHA256SUMS lists.
var ErrSnapshotCorrupt = errors.New("raft snapshot does not match its SHA256SUMS")

// RaftSnapshot checks that the server uses integrated storage and returns
// the stream of its raft snapshot, as Vault sends it (a gzip-compressed
// tar). Nothing is buffered beyond a read's worth. The stream ends in
// io.EOF only once the gzip stream has ended with a good CRC and its tar
// has held meta.json and state.bin matching the SHA-256 sums of its
// SHA256SUMS member, and ended with a non-empty SHA256SUMS.sealed; a
// snapshot cut short, corrupt or tampered with ends in an error naming the
// member. The caller must Close it.
func (c *Client) RaftSnapshot(ctx context.Context) (io.ReadCloser, error) {
	const what = "(sys/storage/raft/configuration)"
	s, err := c.c.Logical().ReadWithContext(ctx, "sys/storage/raft/configuration")
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode != http.StatusForbidden && strings.Contains(strings.ToLower(VaultMessage(re)), "raft storage is not in use") {
			return nil, fmt.Errorf("vault %s: raft snapshot: %w: the server's storage backend is not raft, so it has no raft snapshot to take (Vault answered %d: %s); back up that backend with its own tools, or drop raftSnapshot from the plan",
				c.addr, ErrNotRaft, re.StatusCode, VaultMessage(re))
		}
		return nil, c.opErr("raft snapshot: read storage configuration", what, err)
	}
	if s == nil {
		// Vault registers the raft paths only with integrated storage.
		return nil, fmt.Errorf("vault %s: raft snapshot: %w: the server answered 404 for sys/storage/raft/configuration, which only a server on raft storage serves; back up its storage backend with that backend's own tools, or drop raftSnapshot from the plan",
			c.addr, ErrNotRaft)
	}
	if s.Data["config"] == nil {
		return nil, fmt.Errorf("vault %s: raft snapshot: %w: sys/storage/raft/configuration returned no raft configuration", c.addr, ErrNotRaft)
	}
	// The snapshot streams for as long as it takes: the client's request
	// timeout (60s) would cut a large one off mid-stream, so the stream
	// goes through a copy of the client without it, bounded by ctx.
	sc, err := keysvault.NewAPIClient(c.addr, c.c.CloneConfig().HttpClient)
	if err != nil {
		return nil, fmt.Errorf("vault %s: raft snapshot: client: %v", c.addr, err)
	}
	sc.SetToken(c.c.Token())
	sc.SetClientTimeout(0)
	resp, err := sc.Logical().ReadRawWithContext(ctx, "sys/storage/raft/snapshot")
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, c.opErr("raft snapshot:", "stream (sys/storage/raft/snapshot)", err)
	}
	pr, pw := io.Pipe()
	sr := &snapshotReader{addr: c.addr, body: resp.Body, pw: pw, pr: pr, done: make(chan error, 1)}
	go sr.scan()
	return sr, nil
}

// snapshotReader passes Vault's snapshot stream through and, on the side,
// reads the tar inside it to see that it is complete.
type snapshotReader struct {
	addr string
	body io.ReadCloser
	pw   *io.PipeWriter
	pr   *io.PipeReader
	done chan error
	n    int64
	err  error
}

// Members of a raft snapshot's tar (github.com/hashicorp/raft-snapshot):
// the data members, the SHA256SUMS that lists their SHA-256, and that list
// sealed with Vault's seal.
const (
	sums         = "SHA256SUMS"
	maxSumsBytes = 8192 // as raft-snapshot reads them
)

var dataMembers = []string{"meta.json", "state.bin"}

// scan reads the gzip-compressed tar from the pipe and reports whether it
// is complete and intact: the gzip stream read to its end (so its CRC is
// checked), the tar holding meta.json and state.bin whose SHA-256 match
// the SHA256SUMS member, then a non-empty SHA256SUMS.sealed last, and
// nothing else. It drains the pipe whatever happens, so Read never blocks
// on it.
func (s *snapshotReader) scan() {
	defer io.Copy(io.Discard, s.pr)
	s.done <- scanSnapshot(s.pr)
}

func scanSnapshot(r io.Reader) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	var (
		members   []string
		hashes    = map[string][]byte{}
		sumsText  []byte
		sealedLen int64
	)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar after %v: %v", members, err)
		}
		if slices.Contains(members, h.Name) {
			return fmt.Errorf("tar member %s appears twice", h.Name)
		}
		members = append(members, h.Name)
		switch {
		case slices.Contains(dataMembers, h.Name):
			hh := sha256.New()
			if _, err := io.Copy(hh, tr); err != nil {
				return fmt.Errorf("read tar member %s: %v", h.Name, err)
			}
			hashes[h.Name] = hh.Sum(nil)
		case h.Name == sums:
			b, err := io.ReadAll(io.LimitReader(tr, maxSumsBytes+1))
			if err != nil {
				return fmt.Errorf("read tar member %s: %v", h.Name, err)
			}
			if len(b) > maxSumsBytes {
				return fmt.Errorf("tar member %s is larger than %d bytes", h.Name, maxSumsBytes)
			}
			sumsText = b
		case h.Name == sealedSums:
			n, err := io.Copy(io.Discard, tr)
			if err != nil {
				return fmt.Errorf("read tar member %s: %v", h.Name, err)
			}
			sealedLen = n
		default:
			return fmt.Errorf("unexpected tar member %q (members %v)", h.Name, members)
		}
	}
	// The tar ends before the gzip stream does: read that to its end, so
	// that gzip checks its CRC-32 and length.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fmt.Errorf("read gzip stream to its end: %v", err)
	}
	if len(members) == 0 || members[len(members)-1] != sealedSums || sealedLen == 0 {
		return fmt.Errorf("the snapshot's tar does not end with a non-empty %s (members %v)", sealedSums, members)
	}
	if sumsText == nil {
		return fmt.Errorf("the snapshot's tar has no %s (members %v)", sums, members)
	}
	return verifySums(sumsText, hashes)
}

// verifySums checks a SHA256SUMS member ("<hex sha256>  <name>" lines, as
// raft-snapshot writes them) against the data members' hashes: every data
// member listed, with its hash, and nothing else listed.
func verifySums(text []byte, hashes map[string][]byte) error {
	listed := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		want, err := hex.DecodeString(sum)
		if !ok || err != nil || len(want) != sha256.Size || name == "" {
			return fmt.Errorf("%s line %d is not \"<sha256>  <name>\"", sums, i+1)
		}
		got, ok := hashes[name]
		if !ok {
			return fmt.Errorf("%s lists %q, which is not a data member of the snapshot", sums, name)
		}
		if listed[name] {
			return fmt.Errorf("%s lists %s twice", sums, name)
		}
		listed[name] = true
		if !bytes.Equal(got, want) {
			return fmt.Errorf("member %s has SHA-256 %x, %s says %x: %w", name, got, sums, want, ErrSnapshotCorrupt)
		}
	}
	for _, name := range dataMembers {
		if _, ok := hashes[name]; !ok {
			return fmt.Errorf("the snapshot's tar has no %s", name)
		}
		if !listed[name] {
			return fmt.Errorf("%s does not list %s", sums, name)
		}
	}
	return nil
}

func (s *snapshotReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.body.Read(p)
	s.n += int64(n)
	if n > 0 {
		if _, werr := s.pw.Write(p[:n]); werr != nil {
			s.err = fmt.Errorf("vault %s: raft snapshot: check stream: %w", s.addr, werr)
			return n, s.err
		}
	}
	switch {
	case err == io.EOF:
		s.pw.Close()
		if verr := <-s.done; verr != nil {
			s.err = fmt.Errorf("vault %s: raft snapshot: incomplete or corrupt after %d bytes: %w", s.addr, s.n, verr)
			return n, s.err
		}
		s.err = io.EOF
		return n, io.EOF
	case err != nil:
		s.err = fmt.Errorf("vault %s: raft snapshot: stream cut after %d bytes: %w", s.addr, s.n, err)
		s.pw.CloseWithError(s.err)
		return n, s.err
	}
	return n, nil
}

// Close ends the stream and the check.
func (s *snapshotReader) Close() error {
	s.pw.CloseWithError(errors.New("snapshot stream closed"))
	s.pr.CloseWithError(errors.New("snapshot stream closed"))
	return s.body.Close()
}

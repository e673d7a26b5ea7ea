package vault

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"
)

// sealedSums is the last member of a complete raft snapshot's tar.
const sealedSums = "SHA256SUMS.sealed"

// RaftSnapshot checks that the server uses integrated storage and returns
// the stream of its raft snapshot, as Vault sends it (a gzip-compressed
// tar). Nothing is buffered beyond a read's worth. The stream ends in
// io.EOF only once the snapshot's tar has ended with a non-empty
// SHA256SUMS.sealed; a snapshot cut short ends in an error. The caller
// must Close it.
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
	resp, err := c.c.Logical().ReadRawWithContext(ctx, "sys/storage/raft/snapshot")
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

// scan reads the gzip-compressed tar from the pipe and reports whether it
// ended with a non-empty SHA256SUMS.sealed. It drains the pipe whatever
// happens, so Read never blocks on it.
func (s *snapshotReader) scan() {
	defer io.Copy(io.Discard, s.pr)
	s.done <- func() error {
		zr, err := gzip.NewReader(s.pr)
		if err != nil {
			return fmt.Errorf("not gzip: %v", err)
		}
		tr := tar.NewReader(zr)
		var members []string
		sealed := false
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read tar after %v: %v", members, err)
			}
			members = append(members, h.Name)
			n, err := io.Copy(io.Discard, tr)
			if err != nil {
				return fmt.Errorf("read tar member %s: %v", h.Name, err)
			}
			sealed = h.Name == sealedSums && n > 0
		}
		if !sealed {
			return fmt.Errorf("the snapshot's tar does not end with a non-empty %s (members %v)", sealedSums, members)
		}
		return nil
	}()
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
			s.err = fmt.Errorf("vault %s: raft snapshot: incomplete after %d bytes: %v", s.addr, s.n, verr)
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

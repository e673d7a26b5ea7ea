package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// maxBody bounds how much of a response body the helpers read.
const maxBody = 64 << 20

// httpError is a response with an unexpected status.
type httpError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %s", e.Method, e.URL, e.Status, e.Body)
}

// doJSON sends in (JSON-encoded unless nil) with header to url and, when
// the status is one of want (200 if none are given), decodes the response
// into out (unless nil). Any other status is an *httpError.
func doJSON(ctx context.Context, client *http.Client, method, url string, header http.Header, in, out any, want ...int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if in != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, url, err)
	}
	if len(want) == 0 {
		want = []int{http.StatusOK}
	}
	ok := false
	for _, w := range want {
		ok = ok || resp.StatusCode == w
	}
	if !ok {
		return &httpError{Method: method, URL: url, Status: resp.StatusCode, Body: string(bytes.TrimSpace(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, url, err)
		}
	}
	return nil
}

// freePortPair returns a free port p on 127.0.0.1 whose successor p+1 was
// free too, for servers that take the next port for themselves.
func freePortPair(t testing.TB) int {
	t.Helper()
	for range 50 {
		p := FreePort(t)
		if p >= 65535 {
			continue
		}
		l, err := net.Listen("tcp", addr(p+1))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatalf("testenv: found no two adjacent free ports on 127.0.0.1")
	return 0
}

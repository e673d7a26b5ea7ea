package scratch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxResponse bounds how much of an API response is read.
const maxResponse = 256 << 20

// APIError is a Kubernetes API response with an unexpected status. Body is
// the server's Status message, never request data.
type APIError struct {
	Method, Path string
	StatusCode   int
	Reason       string
	Message      string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, e.Reason, msg)
}

// IsNotFound reports whether err is an API 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// IsAlreadyExists reports whether err is an API 409 AlreadyExists.
func IsAlreadyExists(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusConflict && ae.Reason == "AlreadyExists"
}

// Do sends a request with a JSON body (unless in is nil) to path (e.g.
// "/api/v1/namespaces") on the API server and decodes a 2xx response into
// out (unless nil). Another status is an *APIError.
func (a Access) Do(ctx context.Context, method, path string, in, out any) error {
	if a.Client == nil || a.Server == "" {
		return errors.New("kubernetes api: no server")
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.Server, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var st struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		json.Unmarshal(b, &st)
		return &APIError{Method: method, Path: path, StatusCode: resp.StatusCode, Reason: st.Reason, Message: st.Message}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}

// ObjectMeta is the part of an object's metadata a drill looks at.
type ObjectMeta struct {
	Name            string `json:"name"`
	Namespace       string `json:"namespace,omitempty"`
	UID             string `json:"uid,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// ListItem is one object of a list: its metadata and, for Secrets, data.
type ListItem struct {
	Metadata ObjectMeta        `json:"metadata"`
	Data     map[string][]byte `json:"data,omitempty"`
}

// List returns every object at path (a collection such as
// "/apis/apps/v1/deployments"), following continue tokens.
func (a Access) List(ctx context.Context, path string) ([]ListItem, error) {
	var items []ListItem
	cont := ""
	for {
		q := url.Values{"limit": {"500"}}
		if cont != "" {
			q.Set("continue", cont)
		}
		var page struct {
			Metadata struct {
				Continue string `json:"continue"`
			} `json:"metadata"`
			Items []ListItem `json:"items"`
		}
		if err := a.Do(ctx, http.MethodGet, path+"?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.Metadata.Continue == "" {
			return items, nil
		}
		cont = page.Metadata.Continue
	}
}

package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// eventFields are the members of an audit.k8s.io/v1 Event that lifeboat
// reads: to check an event, to time it and to search.
type eventFields struct {
	AuditID                  string `json:"auditID"`
	Stage                    string `json:"stage"`
	Verb                     string `json:"verb"`
	StageTimestamp           string `json:"stageTimestamp"`
	RequestReceivedTimestamp string `json:"requestReceivedTimestamp"`
	User                     struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
	} `json:"objectRef"`
}

// time returns the event's time: stageTimestamp, else
// requestReceivedTimestamp, else fallback.
func (e *eventFields) time(fallback time.Time) time.Time {
	for _, s := range []string{e.StageTimestamp, e.RequestReceivedTimestamp} {
		if s == "" {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC()
		}
	}
	return fallback.UTC()
}

// ErrBadBatch marks a request body that is not an audit.k8s.io/v1
// EventList lifeboat can keep; the API server is answered 400.
var ErrBadBatch = errors.New("not an audit.k8s.io/v1 EventList")

// parseEventList reads an EventList and returns its events, each compacted,
// with its time. The message of an error names the item by position, never
// its content.
func parseEventList(r io.Reader, received time.Time) ([]Event, error) {
	var list struct {
		Kind       string            `json:"kind"`
		APIVersion string            `json:"apiVersion"`
		Items      []json.RawMessage `json:"items"`
	}
	dec := json.NewDecoder(r)
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("%w: the body is not JSON of that shape", ErrBadBatch)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the list", ErrBadBatch)
	}
	if list.Kind != "EventList" || list.APIVersion != "audit.k8s.io/v1" {
		return nil, fmt.Errorf("%w: kind %.64q apiVersion %.64q", ErrBadBatch, list.Kind, list.APIVersion)
	}
	out := make([]Event, 0, len(list.Items))
	for i, raw := range list.Items {
		ev, err := parseEvent(raw, received)
		if err != nil {
			return nil, fmt.Errorf("%w: item %d: %w", ErrBadBatch, i, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// parseEvent compacts one event and reads its time. Its errors never
// quote the event.
func parseEvent(raw []byte, received time.Time) (Event, error) {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return Event{}, errors.New("not JSON")
	}
	var f eventFields
	if err := json.Unmarshal(buf.Bytes(), &f); err != nil {
		return Event{}, errors.New("not an audit event")
	}
	if f.AuditID == "" {
		return Event{}, errors.New("no auditID")
	}
	if buf.Len() > MaxEventBytes {
		return Event{}, fmt.Errorf("%d bytes, more than %d", buf.Len(), MaxEventBytes)
	}
	return Event{JSON: buf.Bytes(), Time: f.time(received)}, nil
}

// Filter selects events in `audit search`. Empty fields match anything.
type Filter struct {
	From, To  time.Time
	User      string
	Verb      string
	Resource  string // resource, or resource/subresource
	Namespace string
	Stage     string
}

// match reports whether the event (with its time) passes f.
func (f Filter) match(e *eventFields, t time.Time) bool {
	if !f.From.IsZero() && t.Before(f.From) || !f.To.IsZero() && t.After(f.To) {
		return false
	}
	if f.User != "" && e.User.Username != f.User || f.Verb != "" && e.Verb != f.Verb || f.Stage != "" && e.Stage != f.Stage {
		return false
	}
	if f.Resource != "" || f.Namespace != "" {
		if e.ObjectRef == nil {
			return false
		}
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" && (len(f.Resource) > len(res) && f.Resource[len(res)] == '/') {
			res += "/" + e.ObjectRef.Subresource
		}
		if f.Resource != "" && res != f.Resource || f.Namespace != "" && e.ObjectRef.Namespace != f.Namespace {
			return false
		}
	}
	return true
}

// overlaps reports whether events from first to last may match f.
func (f Filter) overlaps(first, last time.Time) bool {
	return (f.To.IsZero() || !first.After(f.To)) && (f.From.IsZero() || !last.Before(f.From))
}

package strictjson_test

import (
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/strictjson"
)

type doc struct {
	A string         `json:"a"`
	B []int          `json:"b"`
	C map[string]int `json:"c"`
	D *doc           `json:"d,omitempty"`
}

func TestUnmarshal(t *testing.T) {
	for _, c := range []struct {
		in, err string
	}{
		{`{"a":"x","b":[1,2],"c":{"k":1},"d":{"a":"y"}}`, ""},
		{`{"a":"x","b":[{"a":1},{"a":1}]}`, "cannot unmarshal"}, // not duplicates: separate objects
		{`{"a":"x","a":"y"}`, `duplicate key "a"`},
		{`{"a":"x","A":"y"}`, `duplicate key "A"`},
		{`{"a":"x","\u0061":"y"}`, `duplicate key "a"`},
		// A map keeps keys as they are: keys that differ only in case
		// (Kubernetes label keys may) are two entries, not duplicates.
		{`{"d":{"a":"x"},"c":{"k":1,"\u212a":2}}`, ""},
		{`{"c":{"pod-security.kubernetes.io/enforce":1,"pod-security.kubernetes.io/Enforce":2}}`, ""},
		// A struct's fields match without regard to case: duplicates.
		{`{"d":{"a":"x","A":"y"}}`, `duplicate key "A"`},
		{`{"b":[1],"D":{"a":"1"},"d":{"a":"2"}}`, `duplicate key "d"`},
		{`{"x":[{"a":1,"a":2}]}`, `duplicate key "a"`},
		{`{"c":{"k":1,"k":2}}`, `duplicate key "k"`},
		{`{"d":{"a":"x","d":{"a":"1","a":"2"}}}`, `duplicate key "a"`},
		{`{"a":"x","z":1}`, "unknown field"},
		{`{"a":"x"} {}`, "trailing data"},
		{`{"a":"x"`, "unexpected EOF"},
		{`{"c":{"a":{"x":1}},"a":"x"}`, "cannot unmarshal"},
	} {
		var d doc
		err := strictjson.Unmarshal([]byte(c.in), &d)
		if c.err == "" {
			if err != nil {
				t.Errorf("%s: %v", c.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: got %v, want an error containing %q", c.in, err, c.err)
		}
	}
}

func TestNestedObjectKeysAreSeparate(t *testing.T) {
	var d doc
	if err := strictjson.Unmarshal([]byte(`{"a":"x","d":{"a":"y","d":{"a":"z"}}}`), &d); err != nil {
		t.Fatalf("the same key in nested objects is not a duplicate: %v", err)
	}
}

// TestMapKeysKeptApart: a label map whose keys differ only in case decodes
// to both entries (the manifest's Pod Security labels of a Namespace
// labelled .../enforce and .../Enforce must not make the catalog
// undecodable).
func TestMapKeysKeptApart(t *testing.T) {
	var d doc
	if err := strictjson.Unmarshal([]byte(`{"c":{"k":1,"K":2}}`), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.C) != 2 || d.C["k"] != 1 || d.C["K"] != 2 {
		t.Fatalf("decoded %v, want both keys", d.C)
	}
	var m map[string]any
	if err := strictjson.Unmarshal([]byte(`{"x":1,"X":2}`), &m); err != nil || len(m) != 2 {
		t.Fatalf("into a map: %v %v", m, err)
	}
}

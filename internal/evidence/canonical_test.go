package evidence

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMarshalCanonical(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		want string
	}{
		{"empty object", map[string]any{}, `{}`},
		{"empty array", []any{}, `[]`},
		{"literals", []any{true, false, nil}, `[true,false,null]`},
		{"integers", []any{int64(0), int64(-1), int64(1<<53 - 1), int64(-(1<<53 - 1))}, `[0,-1,9007199254740991,-9007199254740991]`},
		{"sorted ASCII keys", map[string]any{"b": int64(1), "a": int64(2), "B": int64(3), "aa": int64(4)}, `{"B":3,"a":2,"aa":4,"b":1}`},
		// RFC 8785 sorts by UTF-16 code units: U+1F600 (D83D DE00) sorts
		// before U+FB01, although its UTF-8 bytes (F0...) sort after (EF...).
		{"UTF-16 key order", map[string]any{"\ufb01": int64(1), "\U0001F600": int64(2), "é": int64(3)}, `{"é":3,"😀":2,"ﬁ":1}`},
		{"string escapes", "\x00\x08\t\n\x0b\x0c\r\x1f\"\\/<>&\u2028\x7fé", `"\u0000\b\t\n\u000b\f\r\u001f\"\\/<>&` + "\u2028\x7fé" + `"`},
		{"struct via encoding/json", struct {
			Name  string `json:"name"`
			Count int    `json:"count"`
			Flt   float64
		}{"x<y", 3, 2.0}, `{"Flt":2,"count":3,"name":"x<y"}`},
		{"nested", map[string]any{"z": []any{map[string]any{"y": "1", "x": int64(2)}}, "a": map[string]any{}}, `{"a":{},"z":[{"x":2,"y":"1"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MarshalCanonical(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			v, err := parseCanonical(got)
			if err != nil {
				t.Fatalf("canonical output does not parse: %v", err)
			}
			again, err := appendCanonical(nil, v, "")
			if err != nil || string(again) != tc.want {
				t.Fatalf("re-encoding: %s, %v", again, err)
			}
		})
	}
}

func TestMarshalCanonicalRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		path string
	}{
		{"float", map[string]any{"a": map[string]any{"b": 1.5}}, "a.b"},
		{"too large", map[string]any{"n": int64(1 << 53)}, "n"},
		{"too large via json", map[string]any{"n": uint64(1 << 60)}, "n"},
		{"exponent", []any{1e300}, "[0]"},
		{"invalid UTF-8 key", map[string]any{"ok": map[string]any{"\xff": int64(1)}}, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MarshalCanonical(tc.in)
			var ce *CanonicalError
			if !errors.As(err, &ce) {
				// encoding/json replaces invalid UTF-8; that is not an error.
				if tc.name == "invalid UTF-8 key" && err == nil {
					return
				}
				t.Fatalf("error %v, want a *CanonicalError", err)
			}
			if ce.Path != tc.path {
				t.Fatalf("path %q, want %q (%v)", ce.Path, tc.path, err)
			}
		})
	}
}

func TestParseCanonicalRejects(t *testing.T) {
	deep := strings.Repeat("[", 66) + strings.Repeat("]", 66)
	for _, tc := range []struct {
		name, in, path, msg string
	}{
		{"leading space", ` {}`, "", "whitespace"},
		{"space after colon", `{"a": 1}`, "a", "whitespace"},
		{"trailing newline", "{}\n", "", "data after"},
		{"trailing garbage", `{}x`, "", "data after"},
		{"out of order", `{"b":1,"a":2}`, "a", "out of order"},
		{"duplicate", `{"a":1,"a":1}`, "a", "duplicate"},
		{"leading zero", `{"a":01}`, "a", "leading zero"},
		{"minus zero", `{"a":-0}`, "a", "-0"},
		{"fraction", `{"a":{"b":1.0}}`, "a.b", "not an integer"},
		{"exponent", `[1e2]`, "[0]", "not an integer"},
		{"plus", `[+1]`, "", "unexpected"},
		{"too large", `[9007199254740992]`, "[0]", "outside"},
		{"unneeded escape", `["\u0041"]`, "[0]", "not canonical"},
		{"escaped slash", `["\/"]`, "[0]", "not canonical"},
		{"uppercase hex", `["\u001F"]`, "[0]", "not canonical"},
		{"long form of short escape", `["\u000a"]`, "[0]", "not canonical"},
		{"raw control", "[\"a\tb\"]", "[0]", "must be escaped"},
		{"invalid UTF-8", "[\"\xff\"]", "[0]", "UTF-8"},
		{"surrogate in UTF-8", "[\"\xed\xa0\x80\"]", "[0]", "UTF-8"},
		{"bad literal", `[nul]`, "[0]", "literal"},
		{"unterminated", `{"a":"b`, "a", "unterminated"},
		{"too deep", deep, "", "nested"},
		{"empty", ``, "", "end of data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCanonical([]byte(tc.in))
			var ce *CanonicalError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a *CanonicalError", err)
			}
			if !strings.HasPrefix(ce.Path, tc.path) || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got path %q msg %q, want path %q and %q", ce.Path, ce.Msg, tc.path, tc.msg)
			}
		})
	}
}

func TestNestingLimit(t *testing.T) {
	ok := strings.Repeat("[", 64) + "1" + strings.Repeat("]", 64)
	if _, err := parseCanonical([]byte(ok)); err != nil {
		t.Fatalf("64 levels: %v", err)
	}
	v, _ := parseCanonical([]byte(ok))
	if _, err := MarshalCanonical(v); err != nil {
		t.Fatalf("64 levels: %v", err)
	}
	tooDeep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	if _, err := parseCanonical([]byte(tooDeep)); err == nil {
		t.Fatal("65 levels accepted")
	}
	var deep any = []any{}
	for range 64 {
		deep = []any{deep}
	}
	if _, err := MarshalCanonical(deep); err == nil {
		t.Fatal("65 levels encoded")
	}
}

func TestParseCanonicalValues(t *testing.T) {
	v, err := parseCanonical([]byte(`{"a":[1,-2,"x\n",true,null,{}],"b":"é"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": []any{int64(1), int64(-2), "x\n", true, nil, map[string]any{}}, "b": "é"}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("got %#v", v)
	}
}

func TestTimes(t *testing.T) {
	for _, ok := range []string{"2026-03-01T02:00:00Z", "2026-03-01T02:00:00.25Z", "2026-03-01T02:00:00.123456789Z"} {
		if _, err := parseTime(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"2026-03-01T02:00:00.250Z", "2026-03-01T03:00:00+01:00", "2026-03-01 02:00:00Z", "2026-03-01T02:00:00.0Z"} {
		if _, err := parseTime(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

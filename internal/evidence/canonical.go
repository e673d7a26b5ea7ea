package evidence

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Canonical JSON (docs/format.md §5.1): RFC 8785 (JCS) restricted to
// integers of at most 53 bits. Values in memory are the JSON tree types
// below and nothing else:
//
//	map[string]any  object
//	[]any           array
//	string          string (valid UTF-8)
//	int64           number
//	bool            true / false
//	nil             null

const (
	// maxSafeInt is 2^53 − 1, the largest integer every JSON
	// implementation represents exactly (I-JSON, RFC 7493).
	maxSafeInt = 1<<53 - 1
	// maxDepth bounds nesting, so a hostile file cannot exhaust the stack.
	maxDepth = 64
)

// CanonicalError reports where a JSON text departs from the canonical
// form, or a value that has no canonical form.
type CanonicalError struct {
	// Offset is the byte offset of the problem in the text; -1 when
	// encoding a value rather than reading a text.
	Offset int
	// Path is the JSON path of the value concerned ("" for the top level),
	// e.g. subject.artifacts[2].size.
	Path string
	// Msg says what is wrong.
	Msg string
}

func (e *CanonicalError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString("field " + e.Path + ": ")
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, "byte %d: ", e.Offset)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// MarshalCanonical returns the canonical JSON text of v. v may be any
// value encoding/json can marshal; its numbers must be integers within
// ±(2^53−1) and its strings valid UTF-8.
func MarshalCanonical(v any) ([]byte, error) {
	tree, err := toTree(v)
	if err != nil {
		return nil, err
	}
	return appendCanonical(nil, tree, "")
}

// toTree converts v into the JSON tree types by way of encoding/json, so
// structs, typed maps and slices are accepted.
func toTree(v any) (any, error) {
	switch v.(type) {
	case nil, string, bool, int64, map[string]any, []any:
		if err := checkTree(v, "", 0); err == nil {
			return v, nil
		}
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return fromGeneric(generic, "", 0)
}

// checkTree reports whether v is already made of tree types only.
func checkTree(v any, path string, depth int) error {
	switch v.(type) {
	case map[string]any, []any:
		if depth >= maxDepth {
			return &CanonicalError{Offset: -1, Path: path, Msg: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
		}
	}
	switch x := v.(type) {
	case nil, string, bool:
		return nil
	case int64:
		if x > maxSafeInt || x < -maxSafeInt {
			return &CanonicalError{Offset: -1, Path: path, Msg: fmt.Sprintf("integer %d is outside ±(2^53−1)", x)}
		}
		return nil
	case map[string]any:
		for k, e := range x {
			if err := checkTree(e, joinPath(path, k), depth+1); err != nil {
				return err
			}
		}
		return nil
	case []any:
		for i, e := range x {
			if err := checkTree(e, indexPath(path, i), depth+1); err != nil {
				return err
			}
		}
		return nil
	default:
		return &CanonicalError{Offset: -1, Path: path, Msg: fmt.Sprintf("type %T is not a JSON tree type", v)}
	}
}

// fromGeneric converts encoding/json's generic decoding (with UseNumber)
// into tree types, refusing non-integers.
func fromGeneric(v any, path string, depth int) (any, error) {
	switch v.(type) {
	case map[string]any, []any:
		if depth >= maxDepth {
			return nil, &CanonicalError{Offset: -1, Path: path, Msg: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
		}
	}
	switch x := v.(type) {
	case nil, string, bool:
		return x, nil
	case json.Number:
		n, err := parseSafeInt(string(x))
		if err != nil {
			return nil, &CanonicalError{Offset: -1, Path: path, Msg: err.Error()}
		}
		return n, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := fromGeneric(e, joinPath(path, k), depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := fromGeneric(e, indexPath(path, i), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	default:
		return nil, &CanonicalError{Offset: -1, Path: path, Msg: fmt.Sprintf("unexpected %T", v)}
	}
}

func parseSafeInt(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("number %s is not an integer within ±(2^53−1) (durations are integer milliseconds)", s)
	}
	if n > maxSafeInt || n < -maxSafeInt {
		return 0, fmt.Errorf("integer %s is outside ±(2^53−1)", s)
	}
	return n, nil
}

// appendCanonical appends the canonical text of the tree value v.
func appendCanonical(buf []byte, v any, path string) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...), nil
	case bool:
		if x {
			return append(buf, "true"...), nil
		}
		return append(buf, "false"...), nil
	case int64:
		if x > maxSafeInt || x < -maxSafeInt {
			return nil, &CanonicalError{Offset: -1, Path: path, Msg: fmt.Sprintf("integer %d is outside ±(2^53−1)", x)}
		}
		return strconv.AppendInt(buf, x, 10), nil
	case string:
		return appendString(buf, x, path)
	case []any:
		buf = append(buf, '[')
		for i, e := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendCanonical(buf, e, indexPath(path, i)); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendString(buf, k, path); err != nil {
				return nil, err
			}
			buf = append(buf, ':')
			if buf, err = appendCanonical(buf, x[k], joinPath(path, k)); err != nil {
				return nil, err
			}
		}
		return append(buf, '}'), nil
	default:
		return nil, &CanonicalError{Offset: -1, Path: path, Msg: fmt.Sprintf("type %T has no canonical JSON form", v)}
	}
}

const hexDigits = "0123456789abcdef"

func appendString(buf []byte, s, path string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, &CanonicalError{Offset: -1, Path: path, Msg: "string is not valid UTF-8"}
	}
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			buf = append(buf, '\\', '"')
		case c == '\\':
			buf = append(buf, '\\', '\\')
		case c < 0x20:
			if esc := shortEscape(c); esc != 0 {
				buf = append(buf, '\\', esc)
			} else {
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '"'), nil
}

// shortEscape returns the letter of the two-character escape of control
// character c, or 0 when c is written as \u00xx.
func shortEscape(c byte) byte {
	switch c {
	case '\b':
		return 'b'
	case '\t':
		return 't'
	case '\n':
		return 'n'
	case '\f':
		return 'f'
	case '\r':
		return 'r'
	}
	return 0
}

// unescapeShort is the inverse of shortEscape.
func unescapeShort(e byte) byte {
	switch e {
	case 'b':
		return '\b'
	case 't':
		return '\t'
	case 'n':
		return '\n'
	case 'f':
		return '\f'
	}
	return '\r'
}

// compareUTF16 orders object member names as RFC 8785 does: as sequences
// of UTF-16 code units.
func compareUTF16(a, b string) int {
	if isASCII(a) && isASCII(b) {
		return strings.Compare(a, b)
	}
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func joinPath(path, name string) string {
	if !isPlainName(name) {
		name = strconv.Quote(name)
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func isPlainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parseCanonical parses data, which must be a canonical JSON text, into
// tree values. The error is a *CanonicalError naming the offset and path of
// the first departure from the canonical form.
func parseCanonical(data []byte) (any, error) {
	p := &parser{data: data}
	v, err := p.value("", 0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(data) {
		return nil, p.errorf("", "data after the end of the JSON value")
	}
	return v, nil
}

type parser struct {
	data []byte
	pos  int
}

func (p *parser) errorf(path, format string, args ...any) error {
	return &CanonicalError{Offset: p.pos, Path: path, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) unexpected(path, want string) error {
	if p.pos >= len(p.data) {
		return p.errorf(path, "unexpected end of data, want %s", want)
	}
	switch c := p.data[p.pos]; c {
	case ' ', '\t', '\n', '\r':
		return p.errorf(path, "whitespace %q outside a string is not canonical", c)
	default:
		return p.errorf(path, "unexpected %q, want %s", c, want)
	}
}

func (p *parser) value(path string, depth int) (any, error) {
	if p.pos >= len(p.data) {
		return nil, p.unexpected(path, "a value")
	}
	if c := p.data[p.pos]; (c == '{' || c == '[') && depth >= maxDepth {
		return nil, p.errorf(path, "nested more than %d levels deep", maxDepth)
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(path, depth)
	case c == '[':
		return p.array(path, depth)
	case c == '"':
		return p.string(path)
	case c == 't':
		return true, p.literal(path, "true")
	case c == 'f':
		return false, p.literal(path, "false")
	case c == 'n':
		return nil, p.literal(path, "null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number(path)
	default:
		return nil, p.unexpected(path, "a value")
	}
}

func (p *parser) literal(path, lit string) error {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(lit)) {
		return p.errorf(path, "invalid literal, want %s", lit)
	}
	p.pos += len(lit)
	return nil
}

func (p *parser) number(path string) (any, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
	}
	digits := p.pos
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
	text := string(p.data[start:p.pos])
	if p.pos == digits {
		p.pos = start
		return nil, p.errorf(path, "invalid number")
	}
	if p.pos < len(p.data) {
		switch p.data[p.pos] {
		case '.', 'e', 'E':
			p.pos = start
			return nil, p.errorf(path, "number is not an integer (only integers are allowed; durations are integer milliseconds)")
		}
	}
	if p.pos-digits > 1 && p.data[digits] == '0' {
		p.pos = start
		return nil, p.errorf(path, "number %s has a leading zero", text)
	}
	if text == "-0" {
		p.pos = start
		return nil, p.errorf(path, "-0 is not canonical; write 0")
	}
	n, err := parseSafeInt(text)
	if err != nil {
		p.pos = start
		return nil, p.errorf(path, "%v", err)
	}
	return n, nil
}

func (p *parser) string(path string) (string, error) {
	start := p.pos
	p.pos++ // opening quote
	var b []byte
	for {
		if p.pos >= len(p.data) {
			p.pos = start
			return "", p.errorf(path, "unterminated string")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(b), nil
		case c < 0x20:
			return "", p.errorf(path, "control character 0x%02x in a string must be escaped", c)
		case c == '\\':
			if p.pos+1 >= len(p.data) {
				return "", p.errorf(path, "unterminated escape")
			}
			e := p.data[p.pos+1]
			switch e {
			case '"', '\\':
				b = append(b, e)
				p.pos += 2
				continue
			case 'b', 't', 'n', 'f', 'r':
				b = append(b, unescapeShort(e))
				p.pos += 2
				continue
			case 'u':
				if p.pos+6 > len(p.data) {
					return "", p.errorf(path, "unterminated \\u escape")
				}
				h := string(p.data[p.pos+2 : p.pos+6])
				n, err := strconv.ParseUint(h, 16, 16)
				if err != nil || n >= 0x20 || shortEscape(byte(n)) != 0 || h != fmt.Sprintf("%04x", n) {
					return "", p.errorf(path, "escape \\u%s is not canonical (only U+0000–U+001F without a short form, as \\u00xx in lowercase)", h)
				}
				b = append(b, byte(n))
				p.pos += 6
				continue
			default:
				return "", p.errorf(path, "escape \\%c is not canonical", e)
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", p.errorf(path, "invalid UTF-8 in a string")
			}
			b = append(b, p.data[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
}

func (p *parser) array(path string, depth int) (any, error) {
	p.pos++ // [
	out := []any{}
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return out, nil
	}
	for {
		v, err := p.value(indexPath(path, len(out)), depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if p.pos >= len(p.data) {
			return nil, p.unexpected(indexPath(path, len(out)-1), "',' or ']' after the value")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return out, nil
		default:
			return nil, p.unexpected(indexPath(path, len(out)-1), "',' or ']' after the value")
		}
	}
}

func (p *parser) object(path string, depth int) (any, error) {
	p.pos++ // {
	out := map[string]any{}
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return out, nil
	}
	prev, first := "", true
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.unexpected(path, "a member name")
		}
		keyAt := p.pos
		k, err := p.string(path)
		if err != nil {
			return nil, err
		}
		if !first {
			switch c := compareUTF16(prev, k); {
			case c == 0:
				p.pos = keyAt
				return nil, p.errorf(joinPath(path, k), "duplicate member name")
			case c > 0:
				p.pos = keyAt
				return nil, p.errorf(joinPath(path, k), "member is out of order (names must be sorted; it comes after %q)", prev)
			}
		}
		prev, first = k, false
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.unexpected(joinPath(path, k), "':'")
		}
		p.pos++
		v, err := p.value(joinPath(path, k), depth+1)
		if err != nil {
			return nil, err
		}
		out[k] = v
		if p.pos >= len(p.data) {
			return nil, p.unexpected(joinPath(path, k), "',' or '}' after the value")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return out, nil
		default:
			return nil, p.unexpected(joinPath(path, k), "',' or '}' after the value")
		}
	}
}

// formatTime is the canonical text of a time (docs/format.md §5.1).
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// parseTime accepts only the canonical text of a time.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	if formatTime(t) != s {
		return time.Time{}, fmt.Errorf("%q is not canonical: want %q (UTC, suffix Z, no trailing zeros in the fraction)", s, formatTime(t))
	}
	return t.UTC(), nil
}

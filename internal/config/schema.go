package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// This file checks a YAML document against the shape of the Go type it will
// be decoded into, before decoding: every mapping key must be a field of the
// target struct (yaml.v3's Node.Decode has no KnownFields option), keys must
// not repeat, and each value must have the right shape. Every problem is
// reported with the field's path and the line and column of its key.

// schemaWalker collects the problems of one document.
type schemaWalker struct {
	file string
	errs ErrorList
	// done records the (node, type) pairs already checked, so that a node
	// reached through several aliases is checked once and alias loops end.
	done map[walkKey]bool
}

type walkKey struct {
	n *yaml.Node
	t reflect.Type
}

// checkSchema checks the document root n against type t.
func checkSchema(file string, n *yaml.Node, t reflect.Type) ErrorList {
	w := &schemaWalker{file: file, done: make(map[walkKey]bool)}
	w.walk(n, n, t, "")
	return w.errs
}

func (w *schemaWalker) errorAt(at *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, &Error{
		File:   w.file,
		Line:   at.Line,
		Column: at.Column,
		Field:  path,
		Msg:    fmt.Sprintf(format, args...),
	})
}

// walk checks value node n against type t. at is the node an error points
// at: the key of a mapping entry, or the item of a sequence.
func (w *schemaWalker) walk(at, n *yaml.Node, t reflect.Type, path string) {
	n = deref(n)
	if n == nil || isNull(n) {
		return // absent; required fields are checked after decoding
	}
	key := walkKey{n, t}
	if w.done[key] {
		return
	}
	w.done[key] = true

	if n.Kind == yaml.ScalarNode && reflect.PointerTo(t).Implements(reflect.TypeFor[shorthandParser]()) {
		p := reflect.New(t).Interface().(shorthandParser)
		if err := p.parseShorthand(n); err != nil {
			w.errorAt(at, path, "%s", err)
		}
		return
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[scalarParser]()) {
		p := reflect.New(t).Interface().(scalarParser)
		if err := p.parseScalar(n); err != nil {
			w.errorAt(at, path, "%s", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(at, n, t.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.errorAt(at, path, "want a mapping, got %s", describe(n))
			return
		}
		fields := yamlFields(t)
		w.mapping(n, path, func(k, v *yaml.Node) {
			f, ok := fieldNamed(fields, k.Value)
			if !ok {
				w.errorAt(k, joinKey(path, k.Value), "%s", unknownField(k.Value, fields))
				return
			}
			w.walk(k, v, f.typ, joinKey(path, k.Value))
		})
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.errorAt(at, path, "want a mapping, got %s", describe(n))
			return
		}
		w.mapping(n, path, func(k, v *yaml.Node) {
			w.walk(k, v, t.Elem(), joinKey(path, k.Value))
		})
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.errorAt(at, path, "want a list, got %s", describe(n))
			return
		}
		for i, item := range n.Content {
			w.walk(item, item, t.Elem(), joinIndex(path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.errorAt(at, path, "want a string, got %s", describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			w.errorAt(at, path, "want true or false, got %s", describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			w.errorAt(at, path, "want an integer, got %s", describe(n))
		}
	}
}

// mapping calls fn for each entry of mapping node n, including the entries
// merged in with "<<" (which the mapping's own keys override). It reports
// keys that are not scalars and keys that repeat.
func (w *schemaWalker) mapping(n *yaml.Node, path string, fn func(k, v *yaml.Node)) {
	seen := make(map[string]*yaml.Node)
	w.entries(n, path, seen, make(map[*yaml.Node]bool), true, fn)
}

func (w *schemaWalker) entries(n *yaml.Node, path string, seen map[string]*yaml.Node, visiting map[*yaml.Node]bool, own bool, fn func(k, v *yaml.Node)) {
	if visiting[n] {
		return
	}
	visiting[n] = true
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.errorAt(k, path, "mapping keys must be strings, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			if own {
				if first, dup := seen[k.Value]; dup {
					w.errorAt(k, path, "duplicate merge key %q; first at line %d", k.Value, first.Line)
					continue
				}
				seen[k.Value] = k
			}
			merges = append(merges, v)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			if own {
				w.errorAt(k, joinKey(path, k.Value), "duplicate key; first defined at line %d", first.Line)
			}
			continue // in a merged mapping: overridden
		}
		seen[k.Value] = k
		fn(k, v)
	}
	for _, m := range merges {
		for _, src := range mergeSources(m) {
			if src.Kind != yaml.MappingNode {
				w.errorAt(m, path, "a merge key (<<) needs a mapping or a list of mappings, got %s", describe(src))
				continue
			}
			w.entries(src, path, seen, visiting, false, fn)
		}
	}
}

// mergeSources returns the mappings a "<<" value merges in, aliases
// resolved.
func mergeSources(v *yaml.Node) []*yaml.Node {
	v = deref(v)
	if v == nil {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return []*yaml.Node{v}
	}
	srcs := make([]*yaml.Node, 0, len(v.Content))
	for _, item := range v.Content {
		if item = deref(item); item != nil {
			srcs = append(srcs, item)
		}
	}
	return srcs
}

// deref follows alias nodes to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 100 {
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names the shape of a node for error messages. It never quotes a
// value of more than a few characters.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "nothing"
		case "!!timestamp":
			return "a timestamp"
		}
		return "a value tagged " + n.ShortTag()
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// fieldInfo is one field of a struct as YAML sees it.
type fieldInfo struct {
	name string
	typ  reflect.Type
}

// yamlFields lists the YAML fields of struct type t in declaration order,
// following the rules of yaml.v3: the name comes from the yaml tag, "-"
// skips a field, unexported fields are ignored and ",inline" structs
// contribute their own fields.
func yamlFields(t reflect.Type) []fieldInfo {
	var fields []fieldInfo
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				fields = append(fields, yamlFields(ft)...)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		fields = append(fields, fieldInfo{name: name, typ: sf.Type})
	}
	return fields
}

func fieldNamed(fields []fieldInfo, name string) (fieldInfo, bool) {
	for _, f := range fields {
		if f.name == name {
			return f, true
		}
	}
	return fieldInfo{}, false
}

// unknownField is the message for an unknown key: a suggestion when a known
// field is close, otherwise the list of known fields.
func unknownField(key string, fields []fieldInfo) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if s := suggest(key, names); s != "" {
		return fmt.Sprintf("unknown field; did you mean %q?", s)
	}
	if len(names) == 0 {
		return "unknown field; this mapping takes no fields"
	}
	return "unknown field; known fields: " + strings.Join(names, ", ")
}

// suggest returns the candidate closest to s when it is within edit
// distance 2 (ignoring case) and the edit does not rewrite most of s;
// otherwise "".
func suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if d < bestDist && d < len(s) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ---------------------------------------------------------------- field paths

// joinKey appends a mapping key to a field path: "spec" + "store" is
// "spec.store"; a key that is not a plain identifier is quoted in brackets,
// as in `metadata.labels["app.kubernetes.io/name"]`.
func joinKey(path, key string) string {
	if !isPlainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// joinIndex appends a list index to a field path: "spec.sources[2]".
func joinIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isPlainKey(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// pathSegment is one step of a field path: a mapping key or a list index.
type pathSegment struct {
	key   string
	index int // -1 for a key
}

// splitPath splits a field path made by joinKey and joinIndex into its
// segments. It stops at the first malformed segment.
func splitPath(path string) []pathSegment {
	var segs []pathSegment
	for path != "" {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			rest := path[1:]
			if strings.HasPrefix(rest, `"`) {
				q, err := strconv.QuotedPrefix(rest)
				if err != nil {
					return segs
				}
				key, _ := strconv.Unquote(q)
				rest = rest[len(q):]
				if !strings.HasPrefix(rest, "]") {
					return segs
				}
				segs = append(segs, pathSegment{key: key, index: -1})
				path = rest[1:]
				continue
			}
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return segs
			}
			i, err := strconv.Atoi(rest[:end])
			if err != nil || i < 0 {
				return segs
			}
			segs = append(segs, pathSegment{index: i})
			path = rest[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			segs = append(segs, pathSegment{key: path[:end], index: -1})
			path = path[end:]
		}
	}
	return segs
}

// locate finds the node a field path points at in the document whose root
// mapping is root: at is the key node of a mapping entry or the item node of
// a list, val the value (aliases resolved). When the path does not resolve
// completely (a required field that is absent), at is the node of the
// longest prefix that does, val is nil and found is false.
func locate(root *yaml.Node, path string) (at, val *yaml.Node, found bool) {
	at, cur := root, deref(root)
	for _, seg := range splitPath(path) {
		if cur == nil {
			return at, nil, false
		}
		if seg.index >= 0 {
			if cur.Kind != yaml.SequenceNode || seg.index >= len(cur.Content) {
				return at, nil, false
			}
			at = cur.Content[seg.index]
			cur = deref(at)
			continue
		}
		if cur.Kind != yaml.MappingNode {
			return at, nil, false
		}
		k, v := mappingEntry(cur, seg.key, 0)
		if k == nil {
			return at, nil, false
		}
		at, cur = k, deref(v)
	}
	return at, cur, true
}

// mappingEntry returns the key and value nodes of key in mapping m,
// looking into merged mappings when m has no such key of its own.
func mappingEntry(m *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	if depth > 10 {
		return nil, nil
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn := m.Content[i]
		if kn.Kind != yaml.ScalarNode {
			continue
		}
		if kn.ShortTag() == "!!merge" {
			merges = append(merges, m.Content[i+1])
			continue
		}
		if kn.Value == key {
			return kn, m.Content[i+1]
		}
	}
	for _, mv := range merges {
		for _, src := range mergeSources(mv) {
			if src.Kind != yaml.MappingNode {
				continue
			}
			if k, v := mappingEntry(src, key, depth+1); k != nil {
				return k, v
			}
		}
	}
	return nil, nil
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse reads the objects of one file: YAML documents separated by "---",
// empty documents ignored. file names the file in errors only; nothing is
// read from disk. On success every object is valid on its own and has its
// defaults filled in; references to other objects are not checked (LoadPaths
// does that). On failure Parse returns no objects and an ErrorList holding
// every problem found, sorted by line.
func Parse(file string, data []byte) ([]Object, error) {
	r := parseFile(file, data)
	r.errs = append(r.errs, duplicates(r.ids)...)
	if err := r.errs.err(); err != nil {
		return nil, err
	}
	objs := make([]Object, len(r.objs))
	for i, o := range r.objs {
		objs[i] = o
	}
	return objs, nil
}

// ident is the identity of an object, known even when the object itself
// could not be decoded: enough to find duplicates and to tell a dangling
// reference from one to a broken object.
type ident struct {
	kind, name string
	at         Position // the line of metadata.name, or of the document
}

// fileResult is what parseFile found in one file.
type fileResult struct {
	objs []object // decoded objects, including those with semantic problems
	ids  []ident  // identities of all documents with a known kind and name
	errs ErrorList
}

// parseFile parses every document of one file and checks each object on its
// own.
func parseFile(file string, data []byte) fileResult {
	var r fileResult
	dec := yaml.NewDecoder(bytes.NewReader(data))
	docs := 0
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The parser cannot resume after a syntax error.
			r.errs = append(r.errs, yamlErrors(file, nil, err)...)
			docs++
			break
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue // an empty document
		}
		docs++
		obj, id, errs := parseDocument(file, doc.Content[0])
		if obj != nil {
			r.objs = append(r.objs, obj)
		}
		if id != nil {
			r.ids = append(r.ids, *id)
		}
		r.errs = append(r.errs, errs...)
	}
	if docs == 0 {
		r.errs = append(r.errs, fileError(file, "no objects"))
	}
	return r
}

// parseDocument checks and decodes one document. It returns the object when
// it could be decoded (errs may still hold semantic problems), and its
// identity when the kind and name could be read.
func parseDocument(file string, root *yaml.Node) (obj object, id *ident, errs ErrorList) {
	at := func(n *yaml.Node, field, format string, args ...any) {
		errs = append(errs, &Error{File: file, Line: n.Line, Column: n.Column, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if root.Kind != yaml.MappingNode {
		at(root, "", "a document must be a mapping with apiVersion, kind, metadata and spec; got %s", describe(root))
		return nil, nil, errs
	}

	// 1. apiVersion and kind decide how to read the rest.
	apiKey, apiVal := mappingEntry(root, "apiVersion", 0)
	switch apiVal = deref(apiVal); {
	case apiVal == nil || isNull(apiVal):
		at(root, "apiVersion", "required; want %s", APIVersion)
	case apiVal.Kind != yaml.ScalarNode:
		at(apiKey, "apiVersion", "want %s, got %s", APIVersion, describe(apiVal))
	case apiVal.Value != APIVersion:
		at(apiKey, "apiVersion", "unsupported apiVersion %q; want %s", apiVal.Value, APIVersion)
	}
	kindKey, kindVal := mappingEntry(root, "kind", 0)
	kind := ""
	switch kindVal = deref(kindVal); {
	case kindVal == nil || isNull(kindVal):
		at(root, "kind", "required; want one of %s", strings.Join(kindNames[:], ", "))
	case kindVal.Kind != yaml.ScalarNode:
		at(kindKey, "kind", "want one of %s, got %s", strings.Join(kindNames[:], ", "), describe(kindVal))
	case newObject(kindVal.Value) == nil:
		msg := fmt.Sprintf("unknown kind %q; known kinds: %s", kindVal.Value, strings.Join(kindNames[:], ", "))
		if s := suggest(kindVal.Value, kindNames[:]); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		at(kindKey, "kind", "%s", msg)
	default:
		kind = kindVal.Value
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	id = identify(file, root, kind)

	// 2. The shape: unknown fields, duplicate keys, value types.
	obj = newObject(kind)
	if errs = checkSchema(file, root, reflect.TypeOf(obj).Elem()); len(errs) > 0 {
		return nil, id, errs
	}

	// 3. Decoding. The schema check makes failures here rare.
	if err := root.Decode(obj); err != nil {
		return nil, id, yamlErrors(file, root, err)
	}
	*obj.orig() = origin{pos: Position{File: file, Line: root.Line}, root: root}

	// 4. Meaning: required fields, values, defaults.
	v := newValidator(obj)
	v.metadata(obj.meta())
	obj.validate(v)
	obj.orig().warns = v.warns
	return obj, id, v.errs
}

// identify returns the identity of the document, or nil when it has no
// usable name.
func identify(file string, root *yaml.Node, kind string) *ident {
	at, val, found := locate(root, "metadata.name")
	if !found || val == nil || val.Kind != yaml.ScalarNode || val.Value == "" || isNull(val) {
		return nil
	}
	return &ident{kind: kind, name: val.Value, at: Position{File: file, Line: at.Line}}
}

// yamlErrors turns an error of the YAML library into Errors. Syntax errors
// read "yaml: line N: msg"; decoding errors are a *yaml.TypeError with one
// "line N: msg" per problem. When root is known, the field at the line is
// looked up.
func yamlErrors(file string, root *yaml.Node, err error) ErrorList {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var errs ErrorList
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		e := &Error{File: file, Msg: m}
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			num, msg, ok := strings.Cut(rest, ": ")
			if n, err := strconv.Atoi(num); ok && err == nil && n > 0 {
				e.Line, e.Msg = n, msg
				if root != nil {
					e.Field = pathAtLine(root, "", n, 0)
				}
			}
		}
		if root == nil && isParserProblem(e.Msg) {
			// yaml.v3 reports the line of a parser (not scanner) error
			// counting from 0, and leaves it out when it is 0.
			e.Line++
		}
		errs = append(errs, e)
	}
	return errs
}

// pathAtLine returns the path of the deepest field whose key (or list
// item) is on the line, or "" when none is.
func pathAtLine(n *yaml.Node, path string, line, depth int) string {
	if n == nil || depth > 50 {
		return ""
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinKey(path, k.Value)
			if deeper := pathAtLine(v, p, line, depth+1); deeper != "" {
				return deeper
			}
			if k.Line == line {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := joinIndex(path, i)
			if deeper := pathAtLine(item, p, line, depth+1); deeper != "" {
				return deeper
			}
			if item.Line == line {
				return p
			}
		}
	}
	return ""
}

// isParserProblem reports whether msg is one of the errors of yaml.v3's
// parser, as opposed to its scanner.
func isParserProblem(msg string) bool {
	switch msg {
	case "did not find expected <stream-start>",
		"did not find expected <document start>",
		"found undefined tag handle",
		"did not find expected node content",
		"did not find expected '-' indicator",
		"did not find expected key",
		"did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found duplicate %TAG directive":
		return true
	}
	return false
}

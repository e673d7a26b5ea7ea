package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode"
)

// Unmarshal decodes data into v. Unknown fields, duplicate keys within an
// object, and bytes after the value are errors. Keys of an object decoded
// into a struct are duplicates when they fold to the same name (as
// encoding/json matches field names); keys of an object decoded into a map
// are compared exactly, as the map keeps them.
func Unmarshal(data []byte, v any) error {
	if err := checkDuplicates(data, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// checkDuplicates walks the token stream beside the Go type each value
// decodes into (nil when unknown) and reports the first object that
// repeats a key.
func checkDuplicates(data []byte, root reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		keys     map[string]bool
		isObject bool
		wantKey  bool
		// typ is the object's type (objects) or the elements' (arrays);
		// next is the type of the value after the current key.
		typ, next reflect.Type
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		// valueType is the type of the value this token starts.
		valueType := root
		if len(stack) > 0 {
			top = stack[len(stack)-1]
			if top.isObject {
				valueType = top.next
			} else {
				valueType = top.typ
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if top != nil && top.isObject {
					top.wantKey = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, isObject: true, wantKey: true, typ: deref(valueType)})
			case '[':
				if top != nil && top.isObject {
					top.wantKey = true
				}
				var elem reflect.Type
				if vt := deref(valueType); vt != nil && (vt.Kind() == reflect.Slice || vt.Kind() == reflect.Array) {
					elem = vt.Elem()
				}
				stack = append(stack, &frame{typ: elem})
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		default:
			if top != nil && top.isObject {
				if top.wantKey {
					k, _ := t.(string)
					name := k
					if top.typ != nil && top.typ.Kind() == reflect.Struct {
						// encoding/json matches field names without regard
						// to case (with Unicode folding), so keys that fold
						// to the same name are duplicates too.
						name = fold(k)
					}
					if top.keys[name] {
						return fmt.Errorf("duplicate key %q in a JSON object", k)
					}
					top.keys[name] = true
					top.wantKey = false
					top.next = memberType(top.typ, k)
				} else {
					top.wantKey = true
				}
			}
		}
	}
}

// deref strips pointers; nil stays nil.
func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// memberType is the type of the value under key in an object of type t:
// a map's element type, or the struct field encoding/json would choose
// (an exact name first, then one that folds to it); nil when unknown.
func memberType(t reflect.Type, key string) reflect.Type {
	switch {
	case t == nil:
		return nil
	case t.Kind() == reflect.Map:
		return t.Elem()
	case t.Kind() != reflect.Struct:
		return nil
	}
	var folded reflect.Type
	var walk func(st reflect.Type) reflect.Type
	walk = func(st reflect.Type) reflect.Type {
		for i := 0; i < st.NumField(); i++ {
			f := st.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				if et := deref(f.Type); et != nil && et.Kind() == reflect.Struct {
					if found := walk(et); found != nil {
						return found
					}
				}
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if name == key {
				return f.Type
			}
			if folded == nil && fold(name) == fold(key) {
				folded = f.Type
			}
		}
		return nil
	}
	if exact := walk(t); exact != nil {
		return exact
	}
	return folded
}

// fold maps a key to a canonical form under Unicode simple case folding:
// each rune to the smallest rune in its folding orbit ("K", "k" and the
// Kelvin sign all fold to "K").
func fold(s string) string {
	return strings.Map(func(r rune) rune {
		lo := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < lo {
				lo = f
			}
		}
		return lo
	}, s)
}

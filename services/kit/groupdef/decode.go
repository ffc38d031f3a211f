package groupdef

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The decoder reads the file into a small ordered tree first, so that it can
// report every unknown key, duplicate key and wrong type with its path, which
// encoding/json (first error only, no path for unknown fields) cannot.

type nodeKind int

const (
	kindNull nodeKind = iota
	kindObject
	kindArray
	kindString
	kindNumber
	kindBool
)

var kindText = [...]string{"null", "an object", "an array", "a string", "a number", "a boolean"}

type node struct {
	kind    nodeKind
	text    string // string value or number literal
	boolean bool
	members []member
	elems   []*node
}

type member struct {
	key string
	val *node
}

// maxDepth bounds nesting; a group definition needs eight levels.
const maxDepth = 64

var errTooDeep = fmt.Errorf("JSON nests deeper than %d levels", maxDepth)

func readTree(data []byte) (*node, error) {
	if json.Valid(data) {
		if n := fastTree(data); n != nil {
			return n, nil
		}
	}
	return slowTree(data)
}

// slowTree reads the tree through json.Decoder, which words every syntax
// error with its position.
func slowTree(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := readNode(dec, 0)
	if err != nil {
		if errors.Is(err, io.EOF) && len(bytes.TrimSpace(data)) == 0 {
			return nil, errors.New("the group definition is empty")
		}
		return nil, jsonError(data, dec, err)
	}
	off := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		for off < int64(len(data)) && strings.IndexByte(" \t\r\n", data[off]) >= 0 {
			off++
		}
		line, col := position(data, off)
		return nil, fmt.Errorf("invalid JSON at line %d, column %d: unexpected data after the top-level object", line, col)
	}
	return n, nil
}

func readNode(dec *json.Decoder, depth int) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxDepth {
			return nil, errTooDeep
		}
		if t == '{' {
			n := &node{kind: kindObject}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := readNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.members = append(n.members, member{key: kt.(string), val: v})
			}
			_, err := dec.Token()
			return n, err
		}
		n := &node{kind: kindArray}
		for dec.More() {
			v, err := readNode(dec, depth+1)
			if err != nil {
				return nil, err
			}
			n.elems = append(n.elems, v)
		}
		_, err := dec.Token()
		return n, err
	case string:
		return &node{kind: kindString, text: t}, nil
	case json.Number:
		return &node{kind: kindNumber, text: string(t)}, nil
	case bool:
		return &node{kind: kindBool, boolean: t}, nil
	case nil:
		return &node{kind: kindNull}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

func jsonError(data []byte, dec *json.Decoder, err error) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		line, col := position(data, syn.Offset)
		return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, syn.Error())
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errors.New("invalid JSON: unexpected end of input")
	case errors.Is(err, errTooDeep):
		line, col := position(data, dec.InputOffset())
		return fmt.Errorf("invalid group definition at line %d, column %d: %v", line, col, err)
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

// position turns the offset of a byte into its 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// decoder turns the tree into typed values, collecting every problem.
type decoder struct {
	errs []FieldError
	bad  map[string]bool // paths whose value could not be decoded
}

func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	d.bad[path] = true
}

func (d *decoder) wrongType(path, want string, n *node) {
	got := kindText[n.kind]
	if n.kind == kindNumber {
		got = "the number " + n.text
	}
	d.fail(path, "want %s, got %s", want, got)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// sections are the top-level keys holding definition versions; each is also
// the name of its Group field.
var sections = []string{"Core", "Functions", "Subscriptions", "Devices", "Resources", "Connectors", "Loggers"}

// wrapperKeys are the keys of a get-*-definition-version response; all but
// Definition are accepted and ignored.
var wrapperKeys = []string{"Definition", "Arn", "CreationTimestamp", "Id", "Version", "NextToken"}

// group decodes the top-level object; nil when root is not an object.
func (d *decoder) group(root *node) *Group {
	if root.kind != kindObject {
		d.fail("", "want a JSON object holding the group's definition versions, got %s", kindText[root.kind])
		return nil
	}
	g := &Group{}
	gv := reflect.ValueOf(g).Elem()
	seen := map[string]bool{}
	allowed := append([]string{"GroupId", "GroupVersionId", "Name"}, sections...)
	for _, m := range root.members {
		path := m.key
		if seen[m.key] {
			d.fail(path, "duplicate key")
			continue
		}
		seen[m.key] = true
		switch m.key {
		case "GroupId", "GroupVersionId", "Name":
			d.value(m.val, gv.FieldByName(m.key), path)
			continue
		}
		if !slices.Contains(sections, m.key) {
			d.unknownKey(path, m.key, allowed)
			continue
		}
		def := d.unwrap(m.val, path)
		if def == nil {
			continue
		}
		field := gv.FieldByName(m.key)
		ptr := reflect.New(field.Type().Elem())
		// Inside a section the list key repeats the section name
		// (Subscriptions.Subscriptions); paths say it once.
		section := m.key
		if d.object(def, ptr.Elem(), path, func(key string) string {
			if key == section {
				return section
			}
			return section + "." + key
		}) {
			field.Set(ptr)
		}
	}
	return g
}

// unwrap returns the definition version of a section given either directly
// or as a get-*-definition-version response, nil when absent or unusable.
func (d *decoder) unwrap(n *node, path string) *node {
	if n.kind == kindNull {
		return nil
	}
	if n.kind != kindObject {
		d.wrongType(path, "an object", n)
		return nil
	}
	var def *node
	wrapped := false
	for _, m := range n.members {
		if m.key == "Definition" {
			wrapped = true
		}
	}
	if !wrapped {
		return n
	}
	seen := map[string]bool{}
	for _, m := range n.members {
		switch {
		case seen[m.key]:
			d.fail(join(path, m.key), "duplicate key")
		case !slices.Contains(wrapperKeys, m.key):
			d.fail(join(path, m.key), "unknown key in a definition-version wrapper; allowed keys: %s", strings.Join(wrapperKeys, ", "))
		case m.key == "Definition":
			def = m.val
		}
		seen[m.key] = true
	}
	if def != nil && def.kind != kindObject && def.kind != kindNull {
		d.wrongType(path, "an object under Definition", def)
		return nil
	}
	if def != nil && def.kind == kindNull {
		return nil
	}
	return def
}

func (d *decoder) unknownKey(path, key string, allowed []string) {
	for _, a := range allowed {
		if strings.EqualFold(a, key) {
			d.fail(path, "unknown key; did you mean %q?", a)
			return
		}
	}
	d.fail(path, "unknown key; allowed keys: %s", strings.Join(allowed, ", "))
}

type structField struct {
	name  string
	index int
}

var fieldCache sync.Map // reflect.Type -> []structField

func fieldsOf(t reflect.Type) []structField {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]structField)
	}
	var fs []structField
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		fs = append(fs, structField{name: name, index: i})
	}
	fieldCache.Store(t, fs)
	return fs
}

// object decodes n into the struct v; keyPath names the path of each key.
// It reports whether n was an object at all.
func (d *decoder) object(n *node, v reflect.Value, path string, keyPath func(string) string) bool {
	if n.kind != kindObject {
		d.wrongType(path, "an object", n)
		return false
	}
	fs := fieldsOf(v.Type())
	seen := map[string]bool{}
	for _, m := range n.members {
		p := keyPath(m.key)
		if seen[m.key] {
			d.fail(p, "duplicate key")
			continue
		}
		seen[m.key] = true
		idx := -1
		for _, f := range fs {
			if f.name == m.key {
				idx = f.index
			}
		}
		if idx < 0 {
			names := make([]string, len(fs))
			for i, f := range fs {
				names[i] = f.name
			}
			d.unknownKey(p, m.key, names)
			continue
		}
		d.value(m.val, v.Field(idx), p)
	}
	return true
}

// value decodes n into v and reports whether n had the right type. JSON null
// means "not given" for objects, lists and maps; a scalar must be written
// out or left out.
func (d *decoder) value(n *node, v reflect.Value, path string) bool {
	if n.kind == kindNull {
		switch t := v.Type(); {
		case t.Kind() == reflect.Slice, t.Kind() == reflect.Map, t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
			return true
		}
	}
	switch v.Kind() {
	case reflect.String:
		if n.kind != kindString {
			d.wrongType(path, "a string", n)
			return false
		}
		v.SetString(n.text)
	case reflect.Bool:
		if n.kind != kindBool {
			d.wrongType(path, "a boolean", n)
			return false
		}
		v.SetBool(n.boolean)
	case reflect.Int:
		if n.kind != kindNumber {
			d.wrongType(path, "an integer", n)
			return false
		}
		i, err := strconv.ParseInt(n.text, 10, 0)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				d.fail(path, "integer %s is out of range", n.text)
			} else {
				d.fail(path, "want an integer, got %s", n.text)
			}
			return false
		}
		v.SetInt(i)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if !d.value(n, p.Elem(), path) {
			return false
		}
		v.Set(p)
	case reflect.Struct:
		return d.object(n, v, path, func(key string) string { return join(path, key) })
	case reflect.Slice:
		if n.kind != kindArray {
			d.wrongType(path, "an array", n)
			return false
		}
		if len(n.elems) == 0 {
			return true
		}
		s := reflect.MakeSlice(v.Type(), len(n.elems), len(n.elems))
		for i, e := range n.elems {
			p := fmt.Sprintf("%s[%d]", path, i)
			if e.kind == kindNull {
				d.fail(p, "want a list element, got null")
				continue
			}
			d.value(e, s.Index(i), p)
		}
		v.Set(s)
	case reflect.Map:
		if n.kind != kindObject {
			d.wrongType(path, "an object of strings", n)
			return false
		}
		if len(n.members) == 0 {
			return true
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.members))
		seen := map[string]bool{}
		for _, mem := range n.members {
			p := join(path, mem.key)
			if seen[mem.key] {
				d.fail(p, "duplicate key")
				continue
			}
			seen[mem.key] = true
			if mem.val.kind != kindString {
				d.wrongType(p, "a string", mem.val)
				continue
			}
			m.SetMapIndex(reflect.ValueOf(mem.key), reflect.ValueOf(mem.val.text))
		}
		v.Set(m)
	default:
		// Unreachable with the types of this package; reported rather than
		// panicking so that no input can take a daemon down.
		d.fail(path, "groupdef cannot decode into %s", v.Type())
		return false
	}
	return true
}

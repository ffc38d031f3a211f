package groupdef

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// fastTree builds the tree of a document json.Valid accepted, in one pass
// over the bytes: json.Decoder.Token allocates several objects per token
// (a group at v1's limits, 2 MB, cost ~60 MB of garbage that way, in every
// daemon that parses it). It returns nil for anything unusual (too deep,
// a string it cannot unquote): readTree then takes the slow path, which
// also words every error.
func fastTree(data []byte) *node {
	p := fastParser{data: data}
	p.space()
	n := p.value(0)
	if n == nil {
		return nil
	}
	p.space()
	if p.i != len(p.data) {
		return nil
	}
	return n
}

type fastParser struct {
	data []byte
	i    int
}

func (p *fastParser) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) value(depth int) *node {
	if p.i >= len(p.data) {
		return nil
	}
	switch c := p.data[p.i]; {
	case c == '{':
		if depth >= maxDepth {
			return nil
		}
		p.i++
		n := &node{kind: kindObject}
		p.space()
		if p.i < len(p.data) && p.data[p.i] == '}' {
			p.i++
			return n
		}
		for {
			p.space()
			key, ok := p.str()
			if !ok {
				return nil
			}
			p.space()
			if p.i >= len(p.data) || p.data[p.i] != ':' {
				return nil
			}
			p.i++
			p.space()
			v := p.value(depth + 1)
			if v == nil {
				return nil
			}
			n.members = append(n.members, member{key: key, val: v})
			p.space()
			if p.i >= len(p.data) {
				return nil
			}
			switch p.data[p.i] {
			case ',':
				p.i++
			case '}':
				p.i++
				return n
			default:
				return nil
			}
		}
	case c == '[':
		if depth >= maxDepth {
			return nil
		}
		p.i++
		n := &node{kind: kindArray}
		p.space()
		if p.i < len(p.data) && p.data[p.i] == ']' {
			p.i++
			return n
		}
		for {
			p.space()
			v := p.value(depth + 1)
			if v == nil {
				return nil
			}
			n.elems = append(n.elems, v)
			p.space()
			if p.i >= len(p.data) {
				return nil
			}
			switch p.data[p.i] {
			case ',':
				p.i++
			case ']':
				p.i++
				return n
			default:
				return nil
			}
		}
	case c == '"':
		s, ok := p.str()
		if !ok {
			return nil
		}
		return &node{kind: kindString, text: s}
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(string(p.data[p.i:min(p.i+5, len(p.data))]), lit) {
				p.i += len(lit)
				switch lit {
				case "null":
					return &node{kind: kindNull}
				default:
					return &node{kind: kindBool, boolean: lit == "true"}
				}
			}
		}
		return nil
	case c == '-' || c >= '0' && c <= '9':
		start := p.i
		for p.i < len(p.data) {
			switch b := p.data[p.i]; {
			case b >= '0' && b <= '9', b == '-', b == '+', b == '.', b == 'e', b == 'E':
				p.i++
				continue
			}
			break
		}
		return &node{kind: kindNumber, text: string(p.data[start:p.i])}
	}
	return nil
}

// str reads a JSON string at p.i; escapes and invalid UTF-8 go through
// encoding/json.
func (p *fastParser) str() (string, bool) {
	if p.i >= len(p.data) || p.data[p.i] != '"' {
		return "", false
	}
	start := p.i
	escaped := false
	for j := start + 1; j < len(p.data); j++ {
		switch p.data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			p.i = j + 1
			if raw := p.data[start+1 : j]; !escaped && utf8.Valid(raw) {
				return string(raw), true
			}
			// Escapes, or bytes that are not UTF-8 (encoding/json turns
			// those into U+FFFD, as the slow path does).
			var s string
			if json.Unmarshal(p.data[start:j+1], &s) != nil {
				return "", false
			}
			return s, true
		}
	}
	return "", false
}

package service

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vigilhq/vigil/domain"
)

// Text from outside is checked once, where it enters (DecodeStrict for
// JSON bodies, CheckID and CheckText for path ids, query parameters and
// headers), so that everything behind the edge holds text PostgreSQL can
// store and a reader can trust: valid UTF-8, no NUL, no control characters
// where a line is expected, and a documented length (docs/api.md, "Text
// inputs").
//
// A string field of a body names its rule with the struct tag
// `text:"kind[,max]"`; a field without the tag is a line of at most
// DefaultLineMax characters. On a map the rule applies to keys and values,
// on a slice to its elements.

// TextKind is the kind of a text input: which characters it may hold.
type TextKind string

// The kinds of text input.
const (
	// TextID is an identifier: 1 to MaxIDLength ASCII letters, digits,
	// '-', '_' or '.', not starting with '.'. Every id Vigil issues (group,
	// technician, tenant, session, webhook, erasure, recording) is one.
	TextID TextKind = "id"
	// TextLine is one line of text: no control characters at all.
	TextLine TextKind = "line"
	// TextFree is free text (chat, notes, reasons, descriptions): line
	// feeds and tabs are allowed, other control characters are not.
	TextFree TextKind = "text"
)

// The default and fixed limits of the text kinds. Lengths of lines and
// free text count characters (Unicode code points); ids are ASCII.
const (
	MaxIDLength    = 128
	DefaultLineMax = 256
	DefaultFreeMax = 10000
)

// TextRule is how one text input is checked: its kind and its maximum
// length in characters (0: the kind's default).
type TextRule struct {
	Kind TextKind
	Max  int
}

// Check returns an error of code invalid when s breaks the rule; field
// names the input in the message. The message never repeats the value.
func (r TextRule) Check(field, s string) error {
	if r.Kind == TextID {
		if !ValidID(s) {
			return domain.Errorf(domain.CodeInvalid, "%s: want 1 to %d letters, digits, '-', '_' or '.', not starting with '.'", field, MaxIDLength)
		}
		return nil
	}
	if !utf8.ValidString(s) {
		return domain.Errorf(domain.CodeInvalid, "%s: not valid UTF-8", field)
	}
	max := r.Max
	if max <= 0 {
		max = DefaultLineMax
		if r.Kind == TextFree {
			max = DefaultFreeMax
		}
	}
	n := 0
	for _, c := range s {
		n++
		switch {
		case c == utf8.RuneError:
			return domain.Errorf(domain.CodeInvalid,
				"%s: holds U+FFFD at character %d, the mark of text broken before it arrived (invalid UTF-8 or a lone surrogate escape)", field, n)
		case c == '\n' || c == '\t':
			if r.Kind != TextFree {
				return domain.Errorf(domain.CodeInvalid, "%s: control character %U at character %d (one line expected)", field, c, n)
			}
		case isControl(c):
			return domain.Errorf(domain.CodeInvalid, "%s: control character %U at character %d", field, c, n)
		}
	}
	if n > max {
		return domain.Errorf(domain.CodeInvalid, "%s: %d characters, at most %d", field, n, max)
	}
	return nil
}

// isControl reports whether c is a C0 or C1 control character or DEL.
func isControl(c rune) bool { return c < 0x20 || (c >= 0x7f && c <= 0x9f) }

// ValidID reports whether s is an id: 1 to MaxIDLength ASCII letters,
// digits, '-', '_' or '.', not starting with '.' (so that no id is "." or
// "..", nor names a hidden file).
func ValidID(s string) bool {
	if s == "" || len(s) > MaxIDLength || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// CheckID returns an error of code invalid unless s is an id (ValidID);
// field names it in the message.
func CheckID(field, s string) error { return TextRule{Kind: TextID}.Check(field, s) }

// CheckText walks v (a pointer to a decoded body, or a value) and checks
// every string in it by the `text` tag of its field; it returns the first
// problem as an error of code invalid. Empty strings pass: whether a field
// is required is the command's business, not the text's. It panics on a
// malformed text tag, a programming mistake that any test of the body
// finds.
func CheckText(v any) error {
	return walkText(reflect.ValueOf(v), "", TextRule{Kind: TextLine})
}

// checkRawText refuses a body that is not valid UTF-8 or whose whole value
// is null, before it is decoded: encoding/json would quietly replace
// invalid bytes with U+FFFD and take null as an empty object.
func checkRawText(body []byte) error {
	if !utf8.Valid(body) {
		return domain.Errorf(domain.CodeInvalid, "the body is not valid UTF-8")
	}
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		return domain.Errorf(domain.CodeInvalid, "a null body: want a JSON object")
	}
	return nil
}

func walkText(v reflect.Value, path string, rule TextRule) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return walkText(v.Elem(), path, rule)
	case reflect.String:
		if v.Len() == 0 {
			return nil
		}
		return rule.Check(fieldName(path), v.String())
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return nil // raw JSON or bytes: decoded and checked by whoever uses them
		}
		for i := 0; i < v.Len(); i++ {
			if err := walkText(v.Index(i), path+"["+strconv.Itoa(i)+"]", rule); err != nil {
				return err
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			k := it.Key()
			// The key is checked first, so that the value's message may
			// name it.
			if err := walkText(k, path+" (a key)", rule); err != nil {
				return err
			}
			if err := walkText(it.Value(), path+"."+fmt.Sprint(k.Interface()), rule); err != nil {
				return err
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, r, skip := fieldRule(f)
			if skip {
				continue
			}
			p := path
			if !f.Anonymous || name != f.Name {
				p = joinPath(path, name)
			}
			if err := walkText(v.Field(i), p, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// fieldRule reads a field's JSON name and text rule.
func fieldRule(f reflect.StructField) (name string, rule TextRule, skip bool) {
	name = f.Name
	if tag, ok := f.Tag.Lookup("json"); ok {
		n, _, _ := strings.Cut(tag, ",")
		if n == "-" {
			return "", rule, true
		}
		if n != "" {
			name = n
		}
	}
	rule = TextRule{Kind: TextLine}
	if tag, ok := f.Tag.Lookup("text"); ok {
		kind, max, _ := strings.Cut(tag, ",")
		rule.Kind = TextKind(kind)
		switch rule.Kind {
		case TextID, TextLine, TextFree:
		default:
			panic(fmt.Sprintf("service: field %s: unknown text kind %q", f.Name, kind))
		}
		if max != "" {
			n, err := strconv.Atoi(max)
			if err != nil || n <= 0 {
				panic(fmt.Sprintf("service: field %s: bad text maximum %q", f.Name, max))
			}
			rule.Max = n
		}
	}
	return name, rule, false
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func fieldName(path string) string {
	if path == "" {
		return "the value"
	}
	return path
}

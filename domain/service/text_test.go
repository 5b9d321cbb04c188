package service_test

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// textBody has one field of each text kind.
type textBody struct {
	ID     string            `json:"id" text:"id"`
	Line   string            `json:"line" text:"line,10"`
	Free   string            `json:"free" text:"text,20"`
	Plain  string            `json:"plain"`
	Fields map[string]string `json:"fields" text:"line,8"`
	List   []string          `json:"list" text:"id"`
	Nested struct {
		Name *string `json:"name" text:"line,5"`
	} `json:"nested"`
}

func TestDecodeStrictText(t *testing.T) {
	cases := []struct {
		name string
		body string
		ok   bool
	}{
		{"Good", `{"id":"a-b_c.9","line":"héllo wörd","free":"two\nlines\tand tab","plain":"x","fields":{"k":"v"},"list":["x"],"nested":{"name":"ada"}}`, true},
		{"Empty", `{}`, true},
		{"EmptyStrings", `{"id":"","line":"","free":""}`, true},
		{"NullBody", `null`, false},
		{"NullBodyWithSpace", " \n null \t", false},
		{"NullField", `{"nested":{"name":null}}`, true},
		{"InvalidUTF8", "{\"line\":\"\xff\xfe\"}", false},
		{"InvalidUTF8OutsideStrings", "{\"line\":\"a\"}\xff", false},
		{"OverlongUTF8", "{\"line\":\"\xc0\xaf\"}", false},
		{"EncodedSurrogate", "{\"line\":\"\xed\xa0\x80\"}", false},
		{"LoneSurrogateEscape", `{"line":"\ud800"}`, false},
		{"LoneLowSurrogateEscape", `{"free":"a\udc00b"}`, false},
		{"SurrogatePairEscape", `{"line":"\ud83d\ude00"}`, true},
		{"ReplacementEscape", `{"line":"\ufffd"}`, false},
		{"ReplacementLiteral", "{\"line\":\"\xef\xbf\xbd\"}", false},
		{"NULInLine", `{"line":"a\u0000b"}`, false},
		{"NULInFree", `{"free":"a\u0000b"}`, false},
		{"NULInPlain", `{"plain":"\u0000"}`, false},
		{"NULInMapValue", `{"fields":{"k":"\u0000"}}`, false},
		{"NULInMapKey", `{"fields":{"\u0000":"v"}}`, false},
		{"NULInList", `{"list":["\u0000"]}`, false},
		{"NULInNested", `{"nested":{"name":"\u0000"}}`, false},
		{"NewlineInLine", `{"line":"a\nb"}`, false},
		{"TabInLine", `{"line":"a\tb"}`, false},
		{"CRInFree", `{"free":"a\rb"}`, false},
		{"EscapeInFree", `{"free":"\u001b[31m"}`, false},
		{"DELInLine", `{"line":"\u007f"}`, false},
		{"C1InLine", `{"line":"\u0085"}`, false},
		{"LineAtMax", `{"line":"éééééééééé"}`, true},
		{"LineOverMax", `{"line":"ééééééééééé"}`, false},
		{"FreeOverMax", `{"free":"` + strings.Repeat("x", 21) + `"}`, false},
		{"PlainDefaultMax", `{"plain":"` + strings.Repeat("x", service.DefaultLineMax) + `"}`, true},
		{"PlainOverDefaultMax", `{"plain":"` + strings.Repeat("x", service.DefaultLineMax+1) + `"}`, false},
		{"MapKeyOverMax", `{"fields":{"123456789":"v"}}`, false},
		{"IDTraversal", `{"id":"../../etc/passwd"}`, false},
		{"IDDotFirst", `{"id":".hidden"}`, false},
		{"IDSpace", `{"id":"a b"}`, false},
		{"IDColon", `{"id":"a:b"}`, false},
		{"IDNonASCII", `{"id":"é"}`, false},
		{"IDAtMax", `{"id":"` + strings.Repeat("a", service.MaxIDLength) + `"}`, true},
		{"IDOverMax", `{"id":"` + strings.Repeat("a", service.MaxIDLength+1) + `"}`, false},
		{"IDInList", `{"list":["ok","no/pe"]}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b textBody
			err := service.DecodeStrict([]byte(c.body), &b)
			if c.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, c.ok)
			}
			if err != nil {
				if domain.ErrorCode(err) != domain.CodeInvalid {
					t.Errorf("code %s, want invalid", domain.ErrorCode(err))
				}
				if msg := domain.ErrorMessage(err); !utf8.ValidString(msg) || strings.ContainsRune(msg, 0) || len(msg) > 300 {
					t.Errorf("the message repeats the bad text: %q", msg)
				}
				return
			}
			assertStorable(t, &b)
		})
	}
}

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{
		"abcdefghijklmnop": true, "0195f1c2-7d1e-7cc2-9d7b-0123456789ab": true, "rec-1.webm": true,
		"": false, ".": false, "..": false, "a\x00": false, "\xff\xfe": false, "a/b": false, "a%2fb": false,
		strings.Repeat("z", 128): true, strings.Repeat("z", 129): false,
	} {
		if err := service.CheckID("id", id); (err == nil) != ok {
			t.Errorf("CheckID(%q) = %v, want ok %v", id, err, ok)
		}
	}
}

// assertStorable fails unless every string reachable from v is valid
// UTF-8 without NUL: what PostgreSQL's text type stores. It is written
// apart from the code under test, so that it checks that code.
func assertStorable(t *testing.T, v any) {
	t.Helper()
	var walk func(reflect.Value, string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.String:
			if s := v.String(); !utf8.ValidString(s) || strings.ContainsRune(s, 0) || strings.ContainsRune(s, utf8.RuneError) {
				t.Errorf("%s = %q: not storable text", path, s)
			}
		case reflect.Slice, reflect.Array:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), path+"[]")
			}
		case reflect.Map:
			it := v.MapRange()
			for it.Next() {
				walk(it.Key(), path+" key")
				walk(it.Value(), path+" value")
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i), path+"."+v.Type().Field(i).Name)
				}
			}
		}
	}
	walk(reflect.ValueOf(v), "")
}

package httpapi

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// FuzzDecodeBody feeds arbitrary bodies to the decoder of every request
// body but the session commands (FuzzDecodeCommand in domain/service has
// those): sessions, groups and their policy, technicians, login, TOTP,
// reasons, webhooks, GDPR, relay. It must never panic, must refuse with
// code invalid, and whatever it accepts must hold only text PostgreSQL can
// store: valid UTF-8, no NUL, no U+FFFD.
func FuzzDecodeBody(f *testing.F) {
	seeds := []string{
		`{"queue":"shared","channel":"web","customer":{"name":"Ada","email":"ada@example.com"},"custom_fields":{"cfield0":"x"},"tracking_id":"T-1"}`,
		`{"queue":"shared","channel":"a\u0000b"}`,
		`{"name":"Level 1","permissions":{"reboot":true},"policy":{"store_chat":true},"ip_allowlist":["10.0.0.0/8"]}`,
		`{"email":"a@example.com","name":"A","group_id":"g1","password":"Correct-Horse-9","must_change_password":true}`,
		`{"email":"a@example.com","password":"x","totp":"123456","new_password":"y","tenant":"t1"}`,
		`{"url":"https://example.com:65536/h","event_types":["session.started"],"group_id":"g","description":"CRM\n"}`,
		`{"subject":"session:0123","delay":"0s","scope":"all","reason":"asked"}`,
		`{"side":"customer","session":"abc","token":"vt_x"}`,
		`{"sessions":[{"tenant":"t","session":"s"}]}`,
		`{"reason":"\ud800"}`,
		"{\"code\":\"\xff\"}",
		`null`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	kinds := bodies()
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		v := kinds[int(kind)%len(kinds)]()
		err := service.DecodeStrict(body, v)
		if err != nil {
			if domain.ErrorCode(err) != domain.CodeInvalid {
				t.Fatalf("refusal with code %s: %v", domain.ErrorCode(err), err)
			}
			return
		}
		if g, ok := v.(*groupBody); ok {
			if _, err := g.change(); err != nil {
				if domain.ErrorCode(err) != domain.CodeInvalid {
					t.Fatalf("policy refusal with code %s: %v", domain.ErrorCode(err), err)
				}
				return
			}
		}
		storable(t, reflect.ValueOf(v), reflect.TypeOf(v).String())
	})
}

// TestBodiesRefuseNUL decodes into every body a JSON object whose every
// string field holds a NUL: each must be refused.
func TestBodiesRefuseNUL(t *testing.T) {
	for _, mk := range bodies() {
		v := mk()
		typ := reflect.TypeOf(v).Elem()
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			var val string
			switch k := f.Type.Kind(); {
			case k == reflect.String || (k == reflect.Pointer && f.Type.Elem().Kind() == reflect.String):
				val = `"a\u0000b"`
			case k == reflect.Map:
				val = `{"k":"a\u0000b"}`
			case (k == reflect.Slice || k == reflect.Pointer) && strings.Contains(f.Type.String(), "[]string"):
				val = `["a\u0000b"]`
			default:
				continue
			}
			body := `{"` + name + `":` + val + `}`
			if err := service.DecodeStrict([]byte(body), mk()); domain.ErrorCode(err) != domain.CodeInvalid {
				t.Errorf("%s %s: err %v, want invalid", typ, body, err)
			}
		}
	}
}

func storable(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			storable(t, v.Elem(), path)
		}
	case reflect.String:
		if s := v.String(); !utf8.ValidString(s) || strings.ContainsRune(s, 0) || strings.ContainsRune(s, utf8.RuneError) {
			t.Fatalf("%s = %q: not storable text", path, s)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // the raw policy, decoded and checked by change()
		}
		for i := 0; i < v.Len(); i++ {
			storable(t, v.Index(i), path+"[]")
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			storable(t, it.Key(), path+" key")
			storable(t, it.Value(), path+" value")
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				storable(t, v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		}
	}
}

// TestTextInputsDocumented keeps docs/api.md's "Text inputs" table true:
// every text rule of a body or command field appears in a row that names
// the field, with the same kind and maximum.
func TestTextInputsDocumented(t *testing.T) {
	raw, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Text inputs\n")
	if !ok {
		t.Fatal("docs/api.md has no Text inputs section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	type row struct {
		fields []string
		kind   string
		max    string
	}
	var rows []row
	backticked := regexp.MustCompile("`([^`]+)`")
	number := regexp.MustCompile(`[0-9][0-9,]*`)
	for _, line := range strings.Split(section, "\n") {
		cols := strings.Split(strings.Trim(line, "| "), " | ")
		if !strings.HasPrefix(line, "| ") || len(cols) != 3 || cols[0] == "field" {
			continue
		}
		r := row{kind: cols[1], max: strings.ReplaceAll(number.FindString(cols[2]), ",", "")}
		for _, m := range backticked.FindAllStringSubmatch(cols[0], -1) {
			r.fields = append(r.fields, m[1])
		}
		if strings.HasPrefix(cols[0], "ids:") {
			r.fields = append(r.fields, "group_id", "technician_id", "to_technician", "recording_id", "tenant", "session")
		}
		rows = append(rows, r)
	}
	if len(rows) < 10 {
		t.Fatalf("the Text inputs table has %d rows", len(rows))
	}
	kinds := map[service.TextKind]string{service.TextID: "id", service.TextLine: "line", service.TextFree: "free text"}
	var check func(owner string, typ reflect.Type)
	check = func(owner string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if f.Type.Kind() == reflect.Struct {
				check(owner, f.Type)
			}
			tag, ok := f.Tag.Lookup("text")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			kind, max, _ := strings.Cut(tag, ",")
			if kind == string(service.TextID) {
				max = strconv.Itoa(service.MaxIDLength)
			}
			found := false
			for _, r := range rows {
				if r.kind == kinds[service.TextKind(kind)] && r.max == max && slices.ContainsFunc(r.fields, func(s string) bool {
					return s == name || strings.HasSuffix(s, " "+name) || strings.HasPrefix(s, name+" ")
				}) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s.%s (%s, at most %s) has no row in docs/api.md's Text inputs", owner, name, kinds[service.TextKind(kind)], max)
			}
		}
	}
	for _, mk := range bodies() {
		v := mk()
		check(reflect.TypeOf(v).String(), reflect.TypeOf(v))
	}
	for _, typ := range service.CommandTypes() {
		check(typ, reflect.TypeOf(service.CommandPrototype(typ)))
	}
}

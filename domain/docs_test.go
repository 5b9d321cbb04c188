package domain_test

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/vigilhq/vigil/domain"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the generated catalogue section of docs/events.md")

const (
	docsPath   = "../docs/events.md"
	beginMark  = "<!-- BEGIN GENERATED CATALOGUE: go test ./domain -run TestEventsDoc -update-docs -->"
	endMark    = "<!-- END GENERATED CATALOGUE -->"
	streamKind = "session technician group tenant compliance"
)

// TestEventsDoc keeps docs/events.md true to the code: its catalogue
// section is generated from the registry and the payloads' doc comments,
// and must match byte for byte.
func TestEventsDoc(t *testing.T) {
	want := generateCatalogueDoc(t)
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	begin, end := strings.Index(doc, beginMark), strings.Index(doc, endMark)
	if begin < 0 || end < begin {
		t.Fatalf("%s lacks the generated-catalogue markers", docsPath)
	}
	got := doc[begin+len(beginMark) : end]
	if *updateDocs {
		doc = doc[:begin+len(beginMark)] + want + doc[end:]
		if err := os.WriteFile(docsPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s is out of date; run go test ./domain -run TestEventsDoc -update-docs (-want +got):\n%s", docsPath, diff)
	}
	for _, name := range domain.Catalogue.Types() {
		if !strings.Contains(doc, "### `"+name+"`") {
			t.Errorf("%s does not document %s", docsPath, name)
		}
	}
}

// goDocs holds the doc comments of the package's types and struct fields.
type goDocs struct {
	types  map[string]string            // type name → doc
	fields map[string]map[string]string // type name → field name → doc
}

func parseDocs(t *testing.T) goDocs {
	t.Helper()
	d := goDocs{types: map[string]string{}, fields: map[string]map[string]string{}}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(".", e.Name()), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				doc := ts.Doc
				if doc == nil {
					doc = gd.Doc
				}
				d.types[ts.Name.Name] = oneLine(doc.Text())
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				d.fields[ts.Name.Name] = map[string]string{}
				for _, fld := range st.Fields.List {
					for _, n := range fld.Names {
						d.fields[ts.Name.Name][n.Name] = oneLine(fld.Doc.Text())
					}
				}
			}
		}
	}
	return d
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func streamOf(name string) string {
	switch strings.SplitN(name, ".", 2)[0] {
	case "session":
		return "`session-<guid>`"
	case "technician":
		return "`technician-<id>`"
	case "group":
		return "`group-<id>`"
	case "tenant":
		return "`tenant-<id>`"
	}
	return "`tenant-<id>` or the subject's stream"
}

var nested = []reflect.Type{
	reflect.TypeOf(domain.PermissionSet{}),
	reflect.TypeOf(domain.GroupPolicy{}),
	reflect.TypeOf(domain.PasswordPolicy{}),
	reflect.TypeOf(domain.Retention{}),
}

func docType(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(time.Time{}):
		return "timestamp (RFC 3339)"
	case reflect.TypeOf(uuid.UUID{}):
		return "uuid"
	case reflect.TypeOf(domain.Seconds(0)):
		return "integer (seconds)"
	}
	if slices.Contains(nested, t) {
		return "[" + t.Name() + "](#" + strings.ToLower(t.Name()) + ")"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Map:
		return "object of " + docType(t.Elem())
	case reflect.Slice:
		return "array of " + docType(t.Elem())
	}
	panic("docType: unhandled " + t.String())
}

func fieldTable(b *strings.Builder, t reflect.Type, docs goDocs, sealed []string) {
	if t.NumField() == 0 {
		b.WriteString("No fields.\n\n")
		return
	}
	b.WriteString("| field | type | sealed | optional | description |\n| --- | --- | --- | --- | --- |\n")
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		var isSealed, optional string
		if slices.Contains(sealed, name) {
			isSealed = "**sealed**"
		}
		if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
			optional = "yes"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s |\n", name, docType(f.Type), isSealed, optional, docs.fields[t.Name()][f.Name])
	}
	b.WriteString("\n")
}

func generateCatalogueDoc(t *testing.T) string {
	docs := parseDocs(t)
	var b strings.Builder
	b.WriteString("\n\n## Actions, permissions and consent\n\n")
	b.WriteString("| action | permission needed | customer consent | consent relied on | stopped by forced recording | runs until ended |\n| --- | --- | --- | --- | --- | --- |\n")
	yes := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	for _, a := range domain.Actions() {
		r, _ := a.Rule()
		perm, consentOf := "none", "—"
		if r.Permission != "" {
			perm = "`" + string(r.Permission) + "`"
		}
		if r.Consent {
			consentOf = "`" + string(r.ConsentAction) + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", a, perm, yes(r.Consent), consentOf, yes(r.ForcedRecording), yes(r.Continuous))
	}
	b.WriteString("\n")
	for _, kind := range strings.Fields(streamKind) {
		fmt.Fprintf(&b, "\n## %s events\n\n", kind)
		for _, name := range domain.Catalogue.Types() {
			if !strings.HasPrefix(name, kind+".") {
				continue
			}
			spec, _ := domain.Catalogue.Spec(name)
			p, _ := domain.Catalogue.New(name)
			typ := reflect.TypeOf(p).Elem()
			fmt.Fprintf(&b, "### `%s`\n\n", name)
			fmt.Fprintf(&b, "Go type `%s` · stream %s · schema %d", typ.Name(), streamOf(name), spec.Schema)
			if _, isAction := p.(domain.ActionPayload); isAction {
				a := reflect.ValueOf(p).Elem().Interface().(domain.ActionPayload).Action()
				rule, _ := a.Rule()
				fmt.Fprintf(&b, " · privileged action `%s`: permission `%s`, consent of `%s`", a, rule.Permission, rule.ConsentAction)
			}
			b.WriteString("\n\n")
			if d := docs.types[typ.Name()]; d != "" {
				b.WriteString(d + "\n\n")
			}
			fieldTable(&b, typ, docs, spec.Sealed)
		}
	}
	b.WriteString("\n## Nested objects\n\n")
	for _, typ := range nested {
		fmt.Fprintf(&b, "### %s\n\n%s\n\n", typ.Name(), docs.types[typ.Name()])
		fieldTable(&b, typ, docs, nil)
	}
	return b.String()
}

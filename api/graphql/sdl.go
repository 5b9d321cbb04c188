package gql

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/graphql-go/graphql"
	"github.com/vigilhq/vigil/domain"
)

// SchemaSDL returns the schema in the GraphQL schema definition language,
// types and fields in name order, as GET /graphql/schema.graphql serves
// it. graphql-go has no schema printer; this one prints what the schema
// uses: objects, input objects, enums, custom scalars, descriptions,
// arguments with their defaults and deprecations.
func (s *Server) SchemaSDL() string { return s.sdl }

// serveSchema serves GET /graphql/schema.graphql (through GraphQL()): the
// SDL, to the same bearer credentials as /graphql.
func (s *Server) serveSchema(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		requestError(w, http.StatusMethodNotAllowed, coded(domain.CodeInvalid, "use GET"))
		return
	}
	if _, c := s.authenticate(w, r); c != nil {
		requestError(w, statusOf(c.code), c)
		return
	}
	w.Header().Set("Content-Type", "application/graphql; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(s.sdl))
}

var builtinScalars = map[string]bool{"String": true, "Int": true, "Float": true, "Boolean": true, "ID": true}

func printSDL(schema *graphql.Schema) string {
	var names []string
	for name := range schema.TypeMap() {
		if !strings.HasPrefix(name, "__") && !builtinScalars[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	if q := schema.QueryType(); q != nil && q.Name() != "Query" {
		b.WriteString("schema {\n  query: " + q.Name() + "\n}\n\n")
	}
	for i, name := range names {
		if i > 0 {
			b.WriteString("\n")
		}
		switch t := schema.TypeMap()[name].(type) {
		case *graphql.Object:
			description(&b, "", t.Description())
			b.WriteString("type " + name + " {\n")
			fields := t.Fields()
			for _, fn := range sortedKeys(fields) {
				f := fields[fn]
				description(&b, "  ", f.Description)
				b.WriteString("  " + f.Name)
				printArguments(&b, f.Args)
				b.WriteString(": " + f.Type.String())
				deprecated(&b, f.DeprecationReason)
				b.WriteString("\n")
			}
			b.WriteString("}\n")
		case *graphql.InputObject:
			description(&b, "", t.Description())
			b.WriteString("input " + name + " {\n")
			fields := t.Fields()
			for _, fn := range sortedKeys(fields) {
				f := fields[fn]
				description(&b, "  ", f.Description())
				b.WriteString("  " + f.Name() + ": " + f.Type.String() + defaultValue(f.DefaultValue) + "\n")
			}
			b.WriteString("}\n")
		case *graphql.Enum:
			description(&b, "", t.Description())
			b.WriteString("enum " + name + " {\n")
			for _, v := range t.Values() {
				description(&b, "  ", v.Description)
				b.WriteString("  " + v.Name)
				deprecated(&b, v.DeprecationReason)
				b.WriteString("\n")
			}
			b.WriteString("}\n")
		case *graphql.Scalar:
			description(&b, "", t.Description())
			b.WriteString("scalar " + name + "\n")
		}
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func printArguments(b *strings.Builder, args []*graphql.Argument) {
	if len(args) == 0 {
		return
	}
	sorted := append([]*graphql.Argument(nil), args...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name() < sorted[j].Name() })
	described := false
	for _, a := range sorted {
		described = described || a.Description() != ""
	}
	if !described {
		parts := make([]string, len(sorted))
		for i, a := range sorted {
			parts[i] = a.Name() + ": " + a.Type.String() + defaultValue(a.DefaultValue)
		}
		b.WriteString("(" + strings.Join(parts, ", ") + ")")
		return
	}
	b.WriteString("(\n")
	for _, a := range sorted {
		description(b, "    ", a.Description())
		b.WriteString("    " + a.Name() + ": " + a.Type.String() + defaultValue(a.DefaultValue) + "\n")
	}
	b.WriteString("  )")
}

func defaultValue(v any) string {
	if v == nil {
		return ""
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return " = " + string(raw)
}

func deprecated(b *strings.Builder, reason string) {
	if reason == "" {
		return
	}
	raw, _ := json.Marshal(reason)
	b.WriteString(" @deprecated(reason: " + string(raw) + ")")
}

// description writes a description as a block string, or a plain string
// when it holds a quote sequence a block string cannot.
func description(b *strings.Builder, indent, d string) {
	if d == "" {
		return
	}
	if strings.Contains(d, `"""`) || strings.Contains(d, "\\") || strings.HasSuffix(d, `"`) {
		raw, _ := json.Marshal(d)
		b.WriteString(indent + string(raw) + "\n")
		return
	}
	b.WriteString(indent + `"""` + "\n")
	for _, line := range strings.Split(d, "\n") {
		b.WriteString(indent + line + "\n")
	}
	b.WriteString(indent + `"""` + "\n")
}

package gql

import (
	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
)

// Introspection (__schema, __type) reads the schema in memory, not the
// database, so it is bounded apart from the depth and complexity limits:
// its cost is the number of fields the executor resolves, which
// introspectionCost counts exactly by walking the schema alongside the
// selection, and it nests deeper than reports do (graphql-js's
// getIntrospectionQuery reaches 15 levels through nine ofType).
const (
	// MaxIntrospectionDepth bounds the depth of a query under __schema or
	// __type.
	MaxIntrospectionDepth = 20
	// MaxIntrospectionFields bounds the fields resolved to answer a
	// query's __schema and __type fields together: more than twice what
	// getIntrospectionQuery costs over Vigil's schema (TestIntrospection
	// keeps it so), far from what nesting types → fields → type → fields
	// costs.
	MaxIntrospectionFields = 10000
)

// inputValue is an __InputValue: an argument or an input object field.
type inputValue struct{ typ graphql.Type }

// schemaNode is the __Schema.
type schemaNode struct{}

// introspection counts what a query's introspection fields resolve.
type introspection struct {
	schema *graphql.Schema
	frags  map[string]*ast.FragmentDefinition
	vars   map[string]any
	fields int // resolved so far
}

// root counts root field f (__schema or __type) at level.
func (in *introspection) root(f *ast.Field) {
	var node any = schemaNode{}
	if f.Name.Value == "__type" {
		node = nil
		for _, a := range f.Arguments {
			if a.Name.Value != "name" {
				continue
			}
			var name string
			switch v := a.Value.(type) {
			case *ast.StringValue:
				name = v.Value
			case *ast.Variable:
				name, _ = in.vars[v.Name.Value].(string)
			}
			if t := in.schema.Type(name); t != nil {
				node = t
			}
		}
	}
	in.fields++
	if node != nil {
		in.selections(node, f.SelectionSet)
	}
}

func (in *introspection) over() bool { return in.fields > MaxIntrospectionFields }

// selections counts set selected on node.
func (in *introspection) selections(node any, set *ast.SelectionSet) {
	if set == nil || in.over() {
		return
	}
	for _, sel := range set.Selections {
		switch s := sel.(type) {
		case *ast.Field:
			if in.fields++; in.over() {
				return
			}
			if s.SelectionSet == nil {
				continue
			}
			for _, c := range children(in.schema, node, s.Name.Value) {
				in.selections(c, s.SelectionSet)
				if in.over() {
					return
				}
			}
		case *ast.InlineFragment:
			in.selections(node, s.SelectionSet)
		case *ast.FragmentSpread:
			// Cycles are refused before this runs (checkDocument).
			if f := in.frags[s.Name.Value]; f != nil {
				in.selections(node, f.SelectionSet)
			}
		}
	}
}

// children returns the values field resolves to on node: nothing for a
// null or a field that is not an object, one value for an object, each
// item for a list.
func children(schema *graphql.Schema, node any, field string) []any {
	switch n := node.(type) {
	case schemaNode:
		switch field {
		case "types":
			out := make([]any, 0, len(schema.TypeMap()))
			for _, t := range schema.TypeMap() {
				out = append(out, t)
			}
			return out
		case "queryType":
			return []any{schema.QueryType()}
		case "mutationType":
			if t := schema.MutationType(); t != nil {
				return []any{t}
			}
		case "subscriptionType":
			if t := schema.SubscriptionType(); t != nil {
				return []any{t}
			}
		case "directives":
			out := make([]any, 0, len(schema.Directives()))
			for _, d := range schema.Directives() {
				out = append(out, d)
			}
			return out
		}
	case graphql.Type:
		switch field {
		case "fields":
			if o, ok := n.(*graphql.Object); ok {
				out := make([]any, 0, len(o.Fields()))
				for _, f := range o.Fields() {
					out = append(out, f)
				}
				return out
			}
		case "inputFields":
			if o, ok := n.(*graphql.InputObject); ok {
				out := make([]any, 0, len(o.Fields()))
				for _, f := range o.Fields() {
					out = append(out, inputValue{f.Type})
				}
				return out
			}
		case "enumValues":
			if e, ok := n.(*graphql.Enum); ok {
				out := make([]any, 0, len(e.Values()))
				for _, v := range e.Values() {
					out = append(out, v)
				}
				return out
			}
		case "interfaces":
			if o, ok := n.(*graphql.Object); ok {
				out := make([]any, 0, len(o.Interfaces()))
				for _, i := range o.Interfaces() {
					out = append(out, graphql.Type(i))
				}
				return out
			}
		case "ofType":
			switch w := n.(type) {
			case *graphql.List:
				return []any{w.OfType}
			case *graphql.NonNull:
				return []any{w.OfType}
			}
		}
	case *graphql.FieldDefinition:
		switch field {
		case "args":
			return arguments(n.Args)
		case "type":
			return []any{n.Type}
		}
	case *graphql.Directive:
		if field == "args" {
			return arguments(n.Args)
		}
	case inputValue:
		if field == "type" {
			return []any{n.typ}
		}
	}
	return nil
}

func arguments(args []*graphql.Argument) []any {
	out := make([]any, 0, len(args))
	for _, a := range args {
		out = append(out, inputValue{a.Type})
	}
	return out
}

// nullDescriptions replaces the empty descriptions of the introspection
// answers under names of data by null: graphql-go answers "" for a type or
// field without one, which the spec has null and which graphql-js prints
// as an empty block string.
func nullDescriptions(data any, names []string) {
	root, ok := data.(map[string]any)
	if !ok {
		return
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "description" && e == "" {
					x[k] = nil
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, n := range names {
		walk(root[n])
	}
}

package gql

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/graphql-go/graphql/language/ast"
	"github.com/vigilhq/vigil/domain"
)

// A request is checked in stages, each bounded before the next may start,
// so that no query text, however hostile, costs more than a small, fixed
// amount of CPU and memory:
//
//  1. scan, a single pass over the bytes before anything is parsed: size,
//     tokens, bracket nesting, aliases, directives, fragments and spreads.
//     The parser is recursive descent and graphql-go's validator compares
//     fields pairwise; both are safe once these are bounded.
//  2. checks on the parsed document, before graphql-go validates it:
//     fragment cycles (which make graphql-go's validator recurse until the
//     stack overflows), string literals, then the depth and complexity of
//     the selected operation with fragments expanded (limits.go).
//  3. graphql-go's validation without OverlappingFieldsCanBeMergedRule,
//     whose cost grows with the square of the fields sharing a response
//     name; mergeable replaces it in time linear in the expanded document.
//
// The numbers are in docs/api.md.

// Lexical limits of a query, checked before it is parsed.
const (
	// MaxQueryBytes bounds the query text.
	MaxQueryBytes = 16 << 10
	// MaxQueryTokens bounds its tokens (names, punctuators, values).
	MaxQueryTokens = 4000
	// MaxQueryNesting bounds how deep brackets nest: selection sets,
	// arguments, lists and input objects together.
	MaxQueryNesting = 32
	// MaxAliases bounds the aliases of a query.
	MaxAliases = 100
	// MaxDirectives bounds the directives (@include, @skip) of a query.
	MaxDirectives = 50
	// MaxFragments bounds the fragment definitions of a query.
	MaxFragments = 30
	// MaxSpreads bounds the fragment spreads (...Name and inline ... on).
	MaxSpreads = 200
	// MaxVariableRefs bounds the variables ($name) a query defines and
	// uses, together.
	MaxVariableRefs = 100
	// MaxValueTokens bounds the tokens of one list or input object value
	// (graphql-go prints a refused value at a cost that grows with the
	// square of its size).
	MaxValueTokens = 100
	// MaxStringArgument bounds the bytes of one string argument or
	// variable value.
	MaxStringArgument = 1024
	// maxExpanded bounds the selections a check visits with fragments
	// expanded (a fragment spread twice in each of several fragments
	// expands exponentially).
	maxExpanded = 10000
)

// CodeQueryTooLarge is the code of a query refused by the lexical limits
// or whose fragments expand past maxExpanded selections.
const CodeQueryTooLarge = "query_too_large"

// scan checks the query text against the lexical limits in one pass. It
// does not parse: anything it does not understand is left for the parser to
// refuse.
func scan(q string) *codedError {
	if len(q) > MaxQueryBytes {
		return coded(CodeQueryTooLarge, "the query is %d bytes; the limit is %d", len(q), MaxQueryBytes)
	}
	if !utf8.ValidString(q) {
		return coded(domain.CodeInvalid, "the query is not valid UTF-8")
	}
	const (
		selection = 'S' // a selection set
		object    = 'O' // an input object value
	)
	var (
		stack                                           []byte
		tokens, aliases, directives, fragments, spreads int
		variables, values, valueTokens                  int
		prevName                                        bool
	)
	tooMany := func(what string, limit int) *codedError {
		return coded(CodeQueryTooLarge, "the query has more than %d %s", limit, what)
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',':
			i++
			continue
		case strings.HasPrefix(q[i:], "\uFEFF"):
			i += len("\uFEFF")
			continue
		case c == '#':
			for i < len(q) && q[i] != '\n' && q[i] != '\r' {
				i++
			}
			continue
		case c < 0x20:
			return coded(domain.CodeInvalid, "the query holds the control character U+%04X at byte %d", c, i)
		}
		if tokens++; tokens > MaxQueryTokens {
			return tooMany("tokens", MaxQueryTokens)
		}
		if values > 0 {
			if valueTokens++; valueTokens > MaxValueTokens {
				return coded(CodeQueryTooLarge, "a list or input object value of the query has more than %d tokens", MaxValueTokens)
			}
		}
		name := false
		switch {
		case strings.HasPrefix(q[i:], `"""`):
			i += 3
			for i < len(q) && !strings.HasPrefix(q[i:], `"""`) {
				if strings.HasPrefix(q[i:], `\"""`) {
					i += 4
					continue
				}
				i++
			}
			i += 3
		case c == '"':
			for i++; i < len(q) && q[i] != '"' && q[i] != '\n' && q[i] != '\r'; i++ {
				if q[i] == '\\' {
					i++
				}
			}
			i++
		case strings.HasPrefix(q[i:], "..."):
			if spreads++; spreads > MaxSpreads {
				return tooMany("fragment spreads", MaxSpreads)
			}
			i += 3
		case c == '{' || c == '(' || c == '[':
			kind := c
			if c == '{' {
				kind = object
				if len(stack) == 0 || stack[len(stack)-1] == selection {
					kind = selection
				}
			}
			if stack = append(stack, kind); len(stack) > MaxQueryNesting {
				return coded(CodeQueryTooDeep, "the query nests brackets more than %d deep", MaxQueryNesting)
			}
			if kind == object || kind == '[' {
				if values++; values == 1 {
					valueTokens = 1
				}
			}
			i++
		case c == '}' || c == ')' || c == ']':
			if n := len(stack); n > 0 {
				if stack[n-1] == object || stack[n-1] == '[' {
					values--
				}
				stack = stack[:n-1]
			}
			i++
		case c == '$':
			if variables++; variables > MaxVariableRefs {
				return tooMany("variable definitions and uses", MaxVariableRefs)
			}
			i++
		case c == ':':
			if prevName && len(stack) > 0 && stack[len(stack)-1] == selection {
				if aliases++; aliases > MaxAliases {
					return tooMany("aliases", MaxAliases)
				}
			}
			i++
		case c == '@':
			if directives++; directives > MaxDirectives {
				return tooMany("directives", MaxDirectives)
			}
			i++
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i + 1
			for j < len(q) && (q[j] == '_' || q[j] >= 'a' && q[j] <= 'z' || q[j] >= 'A' && q[j] <= 'Z' || q[j] >= '0' && q[j] <= '9') {
				j++
			}
			if len(stack) == 0 && q[i:j] == "fragment" {
				if fragments++; fragments > MaxFragments {
					return tooMany("fragment definitions", MaxFragments)
				}
			}
			name = true
			i = j
		case c == '-' || c >= '0' && c <= '9':
			j := i + 1
			for j < len(q) && (q[j] >= '0' && q[j] <= '9' || q[j] == '.' || q[j] == 'e' || q[j] == 'E' || q[j] == '+' || q[j] == '-') {
				j++
			}
			i = j
		default:
			_, n := utf8.DecodeRuneInString(q[i:])
			i += n
		}
		prevName = name
	}
	return nil
}

// checkDocument runs the checks that need the parsed document but not the
// schema: fragment cycles and string literals. graphql-go's validator
// recurses without end on a fragment cycle, so this must run first.
func checkDocument(doc *ast.Document) *codedError {
	frags := fragmentsOf(doc)
	if c := fragmentCycle(frags); c != nil {
		return c
	}
	for _, d := range doc.Definitions {
		var err *codedError
		switch d := d.(type) {
		case *ast.OperationDefinition:
			for _, v := range d.VariableDefinitions {
				if err = checkValue(v.DefaultValue, 0); err != nil {
					break
				}
			}
			if err == nil {
				err = checkDirectives(d.Directives)
			}
			if err == nil {
				err = checkSelections(d.SelectionSet, 0)
			}
		case *ast.FragmentDefinition:
			if err = checkDirectives(d.Directives); err == nil {
				err = checkSelections(d.SelectionSet, 0)
			}
		default:
			err = coded(domain.CodeInvalid, "a query document holds only operations and fragments")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fragmentsOf maps the fragment names of doc to their first definition
// (the validator refuses duplicates).
func fragmentsOf(doc *ast.Document) map[string]*ast.FragmentDefinition {
	m := map[string]*ast.FragmentDefinition{}
	for _, d := range doc.Definitions {
		if f, ok := d.(*ast.FragmentDefinition); ok && f.Name != nil {
			if _, dup := m[f.Name.Value]; !dup {
				m[f.Name.Value] = f
			}
		}
	}
	return m
}

// spreadsOf returns the names of the fragments set spreads, directly or
// in inline fragments and sub-selections, in order and without repeats.
func spreadsOf(set *ast.SelectionSet) []string {
	var out []string
	seen := map[string]bool{}
	stack := []*ast.SelectionSet{set}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s == nil {
			continue
		}
		for _, sel := range s.Selections {
			switch x := sel.(type) {
			case *ast.Field:
				stack = append(stack, x.SelectionSet)
			case *ast.InlineFragment:
				stack = append(stack, x.SelectionSet)
			case *ast.FragmentSpread:
				if x.Name != nil && !seen[x.Name.Value] {
					seen[x.Name.Value] = true
					out = append(out, x.Name.Value)
				}
			}
		}
	}
	return out
}

// fragmentCycle returns an error naming a cycle of fragment spreads, or
// nil. It is a depth-first search over at most MaxFragments fragments.
func fragmentCycle(frags map[string]*ast.FragmentDefinition) *codedError {
	names := make([]string, 0, len(frags))
	edges := map[string][]string{}
	for n, f := range frags {
		names = append(names, n)
		edges[n] = spreadsOf(f.SelectionSet)
	}
	sort.Strings(names)
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(n string) *codedError
	visit = func(n string) *codedError {
		state[n] = onPath
		path = append(path, n)
		for _, m := range edges[n] {
			if _, ok := frags[m]; !ok {
				continue // unknown: the validator names it
			}
			switch state[m] {
			case onPath:
				i := len(path) - 1
				for path[i] != m {
					i--
				}
				cycle := append(append([]string{}, path[i:]...), m)
				return coded(domain.CodeInvalid, "fragment %s spreads itself (%s); fragments may not form cycles", m, strings.Join(cycle, " → "))
			case unseen:
				if err := visit(m); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		state[n] = done
		return nil
	}
	for _, n := range names {
		if state[n] == unseen {
			if err := visit(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSelections checks the string literals under set. level is bounded
// by scan's nesting limit.
func checkSelections(set *ast.SelectionSet, level int) *codedError {
	if set == nil || level > MaxQueryNesting {
		return nil
	}
	for _, sel := range set.Selections {
		var err *codedError
		switch x := sel.(type) {
		case *ast.Field:
			for _, a := range x.Arguments {
				if err = checkValue(a.Value, level); err != nil {
					return err
				}
			}
			if err = checkDirectives(x.Directives); err == nil {
				err = checkSelections(x.SelectionSet, level+1)
			}
		case *ast.InlineFragment:
			if err = checkDirectives(x.Directives); err == nil {
				err = checkSelections(x.SelectionSet, level+1)
			}
		case *ast.FragmentSpread:
			err = checkDirectives(x.Directives)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func checkDirectives(ds []*ast.Directive) *codedError {
	for _, d := range ds {
		for _, a := range d.Arguments {
			if err := checkValue(a.Value, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkValue checks the string literals of an argument value.
func checkValue(v ast.Value, level int) *codedError {
	if level > MaxQueryNesting {
		return nil
	}
	switch x := v.(type) {
	case *ast.StringValue:
		return checkText(x.Value)
	case *ast.ListValue:
		for _, e := range x.Values {
			if err := checkValue(e, level+1); err != nil {
				return err
			}
		}
	case *ast.ObjectValue:
		for _, f := range x.Fields {
			if err := checkValue(f.Value, level+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkText refuses a string argument that PostgreSQL or a reader could
// not take: invalid UTF-8, a control character (a NUL, which PostgreSQL
// refuses in text, among them), or more than MaxStringArgument bytes. No
// argument of this schema (ids, filters, cursors, dates) holds any.
func checkText(s string) *codedError {
	switch {
	case len(s) > MaxStringArgument:
		return coded(domain.CodeInvalid, "a string argument is %d bytes; the limit is %d", len(s), MaxStringArgument)
	case !utf8.ValidString(s):
		return coded(domain.CodeInvalid, "a string argument is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return coded(domain.CodeInvalid, "a string argument holds the control character U+%04X", r)
		}
	}
	return nil
}

// checkVariables checks the strings of the request's variables as
// checkText does, and their nesting.
func checkVariables(vars map[string]any) *codedError {
	var walk func(v any, level int) *codedError
	walk = func(v any, level int) *codedError {
		if level > MaxQueryNesting {
			return coded(CodeQueryTooDeep, "the variables nest more than %d deep", MaxQueryNesting)
		}
		switch x := v.(type) {
		case string:
			return checkText(x)
		case []any:
			for _, e := range x {
				if err := walk(e, level+1); err != nil {
					return err
				}
			}
		case map[string]any:
			for k, e := range x {
				if err := checkText(k); err != nil {
					return err
				}
				if err := walk(e, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(map[string]any(vars), 0)
}

// mergeable replaces graphql-go's OverlappingFieldsCanBeMergedRule: fields
// that answer under one response name in one selection set (fragments
// expanded) must be the same field with the same arguments, and their
// sub-selections, merged, must follow the same rule. The schema has only
// object types (no interfaces or unions, TestSchemaHasNoAbstractTypes), so
// every field of a merged selection set has one parent type and the
// spec's rule reduces to this. It visits each selection of the expanded
// document once, at most maxExpanded in all.
type mergeable struct {
	frags  map[string]*ast.FragmentDefinition
	visits int
}

// check checks every operation of doc.
func (m *mergeable) check(doc *ast.Document) *codedError {
	for _, d := range doc.Definitions {
		if op, ok := d.(*ast.OperationDefinition); ok {
			if err := m.merge([]*ast.SelectionSet{op.SelectionSet}, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *mergeable) merge(sets []*ast.SelectionSet, level int) *codedError {
	if level > MaxQueryNesting {
		return nil // the depth limit refuses it
	}
	var order []string
	groups := map[string][]*ast.Field{}
	spread := map[string]bool{}
	var collect func(set *ast.SelectionSet) *codedError
	collect = func(set *ast.SelectionSet) *codedError {
		if set == nil {
			return nil
		}
		for _, sel := range set.Selections {
			if m.visits++; m.visits > maxExpanded {
				return coded(CodeQueryTooLarge, "the query expands to more than %d selections", maxExpanded)
			}
			switch x := sel.(type) {
			case *ast.Field:
				name := x.Name.Value
				if x.Alias != nil {
					name = x.Alias.Value
				}
				if _, ok := groups[name]; !ok {
					order = append(order, name)
				}
				groups[name] = append(groups[name], x)
			case *ast.InlineFragment:
				if err := collect(x.SelectionSet); err != nil {
					return err
				}
			case *ast.FragmentSpread:
				// A fragment spread twice into one selection set adds
				// nothing the first did not.
				if f := m.frags[x.Name.Value]; f != nil && !spread[x.Name.Value] {
					spread[x.Name.Value] = true
					if err := collect(f.SelectionSet); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	for _, s := range sets {
		if err := collect(s); err != nil {
			return err
		}
	}
	for _, name := range order {
		fields := groups[name]
		first := fields[0]
		args := argumentsKey(first.Arguments)
		var subs []*ast.SelectionSet
		for _, f := range fields {
			switch {
			case f.Name.Value != first.Name.Value:
				return coded(domain.CodeInvalid, `fields %q conflict because %s and %s are different fields; use different aliases on the fields to fetch both`,
					name, first.Name.Value, f.Name.Value)
			case argumentsKey(f.Arguments) != args:
				return coded(domain.CodeInvalid, `fields %q conflict because they have differing arguments; use different aliases on the fields to fetch both`, name)
			case (f.SelectionSet == nil) != (first.SelectionSet == nil):
				return coded(domain.CodeInvalid, `fields %q conflict because only some of them select sub-fields`, name)
			}
			if f.SelectionSet != nil {
				subs = append(subs, f.SelectionSet)
			}
		}
		if len(subs) > 0 {
			if err := m.merge(subs, level+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// argumentsKey is a canonical text of a field's arguments: sorted by name,
// values printed with input object fields sorted too.
func argumentsKey(args []*ast.Argument) string {
	if len(args) == 0 {
		return ""
	}
	sorted := append([]*ast.Argument(nil), args...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name.Value < sorted[j].Name.Value })
	var b strings.Builder
	for _, a := range sorted {
		b.WriteString(a.Name.Value)
		b.WriteByte(':')
		writeValue(&b, a.Value, 0)
		b.WriteByte(',')
	}
	return b.String()
}

func writeValue(b *strings.Builder, v ast.Value, level int) {
	if level > MaxQueryNesting {
		return
	}
	switch x := v.(type) {
	case *ast.Variable:
		b.WriteString("$" + x.Name.Value)
	case *ast.StringValue:
		b.WriteString(strconv.Quote(x.Value))
	case *ast.IntValue:
		b.WriteString(x.Value)
	case *ast.FloatValue:
		b.WriteString(x.Value)
	case *ast.BooleanValue:
		fmt.Fprint(b, x.Value)
	case *ast.EnumValue:
		b.WriteString(x.Value)
	case *ast.ListValue:
		b.WriteByte('[')
		for _, e := range x.Values {
			writeValue(b, e, level+1)
			b.WriteByte(',')
		}
		b.WriteByte(']')
	case *ast.ObjectValue:
		fields := append([]*ast.ObjectField(nil), x.Fields...)
		sort.SliceStable(fields, func(i, j int) bool { return fields[i].Name.Value < fields[j].Name.Value })
		b.WriteByte('{')
		for _, f := range fields {
			b.WriteString(f.Name.Value + ":")
			writeValue(b, f.Value, level+1)
			b.WriteByte(',')
		}
		b.WriteByte('}')
	default:
		b.WriteString("null")
	}
}

package gql

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
)

// Default list sizes, which also price a list in the complexity count when
// the query does not say `first`.
const (
	defaultPageSize     = 20  // connections
	defaultTimelineSize = 100 // a session's chat, notes, files, consents, actions
	recordingsEstimate  = 10  // a session's recordings (not paged)
	performanceEstimate = 100 // technicianPerformance rows
	statusEstimate      = 10  // projections
	webhooksEstimate    = 20  // a tenant's webhook subscriptions (not paged)
)

// limits checks a validated document's selected operation against the
// depth and complexity limits before anything is executed, and checks every
// `first` against the page-size cap. Complexity counts one per field, and
// multiplies the cost of a list field's selection by the number of items it
// may return (its `first`, or the default).
// Introspection fields are counted apart (introspection.go).
type limits struct {
	maxDepth, maxComplexity, maxPage int
	schema                           *graphql.Schema
	vars                             map[string]any
	fragments                        map[string]*ast.FragmentDefinition
	visits                           int
	intro                            *introspection
	introDepth                       int
	introNames                       []string // response names of the introspection fields
	err                              error
}

func (l *limits) check(doc *ast.Document, operation string) error {
	l.fragments = map[string]*ast.FragmentDefinition{}
	var op *ast.OperationDefinition
	ops := 0
	for _, d := range doc.Definitions {
		switch d := d.(type) {
		case *ast.FragmentDefinition:
			l.fragments[d.Name.Value] = d
		case *ast.OperationDefinition:
			ops++
			if operation == "" || (d.Name != nil && d.Name.Value == operation) {
				op = d
			}
		}
	}
	if op == nil || (operation == "" && ops > 1) {
		return nil // the executor reports the missing operation
	}
	l.intro = &introspection{schema: l.schema, frags: l.fragments, vars: l.vars}
	depth, cost := l.walk(op.SelectionSet, 1, true, l.maxDepth)
	switch {
	case l.err != nil:
		return l.err
	case l.introDepth > MaxIntrospectionDepth:
		return coded(CodeQueryTooDeep, "the query's introspection is more than %d levels deep", MaxIntrospectionDepth)
	case l.intro.fields > MaxIntrospectionFields:
		return coded(CodeQueryTooComplex, "the query's introspection resolves more than %d fields", MaxIntrospectionFields)
	case depth > l.maxDepth:
		return coded(CodeQueryTooDeep, "the query is %d levels deep; the limit is %d", depth, l.maxDepth)
	case cost > l.maxComplexity:
		return coded(CodeQueryTooComplex, "the query's complexity is %d; the limit is %d (each field counts 1, lists count once per item of `first`)", cost, l.maxComplexity)
	}
	return nil
}

// walk returns the depth reached under set (fields at level) and its cost.
// It stops going deeper past maxDepth.
func (l *limits) walk(set *ast.SelectionSet, level int, root bool, maxDepth int) (int, int) {
	if set == nil || l.err != nil {
		return level - 1, 0
	}
	if level > maxDepth+1 {
		return level, 0 // too deep already: no need to look further
	}
	depth, cost := level-1, 0
	for _, sel := range set.Selections {
		if l.visits++; l.visits > maxExpanded {
			// Fragments that expand exponentially.
			l.err = coded(CodeQueryTooLarge, "the query expands to more than %d selections", maxExpanded)
			return depth, cost
		}
		var d, c int
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name.Value == "__typename" {
				d, c = level, 0
				break
			}
			if root && (s.Name.Value == "__schema" || s.Name.Value == "__type") {
				name := s.Name.Value
				if s.Alias != nil {
					name = s.Alias.Value
				}
				l.introNames = append(l.introNames, name)
				l.intro.root(s)
				id, _ := l.walk(s.SelectionSet, level+1, false, MaxIntrospectionDepth)
				l.introDepth = max(l.introDepth, id)
				d, c = level, 0
				break
			}
			d, c = l.walk(s.SelectionSet, level+1, false, maxDepth)
			d = max(d, level)
			c = 1 + l.multiplier(s, root)*c
		case *ast.InlineFragment:
			d, c = l.walk(s.SelectionSet, level, root, maxDepth)
		case *ast.FragmentSpread:
			if f := l.fragments[s.Name.Value]; f != nil {
				d, c = l.walk(f.SelectionSet, level, root, maxDepth)
			}
		}
		depth = max(depth, d)
		cost = min(cost+c, math.MaxInt32)
	}
	return depth, cost
}

// multiplier returns how many items list field f may return.
func (l *limits) multiplier(f *ast.Field, root bool) int {
	for _, a := range f.Arguments {
		if a.Name.Value != "first" {
			continue
		}
		n, given, ok := l.intValue(a.Value)
		if !given {
			break
		}
		if !ok {
			return l.maxPage // the executor refuses it
		}
		if n < 0 || n > l.maxPage {
			if l.err == nil {
				l.err = errInvalid("first must be between 0 and %d, not %d", l.maxPage, n)
			}
			return 0
		}
		return n
	}
	switch name := f.Name.Value; {
	case root && (name == "sessions" || name == "chatLog" || name == "logins" || name == "lockouts" ||
		name == "fileTransfers" || name == "consents" || name == "recordings" || name == "webhookDeliveries"):
		return defaultPageSize
	case root && name == "technicianPerformance":
		return performanceEstimate
	case root && name == "webhooks":
		return webhooksEstimate
	case root && name == "projectionStatus":
		return statusEstimate
	case !root && (name == "chat" || name == "notes" || name == "files" || name == "consents" || name == "actions"):
		return defaultTimelineSize
	case !root && name == "recordings":
		return recordingsEstimate
	}
	return 1
}

// intValue returns the value of an Int argument, whether it was given (a
// null or an absent variable leaves the default), and whether it is an
// integer.
func (l *limits) intValue(v ast.Value) (n int, given, ok bool) {
	switch v := v.(type) {
	case *ast.IntValue:
		n, err := strconv.Atoi(v.Value)
		return n, true, err == nil
	case *ast.Variable:
		switch x := l.vars[v.Name.Value].(type) {
		case nil:
			return 0, false, false
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > math.MaxInt32 {
				return 0, true, false
			}
			return int(x), true, true
		case json.Number:
			n, err := strconv.Atoi(strings.TrimSpace(x.String()))
			return n, true, err == nil
		case int:
			return x, true, true
		}
	}
	return 0, true, false
}

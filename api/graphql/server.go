package gql

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/gqlerrors"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/source"
	"github.com/graphql-go/graphql/language/visitor"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
)

// Defaults of Config.
const (
	DefaultMaxDepth      = 10
	DefaultMaxComplexity = 1000
	DefaultMaxPageSize   = 100
	DefaultQueryTimeout  = 5 * time.Second
	// DefaultCSVRange is the period a CSV report covers without from.
	DefaultCSVRange = 30 * 24 * time.Hour
	// maxQueryBody bounds a POST body: a query of MaxQueryBytes, escaped
	// as JSON, and its variables.
	maxQueryBody = 64 << 10
)

// Config wires the reporting API.
type Config struct {
	// Reports reads the reporting tables (required).
	Reports Reports
	// Opener opens sealed personal values (required).
	Opener Opener
	// Index computes the customer e-mail blind index (required).
	Index BlindIndexer
	// Auth resolves bearer credentials (required).
	Auth Authenticator
	// Production turns the query page at GET /graphql off.
	Production bool
	// MaxDepth is the deepest field nesting a query may have (default
	// DefaultMaxDepth).
	MaxDepth int
	// MaxComplexity bounds a query's cost (default DefaultMaxComplexity):
	// one per field, a list's selection counted once per item of its
	// `first`.
	MaxComplexity int
	// MaxPageSize is the largest `first` (default DefaultMaxPageSize);
	// larger is refused with code invalid.
	MaxPageSize int
	// QueryTimeout bounds a query's execution (default
	// DefaultQueryTimeout); past it the answer carries code timeout.
	QueryTimeout time.Duration
	// Logger receives internal errors (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock for CSV default ranges (default time.Now).
	Now func() time.Time
}

// Server serves GraphQL and CSV reports. It is safe for concurrent use.
type Server struct {
	cfg      Config
	reports  Reports
	opener   Opener
	index    BlindIndexer
	log      *slog.Logger
	schema   graphql.Schema
	sdl      string
	pageInfo *graphql.Object
}

// New returns the reporting API over c. It returns an error when a required
// dependency is missing.
func New(c Config) (*Server, error) {
	if c.Reports == nil || c.Opener == nil || c.Index == nil || c.Auth == nil {
		return nil, errors.New("gql: Reports, Opener, Index and Auth are required")
	}
	if c.MaxDepth <= 0 {
		c.MaxDepth = DefaultMaxDepth
	}
	if c.MaxComplexity <= 0 {
		c.MaxComplexity = DefaultMaxComplexity
	}
	if c.MaxPageSize <= 0 {
		c.MaxPageSize = DefaultMaxPageSize
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	s := &Server{cfg: c, reports: c.Reports, opener: c.Opener, index: c.Index, log: c.Logger}
	schema, err := s.buildSchema()
	if err != nil {
		return nil, err
	}
	s.schema = schema
	s.sdl = printSDL(&s.schema)
	return s, nil
}

// GraphQL returns the handler of /graphql, as GraphQL over HTTP has it:
// POST runs a query ({query, variables, operationName} as JSON); GET runs
// a query operation given as ?query=&variables=&operationName=, and
// without a query serves the query page unless in production. An Accept
// of application/graphql-response+json is answered in that media type,
// anything else in application/json. Routed at /graphql/schema.graphql
// too, it serves the schema's SDL (GET).
func (s *Server) GraphQL() http.Handler { return http.HandlerFunc(s.serveGraphQL) }

// response is a GraphQL answer.
// Data is absent when the request failed before execution began, and null
// (next to errors) when execution failed at the root.
type response struct {
	Data   json.RawMessage `json:"data,omitempty"`
	Errors []answerError   `json:"errors,omitempty"`
}

type answerError struct {
	Message    string         `json:"message"`
	Locations  any            `json:"locations,omitempty"`
	Path       []any          `json:"path,omitempty"`
	Extensions map[string]any `json:"extensions"`
}

// Media types of GraphQL answers (GraphQL over HTTP).
const (
	mediaJSON            = "application/json"
	mediaGraphQLResponse = "application/graphql-response+json"
)

// writeGraphQL writes r with the media type already chosen for the
// request (answerMedia), else application/json.
func writeGraphQL(w http.ResponseWriter, status int, r response) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", mediaJSON)
	}
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "2") // the database is out of reach for a moment
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(r)
}

// requestError answers a request that runs no query.
func requestError(w http.ResponseWriter, status int, c *codedError) {
	writeGraphQL(w, status, response{Errors: []answerError{{Message: c.msg, Extensions: c.Extensions()}}})
}

// statusOf maps the codes a request fails with as a whole to HTTP statuses.
func statusOf(code string) int {
	switch code {
	case domain.CodeUnauthenticated:
		return http.StatusUnauthorized
	case domain.CodeForbidden:
		return http.StatusForbidden
	case domain.CodeInvalid, CodeQueryTooDeep, CodeQueryTooComplex, CodeQueryTooLarge:
		return http.StatusBadRequest
	case CodeTimeout:
		return http.StatusGatewayTimeout
	case domain.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// authenticate resolves the request's bearer credential and checks that
// its role may read reports: ingest and relay keys, and technician tokens
// limited to enrolling a second factor, may not.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (service.Principal, *codedError) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	bearer = strings.TrimSpace(bearer)
	if !ok || bearer == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
		return service.Principal{}, coded(domain.CodeUnauthenticated, "missing bearer credential")
	}
	p, err := s.cfg.Auth.Authenticate(r.Context(), bearer)
	if err != nil {
		c, internal := toCoded(r.Context(), err)
		if internal {
			s.log.Error("authenticate", "path", r.URL.Path, "err", err)
		}
		if c.code == domain.CodeUnauthenticated {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil", error="invalid_token"`)
		}
		return service.Principal{}, c
	}
	switch {
	case !p.Is(service.RoleAdmin, service.RoleAuditor, service.RoleIntegration, service.RoleTechnician):
		return p, coded(domain.CodeForbidden, "%s credentials may not read reports", p.Role)
	case p.Scope != service.ScopeFull:
		return p, coded(domain.CodeForbidden, "this token may only enrol a second factor")
	}
	return p, nil
}

// answerMedia returns the media type the request accepts for answers.
func answerMedia(r *http.Request) string {
	for _, a := range r.Header.Values("Accept") {
		for _, part := range strings.Split(a, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), mediaGraphQLResponse) {
				return mediaGraphQLResponse
			}
		}
	}
	return mediaJSON
}

func (s *Server) serveGraphQL(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/schema.graphql") {
		s.serveSchema(w, r)
		return
	}
	get := r.Method == http.MethodGet && r.URL.Query().Has("query")
	switch {
	case r.Method == http.MethodPost, get:
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		if !s.cfg.Production {
			servePage(w)
			return
		}
		fallthrough
	default:
		w.Header().Set("Allow", "GET, POST")
		requestError(w, http.StatusMethodNotAllowed, coded(domain.CodeInvalid, "use POST with a JSON body {query, variables, operationName}, or GET with ?query="))
		return
	}
	w.Header().Set("Content-Type", answerMedia(r))
	w.Header().Add("Vary", "Accept")
	p, cerr := s.authenticate(w, r)
	if cerr != nil {
		requestError(w, statusOf(cerr.code), cerr)
		return
	}
	var body struct {
		Query         string         `json:"query"`
		Variables     map[string]any `json:"variables"`
		OperationName string         `json:"operationName"`
	}
	if get {
		q := r.URL.Query()
		body.Query, body.OperationName = q.Get("query"), q.Get("operationName")
		if v := q.Get("variables"); v != "" {
			if len(v) > maxQueryBody {
				requestError(w, http.StatusRequestEntityTooLarge, coded(CodeQueryTooLarge, "variables are larger than %d bytes", maxQueryBody))
				return
			}
			if err := json.Unmarshal([]byte(v), &body.Variables); err != nil {
				requestError(w, http.StatusBadRequest, coded(domain.CodeInvalid, "variables must be a JSON object"))
				return
			}
		}
	} else {
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxQueryBody))
		if err != nil {
			requestError(w, http.StatusRequestEntityTooLarge, coded(CodeQueryTooLarge, "the request body is unreadable or larger than %d bytes", maxQueryBody))
			return
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			requestError(w, http.StatusBadRequest, coded(domain.CodeInvalid, "the body must be a JSON object {query, variables, operationName}"))
			return
		}
	}
	if strings.TrimSpace(body.Query) == "" {
		requestError(w, http.StatusBadRequest, coded(domain.CodeInvalid, "query is empty"))
		return
	}
	status, res := s.run(r.Context(), p, body.Query, body.Variables, body.OperationName, get)
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", "POST")
	}
	writeGraphQL(w, status, res)
}

// maxValidationErrors bounds the errors validation reports: graphql-go
// finds each error's line and column with a regular expression over the
// query text before it, so that errors cost time in proportion to their
// number times the query's size.
const maxValidationErrors = 10

// validationRules are graphql-go's specified rules but
// OverlappingFieldsCanBeMergedRule, whose cost grows with the square of the
// fields sharing a response name (and which recurses without end on a
// fragment cycle): mergeable replaces it. Each rule stops working once
// maxValidationErrors are reported.
var validationRules = func() []graphql.ValidationRuleFn {
	skip := reflect.ValueOf(graphql.OverlappingFieldsCanBeMergedRule).Pointer()
	var rules []graphql.ValidationRuleFn
	for _, r := range graphql.SpecifiedRules {
		if reflect.ValueOf(r).Pointer() != skip {
			rules = append(rules, capErrors(r))
		}
	}
	return rules
}()

// capErrors wraps every visit function of rule so that it does nothing
// once the validation has maxValidationErrors errors.
func capErrors(rule graphql.ValidationRuleFn) graphql.ValidationRuleFn {
	return func(vc *graphql.ValidationContext) *graphql.ValidationRuleInstance {
		in := rule(vc)
		if in == nil || in.VisitorOpts == nil {
			return in
		}
		wrap := func(fn visitor.VisitFunc) visitor.VisitFunc {
			if fn == nil {
				return nil
			}
			return func(p visitor.VisitFuncParams) (string, any) {
				if len(vc.Errors()) >= maxValidationErrors {
					return visitor.ActionNoChange, nil
				}
				return fn(p)
			}
		}
		o := *in.VisitorOpts
		o.Enter, o.Leave = wrap(o.Enter), wrap(o.Leave)
		if o.KindFuncMap != nil {
			m := make(map[string]visitor.NamedVisitFuncs, len(o.KindFuncMap))
			for k, f := range o.KindFuncMap {
				m[k] = visitor.NamedVisitFuncs{Kind: wrap(f.Kind), Enter: wrap(f.Enter), Leave: wrap(f.Leave)}
			}
			o.KindFuncMap = m
		}
		wrapMap := func(src map[string]visitor.VisitFunc) map[string]visitor.VisitFunc {
			if src == nil {
				return nil
			}
			m := make(map[string]visitor.VisitFunc, len(src))
			for k, f := range src {
				m[k] = wrap(f)
			}
			return m
		}
		o.EnterKindMap, o.LeaveKindMap = wrapMap(o.EnterKindMap), wrapMap(o.LeaveKindMap)
		return &graphql.ValidationRuleInstance{VisitorOpts: &o}
	}
}

// run checks, parses, validates, checks the limits of and executes one
// query for p, each stage bounded before the next starts (guard.go). The
// query's time limit covers every stage, and ctx's end (the client gone)
// ends it too.
// A GET request (readOnly) may only run a query operation.
func (s *Server) run(ctx context.Context, p service.Principal, query string, vars map[string]any, operation string, readOnly bool) (int, response) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	refuse := func(c *codedError) (int, response) {
		return statusOf(c.code), response{Errors: []answerError{{Message: c.msg, Extensions: c.Extensions()}}}
	}
	if c := scan(query); c != nil {
		return refuse(c)
	}
	doc, err := parser.Parse(parser.ParseParams{Source: source.NewSource(&source.Source{Body: []byte(query), Name: "GraphQL request"})})
	if err != nil {
		return http.StatusBadRequest, response{Errors: s.answerErrors(ctx, []gqlerrors.FormattedError{gqlerrors.FormatError(err)}, domain.CodeInvalid)}
	}
	if c := checkDocument(doc); c != nil {
		return refuse(c)
	}
	if readOnly {
		for _, d := range doc.Definitions {
			if op, ok := d.(*ast.OperationDefinition); ok && (operation == "" || op.Name != nil && op.Name.Value == operation) &&
				op.Operation != ast.OperationTypeQuery {
				return http.StatusMethodNotAllowed, response{Errors: []answerError{{Message: "only queries may be sent with GET; use POST",
					Extensions: map[string]any{"code": domain.CodeInvalid}}}}
			}
		}
	}
	if c := checkVariables(vars); c != nil {
		return refuse(c)
	}
	l := &limits{maxDepth: s.cfg.MaxDepth, maxComplexity: s.cfg.MaxComplexity, maxPage: s.cfg.MaxPageSize, schema: &s.schema, vars: vars}
	if err := l.check(doc, operation); err != nil {
		var c *codedError
		errors.As(err, &c)
		return refuse(c)
	}
	if err := ctx.Err(); err != nil {
		c, _ := toCoded(ctx, err)
		return refuse(c)
	}
	if v := graphql.ValidateDocument(&s.schema, doc, validationRules); !v.IsValid {
		return http.StatusBadRequest, response{Errors: s.answerErrors(ctx, v.Errors, domain.CodeInvalid)}
	}
	if c := (&mergeable{frags: fragmentsOf(doc)}).check(doc); c != nil {
		return refuse(c)
	}
	if err := ctx.Err(); err != nil {
		c, _ := toCoded(ctx, err)
		return refuse(c)
	}
	ctx = context.WithValue(ctx, requestKey{}, &request{p: p, loader: newLoader()})
	res := graphql.Execute(graphql.ExecuteParams{Schema: s.schema, AST: doc, OperationName: operation, Args: vars, Context: ctx})
	if len(l.introNames) > 0 {
		nullDescriptions(res.Data, l.introNames)
	}
	out := response{}
	if len(res.Errors) > 0 {
		out.Errors = s.answerErrors(ctx, res.Errors, "")
	}
	for _, e := range out.Errors {
		if len(e.Path) > 0 {
			// A field failed: the answer is partial, or data is null
			// when a non-null root field failed.
			out.Data = dataOf(res.Data)
			return http.StatusOK, out
		}
	}
	if len(out.Errors) > 0 {
		// Nothing ran: the operation or the variables were refused (a
		// request error: no data), or the deadline passed before any
		// answer (data null).
		status := statusOf(out.Errors[0].Extensions["code"].(string))
		if status != http.StatusBadRequest {
			out.Data = dataOf(res.Data)
		}
		return status, out
	}
	out.Data = dataOf(res.Data)
	return http.StatusOK, out
}

// dataOf encodes the executor's data: null when it has none.
func dataOf(d any) json.RawMessage {
	if d == nil {
		return json.RawMessage("null")
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return json.RawMessage("null")
	}
	return raw
}

// answerErrors gives every error its extensions.code. Errors of the
// request as a whole (parsing, validation, variables) have code def;
// resolver errors keep their code; anything unexpected is "internal error"
// to the caller and logged.
func (s *Server) answerErrors(ctx context.Context, errs []gqlerrors.FormattedError, def string) []answerError {
	out := make([]answerError, 0, len(errs))
	for _, e := range errs {
		a := answerError{Message: e.Message, Path: e.Path}
		if len(e.Locations) > 0 {
			a.Locations = e.Locations
		}
		orig := innermost(e)
		var c *codedError
		switch {
		case errors.As(orig, &c):
		case def != "":
			c = coded(def, "%s", e.Message)
		case len(e.Path) == 0 && !isContextErr(orig):
			// graphql-go's own refusals before execution: an unknown
			// operation, variables of the wrong type.
			c = coded(domain.CodeInvalid, "%s", e.Message)
		default:
			var internal bool
			c, internal = toCoded(ctx, orig)
			if internal {
				s.log.Error("graphql resolver failed", "path", e.Path, "err", orig)
			}
		}
		a.Message = c.msg
		a.Extensions = c.Extensions()
		out = append(out, a)
	}
	return out
}

func isContextErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// innermost returns the error a resolver returned behind graphql-go's
// wrappers.
func innermost(err error) error {
	for i := 0; i < 8; i++ {
		switch e := err.(type) {
		case gqlerrors.FormattedError:
			o := e.OriginalError()
			if o == nil {
				return e
			}
			err = o
		case *gqlerrors.Error:
			if e.OriginalError == nil {
				return e
			}
			err = e.OriginalError
		default:
			return err
		}
	}
	return err
}

func encodeRoot(c ledger.Checkpoint) string { return base64.StdEncoding.EncodeToString(c.Root[:]) }

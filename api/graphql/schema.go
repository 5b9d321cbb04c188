package gql

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
)

// request is what resolvers know of the request they serve.
type request struct {
	p      service.Principal
	loader *loader
}

type requestKey struct{}

func requestOf(ctx context.Context) *request {
	r, _ := ctx.Value(requestKey{}).(*request)
	if r == nil {
		// Every query runs through serveQuery, which sets it; a resolver
		// without it would read another tenant's rows.
		panic("gql: resolver without a request")
	}
	return r
}

// visibleTo returns the technician whose sessions alone p may see, or "".
func visibleTo(p service.Principal) string {
	if p.Role == service.RoleTechnician {
		return p.TechnicianID
	}
	return ""
}

// mayReadChat reports whether p may read chat text: integration keys may
// not (the whitepaper's "chat left out" for CRM integrations).
func mayReadChat(p service.Principal) bool { return p.Role != service.RoleIntegration }

var errNoChat = errForbidden("integration keys may not read chat")

// timeScalar is an RFC 3339 instant.
var timeScalar = graphql.NewScalar(graphql.ScalarConfig{
	Name:        "Time",
	Description: "An instant in RFC 3339 form, such as 2025-03-14T09:26:53Z.",
	Serialize: func(v any) any {
		switch t := v.(type) {
		case time.Time:
			return t.UTC().Format(time.RFC3339Nano)
		case *time.Time:
			if t == nil {
				return nil
			}
			return t.UTC().Format(time.RFC3339Nano)
		}
		return nil
	},
	ParseValue: func(v any) any {
		s, ok := v.(string)
		if !ok {
			return nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil
		}
		return t
	},
	ParseLiteral: func(v ast.Value) any {
		s, ok := v.(*ast.StringValue)
		if !ok {
			return nil
		}
		t, err := time.Parse(time.RFC3339Nano, s.Value)
		if err != nil {
			return nil
		}
		return t
	},
})

// longScalar is a 64-bit integer (GraphQL's Int has 32 bits): positions,
// sizes.
var longScalar = graphql.NewScalar(graphql.ScalarConfig{
	Name:        "Long",
	Description: "A 64-bit integer, such as a log position or a size in bytes.",
	Serialize: func(v any) any {
		switch n := v.(type) {
		case int64:
			return n
		case *int64:
			if n == nil {
				return nil
			}
			return *n
		case int:
			return int64(n)
		}
		return nil
	},
	ParseValue: func(v any) any {
		switch n := v.(type) {
		case float64:
			if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
				return nil
			}
			return int64(n)
		case int:
			return int64(n)
		case int64:
			return n
		}
		return nil
	},
	ParseLiteral: func(v ast.Value) any {
		if n, ok := v.(*ast.IntValue); ok {
			var x int64
			if err := json.Unmarshal([]byte(n.Value), &x); err == nil {
				return x
			}
		}
		return nil
	},
})

// resolver is a field's resolver over a source of type S.
func field[S any](t graphql.Output, desc string, get func(ctx context.Context, s S) (any, error)) *graphql.Field {
	return &graphql.Field{Type: t, Description: desc, Resolve: func(p graphql.ResolveParams) (any, error) {
		s, ok := p.Source.(S)
		if !ok {
			return nil, nil
		}
		return get(p.Context, s)
	}}
}

// plain is a field whose value needs no context.
func plain[S any](t graphql.Output, get func(s S) any) *graphql.Field {
	return field(t, "", func(_ context.Context, s S) (any, error) { return get(s), nil })
}

func nonNull(t graphql.Type) graphql.Output { return graphql.NewNonNull(t) }

// edge and connection are the values behind *Connection types.
type edge struct {
	cursor string
	node   any
}

type connection struct {
	edges       []edge
	hasNext     bool
	hasPrevious bool
	count       func(ctx context.Context) (int, error)
}

func (s *Server) pageInfoType() *graphql.Object {
	return graphql.NewObject(graphql.ObjectConfig{Name: "PageInfo", Fields: graphql.Fields{
		"hasNextPage": plain(nonNull(graphql.Boolean), func(c *connection) any { return c.hasNext }),
		"hasPreviousPage": field(nonNull(graphql.Boolean), "Whether the page was asked for after a cursor: pages go forward only, so rows lie before it.",
			func(_ context.Context, c *connection) (any, error) { return c.hasPrevious, nil }),
		"startCursor": plain(graphql.String, func(c *connection) any {
			if len(c.edges) == 0 {
				return nil
			}
			return c.edges[0].cursor
		}),
		"endCursor": plain(graphql.String, func(c *connection) any {
			if len(c.edges) == 0 {
				return nil
			}
			return c.edges[len(c.edges)-1].cursor
		}),
	}})
}

// connectionType is a Relay connection of node: edges, pageInfo and
// totalCount.
func (s *Server) connectionType(name string, node *graphql.Object) *graphql.Object {
	edgeT := graphql.NewObject(graphql.ObjectConfig{Name: name + "Edge", Fields: graphql.Fields{
		"cursor": plain(nonNull(graphql.String), func(e edge) any { return e.cursor }),
		"node":   plain(nonNull(node), func(e edge) any { return e.node }),
	}})
	fields := graphql.Fields{
		"edges":    plain(nonNull(graphql.NewList(nonNull(edgeT))), func(c *connection) any { return c.edges }),
		"pageInfo": plain(nonNull(s.pageInfo), func(c *connection) any { return c }),
		"totalCount": field(nonNull(graphql.Int), "How many rows match the filter, over every page.",
			func(ctx context.Context, c *connection) (any, error) { return c.count(ctx) }),
	}
	return graphql.NewObject(graphql.ObjectConfig{Name: name + "Connection", Fields: fields})
}

// open opens a sealed reference of the request's tenant: null for none,
// "[erased]" for an erased subject.
func (s *Server) open(ctx context.Context, ref []byte) (any, error) {
	if len(ref) == 0 {
		return nil, nil
	}
	return s.opener.OpenRefString(ctx, requestOf(ctx).p.Tenant, ref)
}

// openJSON opens a sealed reference holding any JSON value: a string as
// itself, anything else (the custom fields object) as compact JSON text.
func (s *Server) openJSON(ctx context.Context, ref []byte) (any, error) {
	if len(ref) == 0 {
		return nil, nil
	}
	return s.openJSONFor(ctx, requestOf(ctx).p.Tenant, ref)
}

func (s *Server) openJSONFor(ctx context.Context, tenant string, ref []byte) (string, error) {
	v, erased, err := s.opener.OpenRef(ctx, tenant, ref)
	if err != nil {
		return "", err
	}
	if erased {
		return ledger.ErasedText, nil
	}
	var str string
	if json.Unmarshal(v, &str) == nil {
		return str, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

func durationField(get func(*Session) *float64) *graphql.Field {
	return plain(graphql.Float, func(x *Session) any {
		if v := get(x); v != nil {
			return *v
		}
		return nil
	})
}

func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// timelineArgs are the arguments of a session's timeline lists.
func timelineArgs() graphql.FieldConfigArgument {
	return graphql.FieldConfigArgument{
		"first": {Type: graphql.Int, Description: "At most this many rows (default 100, at most the page cap)."},
		"after": {Type: longScalar, Description: "Only rows after this log position (page with the last position seen)."},
	}
}

func (s *Server) timelinePage(args map[string]any) (TimelinePage, error) {
	p := TimelinePage{Limit: defaultTimelineSize}
	if n, ok := args["first"].(int); ok {
		if n < 0 || n > s.cfg.MaxPageSize {
			return p, errInvalid("first must be between 0 and %d", s.cfg.MaxPageSize)
		}
		p.Limit = n
	}
	p.Limit = min(p.Limit, s.cfg.MaxPageSize)
	if a, ok := args["after"].(int64); ok {
		p.After = a
	}
	return p, nil
}

// timeline is the resolver of a session's timeline list part: batched over
// every session of the request through the loader.
func timeline[T any](s *Server, part string, fetch func(ctx context.Context, tenant string, ids []string, p TimelinePage) ([]T, error), idOf func(T) string, chat bool) graphql.FieldResolveFn {
	return func(p graphql.ResolveParams) (any, error) {
		x, ok := p.Source.(*Session)
		if !ok {
			return nil, nil
		}
		req := requestOf(p.Context)
		if chat && !mayReadChat(req.p) {
			return nil, errNoChat
		}
		page, err := s.timelinePage(p.Args)
		if err != nil {
			return nil, err
		}
		ctx := p.Context
		return enqueue(req.loader, batchKey{part: part, after: page.After, limit: page.Limit}, x.ID,
			func(ids []string) ([]T, error) { return fetch(ctx, req.p.Tenant, ids, page) }, idOf), nil
	}
}

func (s *Server) buildSchema() (graphql.Schema, error) {
	s.pageInfo = s.pageInfoType()

	chatT := graphql.NewObject(graphql.ObjectConfig{Name: "ChatMessage", Fields: graphql.Fields{
		"position":   plain(nonNull(longScalar), func(c ChatMessage) any { return c.Position }),
		"sessionId":  plain(nonNull(graphql.ID), func(c ChatMessage) any { return c.SessionID }),
		"eventId":    plain(nonNull(graphql.ID), func(c ChatMessage) any { return c.EventID }),
		"occurredAt": plain(nonNull(timeScalar), func(c ChatMessage) any { return c.OccurredAt }),
		"sender":     plain(nonNull(graphql.String), func(c ChatMessage) any { return c.Sender }),
		"senderId":   plain(graphql.String, func(c ChatMessage) any { return orNull(c.SenderID) }),
		"text": field(graphql.String, "The message; [erased] once the session's subject is erased.",
			func(ctx context.Context, c ChatMessage) (any, error) { return s.open(ctx, c.TextRef) }),
	}})
	noteT := graphql.NewObject(graphql.ObjectConfig{Name: "Note", Fields: graphql.Fields{
		"position":     plain(nonNull(longScalar), func(n Note) any { return n.Position }),
		"sessionId":    plain(nonNull(graphql.ID), func(n Note) any { return n.SessionID }),
		"eventId":      plain(nonNull(graphql.ID), func(n Note) any { return n.EventID }),
		"occurredAt":   plain(nonNull(timeScalar), func(n Note) any { return n.OccurredAt }),
		"technicianId": plain(nonNull(graphql.String), func(n Note) any { return n.TechnicianID }),
		"text": field(graphql.String, "The note; [erased] once the session's subject is erased.",
			func(ctx context.Context, n Note) (any, error) { return s.open(ctx, n.TextRef) }),
	}})
	fileT := graphql.NewObject(graphql.ObjectConfig{Name: "FileTransfer", Fields: graphql.Fields{
		"position":       plain(nonNull(longScalar), func(f FileTransfer) any { return f.Position }),
		"sessionId":      plain(nonNull(graphql.ID), func(f FileTransfer) any { return f.SessionID }),
		"eventId":        plain(nonNull(graphql.ID), func(f FileTransfer) any { return f.EventID }),
		"occurredAt":     plain(nonNull(timeScalar), func(f FileTransfer) any { return f.OccurredAt }),
		"direction":      plain(nonNull(graphql.String), func(f FileTransfer) any { return f.Direction }),
		"technicianId":   plain(nonNull(graphql.String), func(f FileTransfer) any { return f.TechnicianID }),
		"consentEventId": plain(graphql.ID, func(f FileTransfer) any { return orNull(f.ConsentEventID) }),
		"name": field(graphql.String, "The file name; [erased] once the session's subject is erased.",
			func(ctx context.Context, f FileTransfer) (any, error) { return s.open(ctx, f.NameRef) }),
		"size":   plain(nonNull(longScalar), func(f FileTransfer) any { return f.Size }),
		"md5":    plain(nonNull(graphql.String), func(f FileTransfer) any { return f.MD5 }),
		"sha256": plain(nonNull(graphql.String), func(f FileTransfer) any { return f.SHA256 }),
	}})
	consentT := graphql.NewObject(graphql.ObjectConfig{Name: "Consent", Fields: graphql.Fields{
		"position":       plain(nonNull(longScalar), func(c Consent) any { return c.Position }),
		"sessionId":      plain(nonNull(graphql.ID), func(c Consent) any { return c.SessionID }),
		"eventId":        plain(nonNull(graphql.ID), func(c Consent) any { return c.EventID }),
		"occurredAt":     plain(nonNull(timeScalar), func(c Consent) any { return c.OccurredAt }),
		"kind":           plain(nonNull(graphql.String), func(c Consent) any { return c.Kind }),
		"action":         plain(nonNull(graphql.String), func(c Consent) any { return c.Action }),
		"technicianId":   plain(graphql.String, func(c Consent) any { return orNull(c.TechnicianID) }),
		"reason":         plain(graphql.String, func(c Consent) any { return orNull(c.Reason) }),
		"requestEventId": plain(graphql.ID, func(c Consent) any { return orNull(c.RequestEventID) }),
	}})
	actionT := graphql.NewObject(graphql.ObjectConfig{Name: "Action", Fields: graphql.Fields{
		"position":       plain(nonNull(longScalar), func(a Action) any { return a.Position }),
		"sessionId":      plain(nonNull(graphql.ID), func(a Action) any { return a.SessionID }),
		"eventId":        plain(nonNull(graphql.ID), func(a Action) any { return a.EventID }),
		"occurredAt":     plain(nonNull(timeScalar), func(a Action) any { return a.OccurredAt }),
		"type":           plain(nonNull(graphql.String), func(a Action) any { return a.Type }),
		"action":         plain(nonNull(graphql.String), func(a Action) any { return a.Action }),
		"technicianId":   plain(nonNull(graphql.String), func(a Action) any { return a.TechnicianID }),
		"consentEventId": plain(graphql.ID, func(a Action) any { return orNull(a.ConsentEventID) }),
	}})
	recordingT := graphql.NewObject(graphql.ObjectConfig{Name: "Recording", Fields: graphql.Fields{
		"id":           plain(nonNull(graphql.ID), func(r Recording) any { return r.RecordingID }),
		"sessionId":    plain(nonNull(graphql.ID), func(r Recording) any { return r.SessionID }),
		"technicianId": plain(graphql.String, func(r Recording) any { return orNull(r.TechnicianID) }),
		"state":        plain(nonNull(graphql.String), func(r Recording) any { return r.State }),
		"startedAt":    plain(timeScalar, func(r Recording) any { return r.StartedAt }),
		"stoppedAt":    plain(timeScalar, func(r Recording) any { return r.StoppedAt }),
		"storedAt":     plain(timeScalar, func(r Recording) any { return r.StoredAt }),
		"contentType":  plain(graphql.String, func(r Recording) any { return orNull(r.ContentType) }),
		"size":         plain(longScalar, func(r Recording) any { return r.Size }),
		"md5":          plain(graphql.String, func(r Recording) any { return orNull(r.MD5) }),
		"sha256":       plain(graphql.String, func(r Recording) any { return orNull(r.SHA256) }),
		"failure":      plain(graphql.String, func(r Recording) any { return orNull(r.Failure) }),
		"views":        plain(nonNull(graphql.Int), func(r Recording) any { return r.Views }),
		"durationMs": field(longScalar, "The duration the uploader declared, in milliseconds; null when none.",
			func(_ context.Context, r Recording) (any, error) { return r.DurationMS, nil }),
		"viewed": field(nonNull(graphql.Boolean), "Whether the recording was played back at least once (views > 0).",
			func(_ context.Context, r Recording) (any, error) { return r.Views > 0, nil }),
		"erased": field(nonNull(graphql.Boolean), "Whether the session was erased: its data key destroyed and the object deleted (state erased).",
			func(_ context.Context, r Recording) (any, error) { return r.State == recordingErased, nil }),
	}})
	loginT := graphql.NewObject(graphql.ObjectConfig{Name: "Login", Fields: graphql.Fields{
		"position":     plain(nonNull(longScalar), func(l Login) any { return l.Position }),
		"eventId":      plain(nonNull(graphql.ID), func(l Login) any { return l.EventID }),
		"occurredAt":   plain(nonNull(timeScalar), func(l Login) any { return l.OccurredAt }),
		"technicianId": plain(graphql.String, func(l Login) any { return orNull(l.TechnicianID) }),
		"outcome":      plain(nonNull(graphql.String), func(l Login) any { return l.Outcome }),
		"reason":       plain(graphql.String, func(l Login) any { return orNull(l.Reason) }),
		"method":       plain(nonNull(graphql.String), func(l Login) any { return l.Method }),
		"ip": field(graphql.String, "The client address; [erased] once the technician is erased.",
			func(ctx context.Context, l Login) (any, error) { return s.open(ctx, l.IPRef) }),
	}})

	sessionT := graphql.NewObject(graphql.ObjectConfig{Name: "Session", Fields: graphql.Fields{
		"id":             plain(nonNull(graphql.ID), func(x *Session) any { return x.ID }),
		"status":         plain(nonNull(graphql.String), func(x *Session) any { return x.Status }),
		"queue":          plain(nonNull(graphql.String), func(x *Session) any { return x.Queue }),
		"channel":        plain(graphql.String, func(x *Session) any { return orNull(x.Channel) }),
		"groupId":        plain(nonNull(graphql.String), func(x *Session) any { return x.GroupID }),
		"technicianId":   plain(graphql.String, func(x *Session) any { return orNull(x.TechnicianID) }),
		"ownerId":        plain(graphql.String, func(x *Session) any { return orNull(x.OwnerID) }),
		"platform":       plain(graphql.String, func(x *Session) any { return orNull(x.Platform) }),
		"trackingId":     plain(graphql.String, func(x *Session) any { return orNull(x.TrackingID) }),
		"createdAt":      plain(nonNull(timeScalar), func(x *Session) any { return x.CreatedAt }),
		"connectedAt":    plain(timeScalar, func(x *Session) any { return x.ConnectedAt }),
		"pickedUpAt":     plain(timeScalar, func(x *Session) any { return x.PickedUpAt }),
		"closedAt":       plain(timeScalar, func(x *Session) any { return x.ClosedAt }),
		"waitingSeconds": durationField(func(x *Session) *float64 { return x.WaitingSeconds }),
		"pickupSeconds":  durationField(func(x *Session) *float64 { return x.PickupSeconds }),
		"activeSeconds":  durationField(func(x *Session) *float64 { return x.ActiveSeconds }),
		"totalSeconds":   durationField(func(x *Session) *float64 { return x.TotalSeconds }),
		"transfers":      plain(nonNull(graphql.Int), func(x *Session) any { return x.Transfers }),
		"tools": plain(nonNull(graphql.NewList(nonNull(graphql.String))), func(x *Session) any {
			if x.Tools == nil {
				return []string{}
			}
			return x.Tools
		}),
		"closedBy":    plain(graphql.String, func(x *Session) any { return orNull(x.ClosedBy) }),
		"closeReason": plain(graphql.String, func(x *Session) any { return orNull(x.CloseReason) }),
		"recorded":    plain(nonNull(graphql.Boolean), func(x *Session) any { return x.Recorded }),
		"gatewayId": field(graphql.String, "The gateway (relay node) the customer's applet chose.",
			func(_ context.Context, x *Session) (any, error) { return orNull(x.GatewayID), nil }),
		"transport": field(graphql.String, "What carried the session's traffic in the end: relayed, tcp or udp (a direct P2P channel); null before the relay paired the two sides.",
			func(_ context.Context, x *Session) (any, error) { return orNull(x.Transport), nil }),
		"timeToP2PMs": field(graphql.Float, "Milliseconds from the start of the P2P attempt to the authenticated direct channel; null when none was made.",
			func(_ context.Context, x *Session) (any, error) {
				if x.TimeToP2PMS == nil {
					return nil, nil
				}
				return float64(*x.TimeToP2PMS), nil
			}),
		"p2pFailure": field(graphql.String, "Why the P2P attempt failed and the session stayed relayed.",
			func(_ context.Context, x *Session) (any, error) { return orNull(x.P2PFailure), nil }),
		"lensMinutes": field(nonNull(graphql.Float), "Minutes the customer's camera streamed to the console through Rescue Lens.",
			func(_ context.Context, x *Session) (any, error) { return float64(x.LensMS) / 60000, nil }),
		"customerName": field(graphql.String, "Opened at read time; [erased] once the session's subject is erased.",
			func(ctx context.Context, x *Session) (any, error) { return s.open(ctx, x.CustomerNameRef) }),
		"customerEmail": field(graphql.String, "Opened at read time; [erased] once the session's subject is erased.",
			func(ctx context.Context, x *Session) (any, error) { return s.open(ctx, x.CustomerEmailRef) }),
		"customFields": field(graphql.String, "The custom fields as a JSON object text; [erased] once the session's subject is erased.",
			func(ctx context.Context, x *Session) (any, error) { return s.openJSON(ctx, x.CustomFieldsRef) }),
		"chat": {Type: nonNull(graphql.NewList(nonNull(chatT))), Args: timelineArgs(),
			Description: "The chat, in order. Integration keys get a forbidden error.",
			Resolve:     timeline(s, "chat", s.reports.ChatBySessions, func(c ChatMessage) string { return c.SessionID }, true)},
		"notes": {Type: nonNull(graphql.NewList(nonNull(noteT))), Args: timelineArgs(),
			Resolve: timeline(s, "notes", s.reports.NotesBySessions, func(n Note) string { return n.SessionID }, false)},
		"files": {Type: nonNull(graphql.NewList(nonNull(fileT))), Args: timelineArgs(),
			Resolve: timeline(s, "files", s.reports.FileTransfersBySessions, func(f FileTransfer) string { return f.SessionID }, false)},
		"consents": {Type: nonNull(graphql.NewList(nonNull(consentT))), Args: timelineArgs(),
			Resolve: timeline(s, "consents", s.reports.ConsentsBySessions, func(c Consent) string { return c.SessionID }, false)},
		"actions": {Type: nonNull(graphql.NewList(nonNull(actionT))), Args: timelineArgs(),
			Resolve: timeline(s, "actions", s.reports.ActionsBySessions, func(a Action) string { return a.SessionID }, false)},
		"recordings": {Type: nonNull(graphql.NewList(nonNull(recordingT))),
			Resolve: timeline(s, "recordings", func(ctx context.Context, tenant string, ids []string, _ TimelinePage) ([]Recording, error) {
				return s.reports.RecordingsBySessions(ctx, tenant, ids)
			}, func(r Recording) string { return r.SessionID }, false)},
	}})

	perfT := graphql.NewObject(graphql.ObjectConfig{Name: "TechnicianDay", Fields: graphql.Fields{
		"technicianId": plain(nonNull(graphql.String), func(d TechnicianDay) any { return d.TechnicianID }),
		"day":          plain(nonNull(graphql.String), func(d TechnicianDay) any { return d.Day.Format(time.DateOnly) }),
		"sessions":     plain(nonNull(graphql.Int), func(d TechnicianDay) any { return d.Sessions }),
		"avgPickupSeconds": plain(graphql.Float, func(d TechnicianDay) any {
			if d.AvgPickupSeconds == nil {
				return nil
			}
			return *d.AvgPickupSeconds
		}),
		"avgDurationSeconds": plain(graphql.Float, func(d TechnicianDay) any {
			if d.AvgDurationSeconds == nil {
				return nil
			}
			return *d.AvgDurationSeconds
		}),
		"transfers": plain(nonNull(graphql.Int), func(d TechnicianDay) any { return d.Transfers }),
	}})
	statusT := graphql.NewObject(graphql.ObjectConfig{Name: "ProjectionStatus", Fields: graphql.Fields{
		"name":      plain(nonNull(graphql.String), func(p ProjectionState) any { return p.Name }),
		"position":  plain(nonNull(longScalar), func(p ProjectionState) any { return p.Position }),
		"head":      plain(nonNull(longScalar), func(p ProjectionState) any { return p.Head }),
		"lag":       plain(nonNull(longScalar), func(p ProjectionState) any { return p.Lag }),
		"updatedAt": plain(nonNull(timeScalar), func(p ProjectionState) any { return p.UpdatedAt }),

		// The events the projection set aside, and why the latest was.
		"quarantined": plain(nonNull(longScalar), func(p ProjectionState) any { return p.Quarantined }),
		"lastError": plain(graphql.String, func(p ProjectionState) any {
			if p.LastError == "" {
				return nil
			}
			return p.LastError
		}),
	}})
	checkpointT := graphql.NewObject(graphql.ObjectConfig{Name: "Checkpoint", Fields: graphql.Fields{
		"size":      plain(nonNull(longScalar), func(c ledger.Checkpoint) any { return c.Size }),
		"rootHash":  plain(nonNull(graphql.String), func(c ledger.Checkpoint) any { return encodeRoot(c) }),
		"note":      plain(nonNull(graphql.String), func(c ledger.Checkpoint) any { return string(c.Note) }),
		"createdAt": plain(nonNull(timeScalar), func(c ledger.Checkpoint) any { return c.CreatedAt }),
	}})
	integrityT := graphql.NewObject(graphql.ObjectConfig{Name: "Integrity", Fields: graphql.Fields{
		"latestCheckpoint": &graphql.Field{Type: checkpointT,
			Description: "The tenant's latest signed checkpoint (C2SP tlog-checkpoint note; rootHash in base64); null before the first.",
			Resolve: func(p graphql.ResolveParams) (any, error) {
				req := requestOf(p.Context)
				c, err := s.reports.LatestCheckpoint(p.Context, req.p.Tenant)
				if domain.ErrorCode(err) == domain.CodeNotFound {
					return nil, nil
				}
				if err != nil {
					return nil, err
				}
				return c, nil
			}},
	}})

	timeArgs := func(extra ...string) graphql.InputObjectConfigFieldMap {
		m := graphql.InputObjectConfigFieldMap{
			"from": {Type: timeScalar, Description: "Only rows at or after this instant."},
			"to":   {Type: timeScalar, Description: "Only rows before this instant."},
		}
		for _, e := range extra {
			m[e] = &graphql.InputObjectFieldConfig{Type: graphql.String}
		}
		return m
	}
	input := func(name string, fields graphql.InputObjectConfigFieldMap) *graphql.InputObject {
		return graphql.NewInputObject(graphql.InputObjectConfig{Name: name, Fields: fields})
	}
	pageArgs := func(filter *graphql.InputObject) graphql.FieldConfigArgument {
		return graphql.FieldConfigArgument{
			"filter": {Type: filter},
			"first":  {Type: graphql.Int, Description: "At most this many rows (default 20; more than the page cap is refused with code invalid)."},
			"after":  {Type: graphql.String, Description: "The endCursor of the previous page."},
		}
	}

	sessionFilterT := input("SessionFilter", timeArgs("technicianId", "groupId", "status", "channel", "customerEmail"))
	chatFilterT := input("ChatLogFilter", timeArgs("sessionId"))
	loginFilterT := input("LoginFilter", timeArgs("technicianId", "outcome"))
	lockoutFilterT := input("LockoutFilter", timeArgs("technicianId"))
	fileFilterT := input("FileTransferFilter", timeArgs("sessionId", "technicianId", "direction"))
	consentFilterT := input("ConsentFilter", timeArgs("sessionId", "technicianId", "kind", "action"))
	recordingFilterT := input("RecordingFilter", timeArgs("sessionId", "state"))

	query := graphql.NewObject(graphql.ObjectConfig{Name: "Query", Fields: graphql.Fields{
		"sessions": {Type: nonNull(s.connectionType("Session", sessionT)), Args: pageArgs(sessionFilterT),
			Description: "Sessions, newest first.", Resolve: s.resolveSessions},
		"session": {Type: sessionT, Args: graphql.FieldConfigArgument{"id": {Type: nonNull(graphql.ID)}},
			Description: "One session; a not_found error when it does not exist or the caller may not see it.",
			Resolve:     s.resolveSession},
		"chatLog": {Type: nonNull(s.connectionType("ChatMessage", chatT)), Args: pageArgs(chatFilterT),
			Description: "Chat messages in time order. Integration keys get a forbidden error.",
			Resolve:     s.resolveChatLog},
		"logins": {Type: nonNull(s.connectionType("Login", loginT)), Args: pageArgs(loginFilterT),
			Description: "Logins (password and SAML single sign-on), failures, lockouts, unlocks, logouts and SSO id disables/enables in time order.",
			Resolve:     s.resolveLogins(false)},
		"lockouts": {Type: nonNull(s.connectionType("Lockout", loginT)), Args: pageArgs(lockoutFilterT),
			Description: "Lockouts in time order (logins of outcome locked_out).",
			Resolve:     s.resolveLogins(true)},
		"fileTransfers": {Type: nonNull(s.connectionType("FileTransfer", fileT)), Args: pageArgs(fileFilterT),
			Description: "File transfers in time order.", Resolve: s.resolveFileTransfers},
		"consents": {Type: nonNull(s.connectionType("Consent", consentT)), Args: pageArgs(consentFilterT),
			Description: "Consents requested, granted and denied, and refused actions, in time order.",
			Resolve:     s.resolveConsents},
		"recordings": {Type: nonNull(s.connectionType("Recording", recordingT)), Args: pageArgs(recordingFilterT),
			Description: "Session recordings in time order (started, else stored, else first written; from and to bound it). " +
				"state filters: recording, stopped, stored, failed, erased, or viewed (stored and played back). A technician sees his sessions'.",
			Resolve: s.resolveRecordings},
		"webhooks":          s.webhooksField(),
		"webhookDeliveries": s.webhookDeliveriesField(),
		"technicianPerformance": {Type: nonNull(graphql.NewList(nonNull(perfT))),
			Args: graphql.FieldConfigArgument{
				"from": {Type: nonNull(graphql.String), Description: "First day, YYYY-MM-DD (UTC)."},
				"to":   {Type: nonNull(graphql.String), Description: "Last day, YYYY-MM-DD (UTC), at most 366 days after from."},
			},
			Description: "Per technician and UTC day: sessions, average pickup and duration, transfers. A technician sees his own.",
			Resolve:     s.resolvePerformance},
		"lensUsage": s.lensUsageField(),
		"projectionStatus": {Type: nonNull(graphql.NewList(nonNull(statusT))),
			Description: "Each projection's position, the ledger head and the lag between them (admins and auditors).",
			Resolve:     s.resolveProjectionStatus},
		"integrity": {Type: nonNull(integrityT), Resolve: func(p graphql.ResolveParams) (any, error) {
			if req := requestOf(p.Context); req.p.Role == service.RoleTechnician {
				return nil, errForbidden("technicians may not read integrity data")
			}
			return struct{}{}, nil
		}},
	}})
	return graphql.NewSchema(graphql.SchemaConfig{Query: query})
}

// argString returns a string field of an input object argument.
func argString(m map[string]any, key string) string {
	v, _ := m[key].(string)
	return strings.TrimSpace(v)
}

func argTime(m map[string]any, key string) time.Time {
	v, _ := m[key].(time.Time)
	return v
}

func (s *Server) first(args map[string]any) (int, error) {
	n, ok := args["first"].(int)
	if !ok {
		return defaultPageSize, nil
	}
	if n < 0 || n > s.cfg.MaxPageSize {
		return 0, errInvalid("first must be between 0 and %d, not %d", s.cfg.MaxPageSize, n)
	}
	return n, nil
}

func checkRange(from, to time.Time) error {
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		return errInvalid("to is before from")
	}
	return nil
}

func (s *Server) resolveSessions(p graphql.ResolveParams) (any, error) {
	req := requestOf(p.Context)
	f, _ := p.Args["filter"].(map[string]any)
	filter := SessionFilter{
		From: argTime(f, "from"), To: argTime(f, "to"),
		TechnicianID: argString(f, "technicianId"), GroupID: argString(f, "groupId"),
		Status: argString(f, "status"), Channel: argString(f, "channel"),
		VisibleTo: visibleTo(req.p),
	}
	if err := checkRange(filter.From, filter.To); err != nil {
		return nil, err
	}
	if email := argString(f, "customerEmail"); email != "" {
		idx, err := s.index.BlindIndex(p.Context, CustomerEmailPurpose, strings.ToLower(email))
		if err != nil {
			return nil, err
		}
		filter.CustomerEmailIndex = idx
	}
	first, err := s.first(p.Args)
	if err != nil {
		return nil, err
	}
	after, err := decodeSessionCursor(argString(p.Args, "after"))
	if err != nil {
		return nil, err
	}
	rows, err := s.reports.Sessions(p.Context, req.p.Tenant, filter, SessionPage{After: after, Limit: first + 1})
	if err != nil {
		return nil, err
	}
	c := &connection{hasPrevious: after != nil, count: func(ctx context.Context) (int, error) {
		return s.reports.CountSessions(ctx, req.p.Tenant, filter)
	}}
	if len(rows) > first {
		rows, c.hasNext = rows[:first], true
	}
	for i := range rows {
		cur := encodeSessionCursor(SessionCursor{CreatedAt: rows[i].CreatedAt, ID: rows[i].ID})
		c.edges = append(c.edges, edge{cursor: cur, node: &rows[i]})
	}
	return c, nil
}

func (s *Server) resolveSession(p graphql.ResolveParams) (any, error) {
	req := requestOf(p.Context)
	id := argString(p.Args, "id")
	ctx := p.Context
	load := enqueue(req.loader, batchKey{part: "session"}, id, func(ids []string) ([]Session, error) {
		return s.reports.SessionsByIDs(ctx, req.p.Tenant, ids)
	}, func(x Session) string { return x.ID })
	return func() (any, error) {
		v, err := load()
		if err != nil {
			return nil, err
		}
		rows := v.([]Session)
		if len(rows) == 0 {
			return nil, coded(domain.CodeNotFound, "session %s not found", id)
		}
		x := rows[0]
		if me := visibleTo(req.p); me != "" && x.TechnicianID != me && x.OwnerID != me {
			// Another technician's session reads as absent.
			return nil, coded(domain.CodeNotFound, "session %s not found", id)
		}
		return &x, nil
	}, nil
}

// logConnection builds a connection of a log-like list: rows holds up to
// first+1 rows of page p; count counts them over every page.
func logConnection[T any](list string, rows []T, p LogPage, key func(T) LogCursor, count func(context.Context) (int, error)) *connection {
	first := p.Limit - 1
	c := &connection{hasPrevious: p.After != nil, count: count}
	if len(rows) > first {
		rows, c.hasNext = rows[:first], true
	}
	for _, r := range rows {
		cur := encodeLogCursor(list, key(r))
		c.edges = append(c.edges, edge{cursor: cur, node: r})
	}
	return c
}

// logArgs reads the common arguments of a log-like list.
func (s *Server) logArgs(p graphql.ResolveParams, list string) (map[string]any, LogPage, error) {
	f, _ := p.Args["filter"].(map[string]any)
	if err := checkRange(argTime(f, "from"), argTime(f, "to")); err != nil {
		return nil, LogPage{}, err
	}
	first, err := s.first(p.Args)
	if err != nil {
		return nil, LogPage{}, err
	}
	after, err := decodeLogCursor(list, argString(p.Args, "after"))
	if err != nil {
		return nil, LogPage{}, err
	}
	return f, LogPage{After: after, Limit: first + 1}, nil
}

func (s *Server) resolveChatLog(p graphql.ResolveParams) (any, error) {
	req := requestOf(p.Context)
	if !mayReadChat(req.p) {
		return nil, errNoChat
	}
	f, page, err := s.logArgs(p, "chat")
	if err != nil {
		return nil, err
	}
	filter := LogFilter{
		From: argTime(f, "from"), To: argTime(f, "to"), SessionID: argString(f, "sessionId"), VisibleTo: visibleTo(req.p),
	}
	rows, err := s.reports.ChatLog(p.Context, req.p.Tenant, filter, page)
	if err != nil {
		return nil, err
	}
	return logConnection("chat", rows, page, func(c ChatMessage) LogCursor { return LogCursor{c.OccurredAt, c.Position} },
		func(ctx context.Context) (int, error) { return s.reports.CountChatLog(ctx, req.p.Tenant, filter) }), nil
}

func (s *Server) resolveLogins(lockouts bool) graphql.FieldResolveFn {
	list := "logins"
	if lockouts {
		list = "lockouts"
	}
	return func(p graphql.ResolveParams) (any, error) {
		req := requestOf(p.Context)
		f, page, err := s.logArgs(p, list)
		if err != nil {
			return nil, err
		}
		filter := LoginFilter{From: argTime(f, "from"), To: argTime(f, "to"), TechnicianID: argString(f, "technicianId"), Outcome: argString(f, "outcome")}
		if lockouts {
			filter.Outcome = "locked_out"
		}
		if me := visibleTo(req.p); me != "" {
			if filter.TechnicianID != "" && filter.TechnicianID != me {
				return nil, errForbidden("a technician sees only his own logins")
			}
			filter.TechnicianID = me
		}
		rows, err := s.reports.Logins(p.Context, req.p.Tenant, filter, page)
		if err != nil {
			return nil, err
		}
		return logConnection(list, rows, page, func(l Login) LogCursor { return LogCursor{l.OccurredAt, l.Position} },
			func(ctx context.Context) (int, error) { return s.reports.CountLogins(ctx, req.p.Tenant, filter) }), nil
	}
}

func (s *Server) resolveFileTransfers(p graphql.ResolveParams) (any, error) {
	req := requestOf(p.Context)
	f, page, err := s.logArgs(p, "files")
	if err != nil {
		return nil, err
	}
	filter := LogFilter{
		From: argTime(f, "from"), To: argTime(f, "to"), SessionID: argString(f, "sessionId"),
		TechnicianID: argString(f, "technicianId"), Direction: argString(f, "direction"), VisibleTo: visibleTo(req.p),
	}
	rows, err := s.reports.FileTransfers(p.Context, req.p.Tenant, filter, page)
	if err != nil {
		return nil, err
	}
	return logConnection("files", rows, page, func(x FileTransfer) LogCursor { return LogCursor{x.OccurredAt, x.Position} },
		func(ctx context.Context) (int, error) { return s.reports.CountFileTransfers(ctx, req.p.Tenant, filter) }), nil
}

func (s *Server) resolveConsents(p graphql.ResolveParams) (any, error) {
	req := requestOf(p.Context)
	f, page, err := s.logArgs(p, "consents")
	if err != nil {
		return nil, err
	}
	filter := LogFilter{
		From: argTime(f, "from"), To: argTime(f, "to"), SessionID: argString(f, "sessionId"),
		TechnicianID: argString(f, "technicianId"), Kind: argString(f, "kind"), Action: argString(f, "action"),
		VisibleTo: visibleTo(req.p),
	}
	rows, err := s.reports.Consents(p.Context, req.p.Tenant, filter, page)
	if err != nil {
		return nil, err
	}
	return logConnection("consents", rows, page, func(x Consent) LogCursor { return LogCursor{x.OccurredAt, x.Position} },
		func(ctx context.Context) (int, error) { return s.reports.CountConsents(ctx, req.p.Tenant, filter) }), nil
}

// recordingErased is the state of a recording whose session was erased.
const recordingErased = "erased"

// recordingStates are the states the recordings filter accepts.
var recordingStates = []string{"recording", "stopped", "stored", "failed", recordingErased, "viewed"}

func (s *Server) resolveRecordings(p graphql.ResolveParams) (any, error) {
	req := requestOf(p.Context)
	f, _ := p.Args["filter"].(map[string]any)
	filter := RecordingFilter{From: argTime(f, "from"), To: argTime(f, "to"), SessionID: argString(f, "sessionId"),
		State: argString(f, "state"), VisibleTo: visibleTo(req.p)}
	if err := checkRange(filter.From, filter.To); err != nil {
		return nil, err
	}
	if filter.State != "" && !slices.Contains(recordingStates, filter.State) {
		return nil, errInvalid("state must be one of %s, not %q", strings.Join(recordingStates, ", "), filter.State)
	}
	first, err := s.first(p.Args)
	if err != nil {
		return nil, err
	}
	after, err := decodeRecordingCursor(argString(p.Args, "after"))
	if err != nil {
		return nil, err
	}
	rows, err := s.reports.Recordings(p.Context, req.p.Tenant, filter, RecordingPage{After: after, Limit: first + 1})
	if err != nil {
		return nil, err
	}
	c := &connection{hasPrevious: after != nil, count: func(ctx context.Context) (int, error) {
		return s.reports.CountRecordings(ctx, req.p.Tenant, filter)
	}}
	if len(rows) > first {
		rows, c.hasNext = rows[:first], true
	}
	for _, r := range rows {
		cur := encodeRecordingCursor(RecordingCursor{At: r.At, SessionID: r.SessionID, RecordingID: r.RecordingID})
		c.edges = append(c.edges, edge{cursor: cur, node: r})
	}
	return c, nil
}

// parseDay reads YYYY-MM-DD, or the UTC date of an RFC 3339 instant.
func parseDay(name, v string) (time.Time, error) {
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		return d, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		t = t.UTC()
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), nil
	}
	return time.Time{}, errInvalid("%s must be a date (YYYY-MM-DD) or an RFC 3339 time, not %q", name, v)
}

func (s *Server) resolvePerformance(p graphql.ResolveParams) (any, error) {
	req := requestOf(p.Context)
	from, to, err := dayRange(p.Args)
	if err != nil {
		return nil, err
	}
	rows, err := s.reports.TechnicianPerformance(p.Context, req.p.Tenant, from, to, visibleTo(req.p))
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []TechnicianDay{}
	}
	return rows, nil
}

func (s *Server) resolveProjectionStatus(p graphql.ResolveParams) (any, error) {
	if req := requestOf(p.Context); !req.p.Is(service.RoleAdmin, service.RoleAuditor) {
		return nil, errForbidden("only admins and auditors may read the projection status")
	}
	rows, err := s.reports.ProjectionStatus(p.Context)
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []ProjectionState{}
	}
	return rows, nil
}

package gql

import (
	"context"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/graphql-go/graphql"
	"github.com/vigilhq/vigil/domain/service"
)

// webhookStatuses are the delivery states the webhookDeliveries filter
// accepts (webhooks.Delivery states).
var webhookStatuses = []string{"pending", "delivered", "dead", "purged"}

// mayReadWebhooks reports whether p may read webhook subscriptions and
// deliveries: the roles that may manage them (admin, integration).
func mayReadWebhooks(p service.Principal) error {
	if !p.Is(service.RoleAdmin, service.RoleIntegration) {
		return errForbidden("only admins and integration keys may read webhooks")
	}
	return nil
}

// Neither type has a field for a secret or a payload: the schema cannot
// expose them.
var webhookT = graphql.NewObject(graphql.ObjectConfig{Name: "Webhook", Description: "A webhook subscription (its secret is never shown here).",
	Fields: graphql.Fields{
		"id":          plain(nonNull(graphql.ID), func(w WebhookSubscription) any { return w.ID }),
		"url":         plain(nonNull(graphql.String), func(w WebhookSubscription) any { return w.URL }),
		"eventTypes":  plain(nonNull(graphql.NewList(nonNull(graphql.String))), func(w WebhookSubscription) any { return nonNilStrings(w.EventTypes) }),
		"groupId":     plain(graphql.String, func(w WebhookSubscription) any { return orNull(w.GroupID) }),
		"excludeChat": plain(nonNull(graphql.Boolean), func(w WebhookSubscription) any { return w.ExcludeChat }),
		"description": plain(graphql.String, func(w WebhookSubscription) any { return orNull(w.Description) }),
		"disabled":    plain(nonNull(graphql.Boolean), func(w WebhookSubscription) any { return w.Disabled }),
		"createdAt":   plain(nonNull(timeScalar), func(w WebhookSubscription) any { return w.CreatedAt }),
	}})

var webhookDeliveryT = graphql.NewObject(graphql.ObjectConfig{Name: "WebhookDelivery",
	Description: "One event's delivery to one webhook (its payload is never shown here).",
	Fields: graphql.Fields{
		"id":        plain(nonNull(graphql.ID), func(d WebhookDelivery) any { return d.ID }),
		"webhookId": plain(nonNull(graphql.ID), func(d WebhookDelivery) any { return d.WebhookID }),
		"eventType": plain(nonNull(graphql.String), func(d WebhookDelivery) any { return d.EventType }),
		"status":    plain(nonNull(graphql.String), func(d WebhookDelivery) any { return d.Status }),
		"attempts":  plain(nonNull(graphql.Int), func(d WebhookDelivery) any { return d.Attempts }),
		"lastStatusCode": plain(graphql.Int, func(d WebhookDelivery) any {
			if d.LastStatusCode == 0 {
				return nil
			}
			return d.LastStatusCode
		}),
		"lastLatencyMs": plain(graphql.Int, func(d WebhookDelivery) any {
			if d.Attempts == 0 {
				return nil
			}
			return d.LastLatencyMS
		}),
		"nextAttemptAt": plain(timeScalar, func(d WebhookDelivery) any { return d.NextAttemptAt }),
		"deliveredAt":   plain(timeScalar, func(d WebhookDelivery) any { return d.DeliveredAt }),
		"createdAt":     plain(nonNull(timeScalar), func(d WebhookDelivery) any { return d.CreatedAt }),
	}})

var webhookDeliveryFilterT = graphql.NewInputObject(graphql.InputObjectConfig{Name: "WebhookDeliveryFilter", Fields: graphql.InputObjectConfigFieldMap{
	"from":      {Type: timeScalar, Description: "Only deliveries created at or after this instant."},
	"to":        {Type: timeScalar, Description: "Only deliveries created before this instant."},
	"status":    {Type: graphql.String, Description: "pending, delivered, dead or purged."},
	"webhookId": {Type: graphql.ID, Description: "Only this webhook's deliveries."},
}})

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) webhooksField() *graphql.Field {
	return &graphql.Field{Type: nonNull(graphql.NewList(nonNull(webhookT))),
		Description: "The tenant's webhook subscriptions, oldest first (admins and integration keys).",
		Resolve: func(p graphql.ResolveParams) (any, error) {
			req := requestOf(p.Context)
			if err := mayReadWebhooks(req.p); err != nil {
				return nil, err
			}
			rows, err := s.reports.WebhookSubscriptions(p.Context, req.p.Tenant)
			if err != nil {
				return nil, err
			}
			if rows == nil {
				rows = []WebhookSubscription{}
			}
			return rows, nil
		}}
}

func (s *Server) webhookDeliveriesField() *graphql.Field {
	return &graphql.Field{Type: nonNull(s.connectionType("WebhookDelivery", webhookDeliveryT)),
		Args: graphql.FieldConfigArgument{
			"filter": {Type: webhookDeliveryFilterT},
			"first":  {Type: graphql.Int, Description: "At most this many rows (default 20; more than the page cap is refused with code invalid)."},
			"after":  {Type: graphql.String, Description: "The endCursor of the previous page."},
		},
		Description: "Webhook deliveries, newest first (admins and integration keys).",
		Resolve:     s.resolveWebhookDeliveries}
}

func (s *Server) resolveWebhookDeliveries(p graphql.ResolveParams) (any, error) {
	req := requestOf(p.Context)
	if err := mayReadWebhooks(req.p); err != nil {
		return nil, err
	}
	f, _ := p.Args["filter"].(map[string]any)
	filter := WebhookDeliveryFilter{From: argTime(f, "from"), To: argTime(f, "to"), Status: argString(f, "status"), WebhookID: argString(f, "webhookId")}
	if err := checkRange(filter.From, filter.To); err != nil {
		return nil, err
	}
	if filter.Status != "" && !slices.Contains(webhookStatuses, filter.Status) {
		return nil, errInvalid("status must be one of %s, not %q", strings.Join(webhookStatuses, ", "), filter.Status)
	}
	if filter.WebhookID != "" {
		u, err := uuid.Parse(filter.WebhookID)
		if err != nil {
			return nil, errInvalid("webhookId %q is not a webhook id", filter.WebhookID)
		}
		filter.WebhookID = u.String()
	}
	first, err := s.first(p.Args)
	if err != nil {
		return nil, err
	}
	after, err := decodeWebhookDeliveryCursor(argString(p.Args, "after"))
	if err != nil {
		return nil, err
	}
	rows, err := s.reports.WebhookDeliveries(p.Context, req.p.Tenant, filter, WebhookDeliveryPage{After: after, Limit: first + 1})
	if err != nil {
		return nil, err
	}
	c := &connection{hasPrevious: after != nil, count: func(ctx context.Context) (int, error) {
		return s.reports.CountWebhookDeliveries(ctx, req.p.Tenant, filter)
	}}
	if len(rows) > first {
		rows, c.hasNext = rows[:first], true
	}
	for _, r := range rows {
		cur := encodeWebhookDeliveryCursor(WebhookDeliveryCursor{CreatedAt: r.CreatedAt, ID: r.ID})
		c.edges = append(c.edges, edge{cursor: cur, node: r})
	}
	return c, nil
}

func encodeWebhookDeliveryCursor(c WebhookDeliveryCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte("w1|" + strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "|" + c.ID))
}

func decodeWebhookDeliveryCursor(s string) (*WebhookDeliveryCursor, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadCursor
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != "w1" {
		return nil, errBadCursor
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return nil, errBadCursor
	}
	id, err := uuid.Parse(parts[2])
	if err != nil {
		return nil, errBadCursor
	}
	return &WebhookDeliveryCursor{CreatedAt: time.UnixMicro(us).UTC(), ID: id.String()}, nil
}

package gql_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/webhooks"
)

const webhooksQuery = `{ webhooks { id url eventTypes groupId excludeChat description disabled createdAt } }`

const webhookDeliveriesQuery = `query($f: WebhookDeliveryFilter, $n: Int, $after: String) {
	webhookDeliveries(filter: $f, first: $n, after: $after) {
		edges { cursor node { id webhookId eventType status attempts lastStatusCode lastLatencyMs nextAttemptAt deliveredAt createdAt } }
		pageInfo { hasNextPage endCursor }
	}
}`

// webhooksFixture makes, through the real webhook service, two
// subscriptions of the tenant (one disabled) with test deliveries in every
// state, and one of the other tenant.
type webhooksFixture struct {
	svc                *webhooks.Service
	active, off, other webhooks.Subscription
	delivered, dead    string // delivery ids of active
	pending            []string
}

func (e *env) webhooksFixture() webhooksFixture {
	e.t.Helper()
	ctx := context.Background()
	svc := webhooks.NewService(webhooks.Config{Pool: e.pool, Ledger: e.ledger})
	me := service.Principal{Tenant: e.tenant, Role: service.RoleIntegration, CredentialID: "k"}
	them := service.Principal{Tenant: e.other, Role: service.RoleAdmin, CredentialID: "k2"}
	var f webhooksFixture
	f.svc = svc
	var err error
	must := func(err error) {
		e.t.Helper()
		if err != nil {
			e.t.Fatal(err)
		}
	}
	f.active, err = svc.Create(ctx, me, webhooks.NewSubscription{URL: "https://crm.example/hook", GroupID: "g1", ExcludeChat: true, Description: "CRM"})
	must(err)
	f.off, err = svc.Create(ctx, me, webhooks.NewSubscription{URL: "https://siem.example/in", EventTypes: []string{"session.created"}})
	must(err)
	disabled := false
	_, err = svc.Update(ctx, me, f.off.ID, webhooks.SubscriptionChange{Enabled: &disabled})
	must(err)
	f.other, err = svc.Create(ctx, them, webhooks.NewSubscription{URL: "https://globex.example/hook"})
	must(err)
	var ds []string
	for range 4 {
		id, err := svc.Test(ctx, me, f.active.ID)
		must(err)
		ds = append(ds, id)
		time.Sleep(2 * time.Millisecond) // distinct created_at
	}
	f.delivered, f.dead, f.pending = ds[0], ds[1], ds[2:]
	e.exec(`UPDATE webhook_deliveries SET state = 'delivered', attempts = 1, last_status = 204, last_latency_ms = 12, delivered_at = now() WHERE id = $1`, f.delivered)
	e.exec(`UPDATE webhook_deliveries SET state = 'dead', attempts = 10, last_status = 500, last_latency_ms = 30 WHERE id = $1`, f.dead)
	_, err = svc.Test(ctx, me, f.off.ID)
	must(err)
	_, err = svc.Test(ctx, them, f.other.ID)
	must(err)
	return f
}

func TestWebhooksQuery(t *testing.T) {
	e := newEnv(t)
	f := e.webhooksFixture()

	t.Run("subscriptions of the tenant, without secrets", func(t *testing.T) {
		for _, role := range []string{"admin", "integration"} {
			a := e.query(e.keys[role], webhooksQuery, nil)
			if a.status != 200 || len(a.Errors) > 0 {
				t.Fatalf("%s: %d %s", role, a.status, a.raw)
			}
			got := a.Data["webhooks"].([]any)
			if len(got) != 2 {
				t.Fatalf("%s: %d webhooks, want 2: %s", role, len(got), a.raw)
			}
			first := got[0].(map[string]any)
			delete(first, "createdAt")
			want := map[string]any{"id": f.active.ID, "url": "https://crm.example/hook", "eventTypes": []any{"session.started", "session.ended"},
				"groupId": "g1", "excludeChat": true, "description": "CRM", "disabled": false}
			if diff := cmp.Diff(want, first); diff != "" {
				t.Errorf("%s: first webhook (-want +got):\n%s", role, diff)
			}
			if get(got[1], "id") != f.off.ID || get(got[1], "disabled") != true || get(got[1], "groupId") != nil {
				t.Errorf("%s: second webhook %v", role, got[1])
			}
			for _, s := range []string{f.active.Secret, f.off.Secret, "whsec_", f.other.ID} {
				if strings.Contains(a.raw, s) {
					t.Errorf("%s: the answer holds %q: %s", role, s, a.raw)
				}
			}
		}
		d := e.ok(e.keys["otherAdmin"], webhooksQuery, nil)
		if got := d["webhooks"].([]any); len(got) != 1 || get(got[0], "id") != f.other.ID {
			t.Errorf("the other tenant sees %v", got)
		}
	})

	t.Run("no secret or payload field in the schema", func(t *testing.T) {
		for _, q := range []string{`{ webhooks { secret } }`, `{ webhookDeliveries { edges { node { payload } } } }`} {
			a := e.query(e.keys["admin"], q, nil)
			if len(a.Errors) == 0 {
				t.Errorf("%s answered %s", q, a.raw)
			}
		}
	})

	t.Run("roles", func(t *testing.T) {
		for _, role := range []string{"auditor", "tech"} {
			e.fails(e.keys[role], webhooksQuery, nil, http.StatusOK, "forbidden")
			e.fails(e.keys[role], webhookDeliveriesQuery, nil, http.StatusOK, "forbidden")
		}
	})

	t.Run("deliveries newest first, paged", func(t *testing.T) {
		var got []string
		after := any(nil)
		for range 10 {
			d := e.ok(e.keys["integration"], webhookDeliveriesQuery, map[string]any{"n": 2, "after": after})
			got = append(got, ids(get(d, "webhookDeliveries"))...)
			if get(d, "webhookDeliveries", "pageInfo", "hasNextPage") != true {
				break
			}
			after = get(d, "webhookDeliveries", "pageInfo", "endCursor")
		}
		if len(got) != 5 {
			t.Fatalf("%d deliveries, want 5 (4 of the active webhook, 1 of the disabled): %v", len(got), got)
		}
		want := []string{f.pending[1], f.pending[0], f.dead, f.delivered}
		if diff := cmp.Diff(want, got[1:]); diff != "" {
			t.Errorf("order (-want +got):\n%s", diff)
		}
	})

	t.Run("fields", func(t *testing.T) {
		d := e.ok(e.keys["admin"], webhookDeliveriesQuery, map[string]any{"f": map[string]any{"webhookId": f.active.ID}, "n": 10})
		byID := map[string]any{}
		for _, ed := range get(d, "webhookDeliveries", "edges").([]any) {
			n := get(ed, "node").(map[string]any)
			if n["createdAt"] == nil || n["webhookId"] != f.active.ID || n["eventType"] != webhooks.TypeTest {
				t.Errorf("delivery %v", n)
			}
			delete(n, "createdAt")
			byID[n["id"].(string)] = n
		}
		if len(byID) != 4 {
			t.Fatalf("%d deliveries of the active webhook, want 4", len(byID))
		}
		del := byID[f.delivered].(map[string]any)
		if del["deliveredAt"] == nil {
			t.Errorf("delivered without deliveredAt: %v", del)
		}
		delete(del, "deliveredAt")
		if diff := cmp.Diff(map[string]any{"id": f.delivered, "webhookId": f.active.ID, "eventType": webhooks.TypeTest, "status": "delivered",
			"attempts": float64(1), "lastStatusCode": float64(204), "lastLatencyMs": float64(12), "nextAttemptAt": nil}, del); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
		p := byID[f.pending[0]].(map[string]any)
		if p["status"] != "pending" || p["nextAttemptAt"] == nil || p["lastStatusCode"] != nil || p["lastLatencyMs"] != nil || p["deliveredAt"] != nil {
			t.Errorf("pending %v", p)
		}
		if get(byID[f.dead], "status") != "dead" || get(byID[f.dead], "lastStatusCode") != float64(500) {
			t.Errorf("dead %v", byID[f.dead])
		}
	})

	t.Run("filters", func(t *testing.T) {
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		for _, tc := range []struct {
			name   string
			filter map[string]any
			want   int
		}{
			{"pending", map[string]any{"status": "pending"}, 3},
			{"dead", map[string]any{"status": "dead"}, 1},
			{"delivered of active", map[string]any{"status": "delivered", "webhookId": f.active.ID}, 1},
			{"disabled webhook", map[string]any{"webhookId": f.off.ID}, 1},
			{"another tenant's webhook", map[string]any{"webhookId": f.other.ID}, 0},
			{"from the future", map[string]any{"from": future}, 0},
			{"to the future", map[string]any{"to": future}, 5},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d := e.ok(e.keys["admin"], webhookDeliveriesQuery, map[string]any{"f": tc.filter, "n": 50})
				if n := len(get(d, "webhookDeliveries", "edges").([]any)); n != tc.want {
					t.Errorf("%d deliveries, want %d", n, tc.want)
				}
			})
		}
		d := e.ok(e.keys["otherAdmin"], webhookDeliveriesQuery, map[string]any{"n": 50})
		if got := ids(get(d, "webhookDeliveries")); len(got) != 1 {
			t.Errorf("the other tenant sees %v", got)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		t0 := time.Now().UTC()
		for _, tc := range []struct {
			name   string
			vars   map[string]any
			status int
		}{
			{"unknown status", map[string]any{"f": map[string]any{"status": "lost"}}, http.StatusOK},
			{"not a webhook id", map[string]any{"f": map[string]any{"webhookId": "nope"}}, http.StatusOK},
			{"to before from", map[string]any{"f": map[string]any{"from": t0.Format(time.RFC3339), "to": t0.Add(-time.Hour).Format(time.RFC3339)}}, http.StatusOK},
			{"a cursor of another list", map[string]any{"after": "bDF8Y2hhdHwxfDE"}, http.StatusOK},
			{"not a cursor", map[string]any{"after": "!!"}, http.StatusOK},
			{"first over the cap", map[string]any{"n": 1000}, http.StatusBadRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e.fails(e.keys["admin"], webhookDeliveriesQuery, tc.vars, tc.status, "invalid")
			})
		}
	})

	t.Run("one statement per page", func(t *testing.T) {
		before := e.queries.n.Load()
		e.ok(e.keys["admin"], webhookDeliveriesQuery, map[string]any{"n": 10})
		if n := e.queries.n.Load() - before; n != 1 {
			t.Errorf("a page of deliveries took %d statements, want 1", n)
		}
	})
}

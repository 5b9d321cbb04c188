package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/webhooks"
)

// WebhooksService is what the webhook subscription endpoints need;
// *webhooks.Service implements it. Every method checks that p has the
// integration or admin role and scopes to p's tenant.
type WebhooksService interface {
	Create(ctx context.Context, p service.Principal, n webhooks.NewSubscription) (webhooks.Subscription, error)
	List(ctx context.Context, p service.Principal) ([]webhooks.Subscription, error)
	Get(ctx context.Context, p service.Principal, id string) (webhooks.Subscription, error)
	Update(ctx context.Context, p service.Principal, id string, c webhooks.SubscriptionChange) (webhooks.Subscription, error)
	Delete(ctx context.Context, p service.Principal, id string) error
	RotateSecret(ctx context.Context, p service.Principal, id string) (webhooks.Subscription, error)
	Deliveries(ctx context.Context, p service.Principal, id string, f webhooks.DeliveryFilter) ([]webhooks.Delivery, error)
	Replay(ctx context.Context, p service.Principal, id string, since time.Time) (int64, error)
	Test(ctx context.Context, p service.Principal, id string) (string, error)
}

var _ WebhooksService = (*webhooks.Service)(nil)

// webhooksRoutes registers the webhook endpoints when opts.Webhooks is set.
func (a *api) webhooksRoutes(mux *http.ServeMux) {
	if a.webhooks == nil {
		return
	}
	// Answers holding a secret must never be stored as idempotent answers.
	mux.HandleFunc("POST /v1/webhooks", withoutIdempotency(a.authed(a.webhookCreate)))
	mux.HandleFunc("GET /v1/webhooks", a.authed(a.webhookList))
	mux.HandleFunc("GET /v1/webhooks/{id}", a.authed(a.webhookGet))
	mux.HandleFunc("PATCH /v1/webhooks/{id}", a.authed(a.webhookUpdate))
	mux.HandleFunc("DELETE /v1/webhooks/{id}", a.authed(a.webhookDelete))
	mux.HandleFunc("POST /v1/webhooks/{id}/rotate-secret", withoutIdempotency(a.authed(a.webhookRotate)))
	mux.HandleFunc("GET /v1/webhooks/{id}/deliveries", a.authed(a.webhookDeliveries))
	mux.HandleFunc("POST /v1/webhooks/{id}/replay", a.authed(a.webhookReplay))
	mux.HandleFunc("POST /v1/webhooks/{id}/test", a.authed(a.webhookTest))
}

func (a *api) webhookCreate(w http.ResponseWriter, r *http.Request) error {
	var b webhooks.NewSubscription
	if err := decode(r, &b); err != nil {
		return err
	}
	if err := a.checkGroupRef(r, b.GroupID); err != nil {
		return err
	}
	s, err := a.webhooks.Create(r.Context(), principal(r), b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s)
	return nil
}

func (a *api) webhookList(w http.ResponseWriter, r *http.Request) error {
	subs, err := a.webhooks.List(r.Context(), principal(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": subs})
	return nil
}

func (a *api) webhookGet(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	s, err := a.webhooks.Get(r.Context(), principal(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s)
	return nil
}

func (a *api) webhookUpdate(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var b webhooks.SubscriptionChange
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.GroupID != nil {
		if err := a.checkGroupRef(r, *b.GroupID); err != nil {
			return err
		}
	}
	s, err := a.webhooks.Update(r.Context(), principal(r), id, b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s)
	return nil
}

func (a *api) webhookDelete(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if err := a.webhooks.Delete(r.Context(), principal(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) webhookRotate(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	s, err := a.webhooks.RotateSecret(r.Context(), principal(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s)
	return nil
}

func (a *api) webhookDeliveries(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := webhooks.DeliveryFilter{State: q.Get("state")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return domain.Errorf(domain.CodeInvalid, "limit %q: want a number", v)
		}
		f.Limit = n
	}
	if v := q.Get("before"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return domain.Errorf(domain.CodeInvalid, "before %q: want an RFC 3339 time", v)
		}
		f.Before = t
	}
	ds, err := a.webhooks.Deliveries(r.Context(), principal(r), id, f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": ds})
	return nil
}

func (a *api) webhookReplay(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var b replayBody
	if err := decode(r, &b); err != nil {
		return err
	}
	since, err := time.Parse(time.RFC3339Nano, b.Since)
	if err != nil {
		return domain.Errorf(domain.CodeInvalid, "since %q: want an RFC 3339 time", b.Since)
	}
	n, err := a.webhooks.Replay(r.Context(), principal(r), id, since)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"queued": n})
	return nil
}

func (a *api) webhookTest(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	did, err := a.webhooks.Test(r.Context(), principal(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"delivery_id": did})
	return nil
}

// checkGroupRef refuses a subscription's group_id unless it is empty or
// names a group of the caller's tenant (400 invalid): deliveries are
// filtered by it, and a missing or foreign group would silently filter out
// everything. Callers of a role the webhook service refuses are left to it,
// so that they learn that first.
func (a *api) checkGroupRef(r *http.Request, id string) error {
	p := principal(r)
	if id == "" || !p.Is(service.RoleIntegration, service.RoleAdmin) {
		return nil
	}
	ok, err := a.svc.GroupExists(r.Context(), p, id)
	if err != nil {
		return err
	}
	if !ok {
		return domain.Errorf(domain.CodeInvalid, "group_id %q: no such group in this tenant", id)
	}
	return nil
}

package service_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// gatewayEvents returns "type gateway_id" of the registry events of the
// tenant's stream, in order.
func (w *world) gatewayEvents(tenant string) []string {
	w.t.Helper()
	evs, err := w.ledger.ReadStream(w.ctx, tenant, domain.TenantStream(tenant), 0)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		p, err := domain.Catalogue.Decode(e)
		if err != nil {
			w.t.Fatal(err)
		}
		switch p := p.(type) {
		case *domain.GatewayRegistered:
			out = append(out, e.Type+" "+p.GatewayID)
		case *domain.GatewayDown:
			out = append(out, e.Type+" "+p.GatewayID)
		case *domain.GatewayUp:
			out = append(out, e.Type+" "+p.GatewayID)
		}
	}
	return out
}

func gatewayIDs(gs []service.Gateway) []string {
	var ids []string
	for _, g := range gs {
		ids = append(ids, g.ID)
	}
	return ids
}

// TestGatewayRegistry runs the registry against PostgreSQL and the ledger:
// registration, the list an applet gets (its region, its tenant's and the
// deployment's gateways, least loaded first), a gateway that goes silent
// and comes back, and the events each change leaves in the tenant streams.
func TestGatewayRegistry(t *testing.T) {
	w := newWorld(t)
	ctx := w.ctx
	gws := w.svc.Gateways(w.store, service.SessionLocatorFunc(func(_ context.Context, guid string) (string, error) {
		return w.tenant, nil
	}), 15*time.Second)

	_, relayKey, err := w.svc.CreateAPIKey(ctx, w.tenant, service.RoleRelay, "relay")
	if err != nil {
		t.Fatal(err)
	}
	tenantRelay, err := w.svc.Authenticate(ctx, relayKey)
	if err != nil {
		t.Fatal(err)
	}
	deployment := service.Principal{Role: service.RoleRelay, CredentialID: "relay:serve"}
	other, _, err := w.svc.CreateTenant(ctx, "Other", "eu")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := w.svc.CreateAPIKey(ctx, other.ID, service.RoleRelay, "relay")
	if err != nil {
		t.Fatal(err)
	}
	otherRelay, err := w.svc.Authenticate(ctx, otherKey)
	if err != nil {
		t.Fatal(err)
	}

	beat := func(p service.Principal, id string, load int) error {
		return gws.Heartbeat(ctx, p, service.GatewayHeartbeat{ID: id, PublicAddr: id + ".example:443", UDPAddr: id + ".example:3478", Capacity: 100, Load: load})
	}
	for _, b := range []struct {
		p    service.Principal
		id   string
		load int
	}{{tenantRelay, "gw-a", 50}, {tenantRelay, "gw-b", 10}, {deployment, "gw-shared", 30}, {otherRelay, "gw-other", 0}} {
		if err := beat(b.p, b.id, b.load); err != nil {
			t.Fatalf("heartbeat %s: %v", b.id, err)
		}
	}

	group := w.group(nil)
	sess, err := w.svc.CreateSession(ctx, w.ingest, service.NewSession{Queue: domain.QueueShared, GroupID: group}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := gws.List(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Another tenant's own gateway is never offered; the deployment's is.
	if diff := cmp.Diff([]string{"gw-b", "gw-shared", "gw-a"}, gatewayIDs(list)); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if list[0].PublicAddr != "gw-b.example:443" || list[0].UDPAddr != "gw-b.example:3478" {
		t.Errorf("first gateway %+v", list[0])
	}

	// Refusals.
	if err := beat(otherRelay, "gw-a", 0); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("another tenant takes gw-a: %v, want conflict", err)
	}
	if err := gws.Heartbeat(ctx, tenantRelay, service.GatewayHeartbeat{ID: "gw-x", Region: "us", PublicAddr: "x:1", Capacity: 1}); !errors.Is(err, domain.ErrForbidden) {
		t.Errorf("a gateway of another region: %v, want forbidden", err)
	}
	if err := gws.Heartbeat(ctx, w.admin, service.GatewayHeartbeat{ID: "gw-x", PublicAddr: "x:1", Capacity: 1}); !errors.Is(err, domain.ErrForbidden) {
		t.Errorf("an admin key heartbeats: %v, want forbidden", err)
	}
	if err := gws.Heartbeat(ctx, tenantRelay, service.GatewayHeartbeat{ID: "gw-x", PublicAddr: "no-port", Capacity: 1}); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Errorf("a gateway without a port: %v, want invalid", err)
	}
	if _, err := gws.List(ctx, "0123456789abcdef0123456789abcdef"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("list for an unknown session: %v, want not found", err)
	}

	// gw-a and gw-shared go silent; the others keep beating.
	w.clock.Advance(10 * time.Second)
	for _, p := range []struct {
		p  service.Principal
		id string
	}{{tenantRelay, "gw-b"}, {otherRelay, "gw-other"}} {
		if err := beat(p.p, p.id, 0); err != nil {
			t.Fatal(err)
		}
	}
	w.clock.Advance(10 * time.Second)
	// Not yet marked: the list already leaves them out.
	if list, err = gws.List(ctx, sess.ID); err != nil || !slices.Equal(gatewayIDs(list), []string{"gw-b"}) {
		t.Errorf("list after silence: %v %v, want gw-b", gatewayIDs(list), err)
	}
	if n, err := gws.CheckHeartbeats(ctx); err != nil || n != 2 {
		t.Fatalf("watchdog marked %d (%v), want 2", n, err)
	}
	if n, err := gws.CheckHeartbeats(ctx); err != nil || n != 0 {
		t.Fatalf("watchdog marked %d again (%v), want 0", n, err)
	}
	// gw-a comes back.
	if err := beat(tenantRelay, "gw-a", 0); err != nil {
		t.Fatal(err)
	}
	if list, err = gws.List(ctx, sess.ID); err != nil || !slices.Equal(gatewayIDs(list), []string{"gw-a", "gw-b"}) {
		t.Errorf("list after gw-a is back: %v %v", gatewayIDs(list), err)
	}

	want := []string{
		"tenant.gateway_registered gw-a", "tenant.gateway_registered gw-b", "tenant.gateway_registered gw-shared",
		"tenant.gateway_down gw-a", "tenant.gateway_down gw-shared", "tenant.gateway_up gw-a",
	}
	got := w.gatewayEvents(w.tenant)
	slices.Sort(got[3:5]) // the watchdog's order among gateways is free
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tenant's registry events (-want +got):\n%s", diff)
	}
	// The deployment gateway is recorded in every tenant of the region.
	wantOther := []string{"tenant.gateway_registered gw-shared", "tenant.gateway_registered gw-other", "tenant.gateway_down gw-shared"}
	if diff := cmp.Diff(wantOther, w.gatewayEvents(other.ID)); diff != "" {
		t.Errorf("other tenant's registry events (-want +got):\n%s", diff)
	}

	// A closed session gets no list.
	w.must(w.ingest, sess.ID, `{"type":"close"}`)
	if _, err := gws.List(ctx, sess.ID); !errors.Is(err, domain.ErrSessionClosed) {
		t.Errorf("list for a closed session: %v, want session_closed", err)
	}
}

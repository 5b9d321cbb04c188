package httpapi_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
)

// twoNodes starts two API stacks on one database, each with its own store,
// ledger writer and service (so its own caches): two `vigil serve` nodes.
func twoNodes(t *testing.T) (a, b *env) {
	t.Helper()
	db := pgtest.New(t)
	mk, signer, verifier := ledgertest.Keys(t)
	clk := &clock{}
	node := func() *env {
		st := postgres.NewStore(db.Pool, postgres.Options{})
		t.Cleanup(st.Close)
		sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
		l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
		go l.Run(context.Background())
		t.Cleanup(l.Close)
		svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu", Now: clk.Now})
		srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: svc}))
		t.Cleanup(srv.Close)
		return &env{t: t, srv: srv, svc: svc, store: st, ledger: l, verifier: verifier, clock: clk}
	}
	a, b = node(), node()
	ctx := context.Background()
	tenant, admin, err := a.svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	_, ingest, err := a.svc.CreateAPIKey(ctx, tenant.ID, service.RoleIngest, "applet")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*env{a, b} {
		n.tenant, n.admin, n.ingest = tenant.ID, admin, ingest
	}
	return a, b
}

// TestSecurityChangesOnOneNodeHoldOnTheOtherAtOnce: a permission removed, a
// technician disabled or an API key revoked through node A is refused by
// node B on the very next request, with no wait, after B has used (and
// cached) the credential, the technician, the group and the session.
func TestSecurityChangesOnOneNodeHoldOnTheOtherAtOnce(t *testing.T) {
	a, b := twoNodes(t)
	gid := a.group(nil, nil)
	tech := a.technician(gid, "ada@example.com")
	tok := a.token("ada@example.com")
	sid := a.want(a.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}), 201, "").str("id")
	b.want(b.command(b.ingest, sid, map[string]any{"type": "connect_customer", "platform": "windows"}), 200, "")
	b.want(b.command(tok, sid, map[string]any{"type": "pick_up"}), 200, "")
	b.want(b.command(tok, sid, map[string]any{"type": "request_consent", "action": "system_info"}), 200, "")
	b.want(b.command(b.ingest, sid, map[string]any{"type": "grant_consent", "action": "system_info"}), 200, "")
	// B has served the technician, its group and the session: warm caches.
	b.want(b.command(tok, sid, map[string]any{"type": "view_system_info"}), 200, "")

	// A permission removed on A: B refuses the command at once.
	perms := map[string]bool{}
	for k, v := range allPermissions {
		perms[k] = v
	}
	perms["system_info"] = false
	a.want(a.do("PATCH", "/v1/groups/"+gid, a.admin, map[string]any{"permissions": perms}), 200, "")
	b.want(b.command(tok, sid, map[string]any{"type": "view_system_info"}), 403, "permission_denied")

	// A technician disabled on A: B refuses its token at once.
	b.want(b.command(tok, sid, map[string]any{"type": "note", "text": "still here"}), 200, "")
	a.want(a.do("POST", "/v1/technicians/"+tech+"/disable", a.admin, map[string]any{"reason": "left"}), 200, "")
	b.want(b.command(tok, sid, map[string]any{"type": "note", "text": "after disable"}), 401, "unauthenticated")

	// An API key revoked on A: B refuses it at once.
	ctx := context.Background()
	key, secret, err := a.svc.CreateAPIKey(ctx, a.tenant, service.RoleIngest, "second applet")
	if err != nil {
		t.Fatal(err)
	}
	b.want(b.command(secret, sid, map[string]any{"type": "chat", "from": "customer", "text": "hello"}), 200, "")
	if err := a.svc.RevokeAPIKey(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	b.want(b.command(secret, sid, map[string]any{"type": "chat", "from": "customer", "text": "again"}), 401, "unauthenticated")
}

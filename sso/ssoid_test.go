package sso_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/domain"
)

// TestOpaqueSSOID: an IdP whose NameID is an opaque id (here an Okta-like
// user id) logs in a technician whose e-mail address differs, once an admin
// set it as the technician's SSO id, on any node at once (node A sets it,
// node B maps it: both read PostgreSQL); the id is unique in the tenant,
// sealed in technician.sso_id_set, stored by just-in-time provisioning,
// looked up before e-mail addresses, and clearing it unmaps it.
func TestOpaqueSSOID(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t, 2)
	a, b := nodes[0], nodes[1]
	idp := newForgedIdP(t, "https://idp.forged.test/metadata")
	if r := a.do("POST", "/v1/sso/saml", a.admin, map[string]any{"metadata_xml": idp.metadata(), "jit_group_id": a.group}); r.status != http.StatusOK {
		t.Fatalf("configure: %d %s", r.status, r.raw)
	}
	const opaque = "00U1A2B3C4D5E6F7G8H9"
	if r := b.forgedLogin(t, idp, opaque); r.status != http.StatusUnauthorized {
		t.Fatalf("an unmapped opaque id (not an e-mail, so not provisioned): %d %s", r.status, r.raw)
	}
	if r := a.do("PUT", "/v1/technicians/"+a.alice+"/sso", a.login(t, "alice@example.test", testPassword, "", "").str("token"), map[string]any{"sso_id": opaque}); r.status != http.StatusForbidden {
		t.Fatalf("a technician setting an SSO id: %d %s", r.status, r.raw)
	}
	if r := a.do("PUT", "/v1/technicians/"+a.alice+"/sso", a.admin, map[string]any{"sso_id": " 00u1a2b3c4d5e6f7g8h9 "}); r.status != http.StatusOK || r.str("id") != a.alice {
		t.Fatalf("set alice's SSO id on A: %d %s", r.status, r.raw)
	}
	if r := b.forgedLogin(t, idp, opaque); r.status != http.StatusOK || r.str("technician_id") != a.alice {
		t.Fatalf("the opaque NameID on B: %d %s, want alice %s", r.status, r.raw, a.alice)
	}
	set := a.events("technician-"+a.alice, "technician.sso_id_set")
	if len(set) != 1 || field(t, set[0], "sso_id") != strings.ToLower(opaque) || strings.Contains(string(set[0].Data), "00u1") ||
		set[0].Actor.Kind != domain.ActorAdmin {
		t.Fatalf("sso_id_set (sso_id sealed, by the admin): %+v", set)
	}
	if s := a.events("technician-"+a.alice, "technician.sso_login_succeeded"); len(s) != 1 || field(t, s[0], "sso_id") != strings.ToLower(opaque) {
		t.Fatalf("sso_login_succeeded: %+v", s)
	}

	// Just-in-time provisioning stores the id it provisioned from.
	r := a.forgedLogin(t, idp, "Carol@Example.test")
	carol := r.str("technician_id")
	if r.status != http.StatusOK || carol == "" || carol == a.alice {
		t.Fatalf("provision carol: %d %s", r.status, r.raw)
	}
	if s := a.events("technician-"+carol, "technician.sso_id_set"); len(s) != 1 || field(t, s[0], "sso_id") != "carol@example.test" ||
		s[0].Actor.ID != "sso" {
		t.Fatalf("provisioned carol's sso_id_set: %+v", s)
	}

	// Unique in the tenant.
	if r := b.do("PUT", "/v1/technicians/"+carol+"/sso", b.admin, map[string]any{"sso_id": opaque}); r.status != http.StatusConflict || r.code() != "conflict" {
		t.Fatalf("alice's id for carol: %d %s", r.status, r.raw)
	}
	if s := a.events("technician-"+carol, "technician.sso_id_set"); len(s) != 1 {
		t.Fatalf("a refused id was recorded: %+v", s)
	}
	if r := b.do("PUT", "/v1/technicians/"+carol+"/sso", b.admin, map[string]any{"sso_id": strings.Repeat("x", 257)}); r.status != http.StatusBadRequest {
		t.Fatalf("a 257-character id: %d %s", r.status, r.raw)
	}

	// Cleared on B: the opaque id maps nobody on A; alice's e-mail still
	// maps her.
	if r := b.do("PUT", "/v1/technicians/"+a.alice+"/sso", b.admin, map[string]any{"sso_id": ""}); r.status != http.StatusOK {
		t.Fatalf("clear: %d %s", r.status, r.raw)
	}
	if r := a.forgedLogin(t, idp, opaque); r.status != http.StatusUnauthorized {
		t.Fatalf("a cleared id on A: %d %s", r.status, r.raw)
	}
	if r := a.forgedLogin(t, idp, "alice@example.test"); r.status != http.StatusOK || r.str("technician_id") != a.alice {
		t.Fatalf("alice by e-mail: %d %s", r.status, r.raw)
	}

	// An SSO id is looked up before e-mail addresses.
	if r := a.do("PUT", "/v1/technicians/"+carol+"/sso", a.admin, map[string]any{"sso_id": "alice@example.test"}); r.status != http.StatusOK {
		t.Fatalf("alice's address as carol's SSO id: %d %s", r.status, r.raw)
	}
	if r := b.forgedLogin(t, idp, "alice@example.test"); r.status != http.StatusOK || r.str("technician_id") != carol {
		t.Fatalf("an SSO id before an e-mail address: %d %s, want carol %s", r.status, r.raw, carol)
	}
}

package sso_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"net/http"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/projections"
	"github.com/vigilhq/vigil/webhooks"
)

// TestSSOEventsAreEvidence: the SSO configuration, logins, refusals and
// disables are in the logins report (GraphQL and CSV, the address opened
// for an admin), fanned out to a webhook subscription, and in an auditor
// bundle that verifies offline.
func TestSSOEventsAreEvidence(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	idp := newForgedIdP(t, "https://idp.forged.test/metadata")
	types := []string{"tenant.sso_configured", "technician.sso_login_succeeded", "technician.sso_login_failed", "technician.sso_disabled"}
	hooks := webhooks.NewService(webhooks.Config{Pool: w.pool, Ledger: w.ledger})
	if _, err := hooks.Create(ctx, service.Principal{Tenant: w.tenant, Role: service.RoleAdmin, CredentialID: "test"},
		webhooks.NewSubscription{URL: "https://crm.example.test/vigil", EventTypes: types}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if r := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_xml": idp.metadata()}); r.status != http.StatusOK {
		t.Fatalf("configure: %d %s", r.status, r.raw)
	}
	if r := w.forgedLogin(t, idp, "alice@example.test"); r.status != http.StatusOK {
		t.Fatalf("login: %d %s", r.status, r.raw)
	}
	id := w.startLogin(t)
	c := w.claims(idp, "alice@example.test", id)
	if r := w.postACS(t, encode(t, c.response(nil, c.assertion())), id); r.status != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d %s", r.status, r.raw)
	}
	w.do("POST", "/v1/technicians/"+w.alice+"/sso/disable", w.admin, nil)
	if r := w.forgedLogin(t, idp, "alice@example.test"); r.status != http.StatusForbidden {
		t.Fatalf("login with the SSO id disabled: %d %s", r.status, r.raw)
	}

	runner := projections.NewRunner(w.pool, w.ledger.Store(), projections.Options{},
		projections.NewReporting(w.sealer), projections.NewSubjects(), webhooks.NewFanout(webhooks.Config{Pool: w.pool, Ledger: w.ledger}))
	if err := runner.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}

	// GraphQL.
	q := w.do("POST", "/graphql", w.admin, map[string]any{"query": `{ logins(first: 50) { edges { node { technicianId outcome reason method ip } } } }`})
	if q.status != http.StatusOK || q.body["errors"] != nil {
		t.Fatalf("graphql: %d %s", q.status, q.raw)
	}
	var rows []string
	for _, e := range q.body["data"].(map[string]any)["logins"].(map[string]any)["edges"].([]any) {
		n := e.(map[string]any)["node"].(map[string]any)
		ip, _ := n["ip"].(string)
		reason, _ := n["reason"].(string)
		tech, _ := n["technicianId"].(string)
		rows = append(rows, strings.Join([]string{tech, n["outcome"].(string), reason, n["method"].(string), ip}, " "))
	}
	want := []string{
		" sso_configured configured saml ",
		w.alice + " succeeded  saml 127.0.0.1",
		" failed bad_signature saml ",
		w.alice + " sso_disabled  saml ",
		w.alice + " failed sso_disabled saml 127.0.0.1",
	}
	if !slices.Equal(rows, want) {
		t.Fatalf("logins report:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}

	// CSV.
	req, _ := http.NewRequest("GET", w.srv.URL+"/v1/reports/logins.csv", nil)
	req.Header.Set("Authorization", "Bearer "+w.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil || len(recs) != 6 || recs[0][len(recs[0])-1] != "method" || recs[2][len(recs[2])-1] != "saml" || recs[2][4] != "succeeded" {
		t.Fatalf("logins.csv: %v %v", recs, err)
	}

	// Webhooks: one delivery per event of the subscribed types.
	var got []string
	dr, err := w.pool.Query(ctx, `SELECT event_type FROM webhook_deliveries WHERE tenant = $1 ORDER BY position`, w.tenant)
	if err != nil {
		t.Fatal(err)
	}
	for dr.Next() {
		var s string
		_ = dr.Scan(&s)
		got = append(got, s)
	}
	dr.Close()
	wantHooks := []string{"tenant.sso_configured", "technician.sso_login_succeeded", "technician.sso_login_failed", "technician.sso_disabled", "technician.sso_login_failed"}
	if !slices.Equal(got, wantHooks) {
		t.Fatalf("webhook deliveries %v, want %v", got, wantHooks)
	}

	// An auditor bundle holds them and verifies offline.
	var bundle bytes.Buffer
	if _, err := compliance.NewAuditor(w.ledger).Export(ctx, compliance.ExportRequest{Tenant: w.tenant, To: -1,
		Actor: domain.Actor{Kind: domain.ActorAdmin, ID: "auditor-test"}}, &bundle); err != nil {
		t.Fatal(err)
	}
	for _, typ := range types {
		if !bytes.Contains(bundle.Bytes(), []byte(`"type":"`+typ+`"`)) {
			t.Errorf("the bundle lacks %s", typ)
		}
	}
	rep, err := compliance.VerifyBundle(bytes.NewReader(bundle.Bytes()), compliance.BundleVerifyOptions{Verifiers: note.VerifierList(w.verifier), Origin: "vigil.test"})
	if err != nil {
		t.Fatalf("verify bundle: %v", err)
	}
	if rep.Tenant != w.tenant || rep.Events == 0 {
		t.Fatalf("bundle report %+v", rep)
	}
}

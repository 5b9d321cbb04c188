package compliance_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/projections"
	"golang.org/x/mod/sumdb/note"
)

// checkGone asserts that no table and nothing readable holds any needle.
func (w *world) checkGone(sc scenario, needles ...string) {
	w.t.Helper()
	seen := w.readable(sc)
	for _, n := range needles {
		if hits := w.tableHits(n); len(hits) > 0 {
			w.t.Errorf("%q still stored in %v", n, hits)
		}
		if strings.Contains(strings.ToLower(seen), strings.ToLower(n)) {
			w.t.Errorf("%q still readable through export or timeline", n)
		}
	}
}

// checkPresent asserts that every needle is readable.
func (w *world) checkPresent(sc scenario, needles ...string) {
	w.t.Helper()
	seen := strings.ToLower(w.readable(sc))
	for _, n := range needles {
		if !strings.Contains(seen, strings.ToLower(n)) {
			w.t.Errorf("%q is not readable, want it kept", n)
		}
	}
}

func (w *world) checkReceipt(e compliance.Erasure, wantKeys int) compliance.ErasureReceipt {
	w.t.Helper()
	if e.State != compliance.ErasureDone || e.Receipt == "" {
		w.t.Fatalf("erasure %s: state %s, receipt %q", e.ID, e.State, e.Receipt)
	}
	r, err := compliance.VerifyErasureReceipt([]byte(e.Receipt), note.VerifierList(w.verifier))
	if err != nil {
		w.t.Fatalf("receipt does not verify: %v\n%s", err, e.Receipt)
	}
	if r.Subject != e.Subject || r.Tenant != w.tenant || r.Request != e.ID || len(r.Keys) != wantKeys || len(r.Events) != wantKeys {
		w.t.Errorf("receipt %+v does not match erasure %+v", r, e)
	}
	for _, ev := range r.Events {
		got, err := w.store.ReadAll(context.Background(), ev.Position-1, 1)
		if err != nil || len(got) != 1 || got[0].Type != "compliance.subject_erased" || got[0].LeafHash != ev.LeafHash {
			w.t.Errorf("receipt event at %d is not the stored subject_erased: %v %v", ev.Position, got, err)
		}
	}
	// A forged receipt fails.
	forged := strings.Replace(e.Receipt, "scope "+e.Scope, "scope forged", 1)
	if _, err := compliance.VerifyErasureReceipt([]byte(forged), note.VerifierList(w.verifier)); err == nil {
		w.t.Error("an altered receipt verifies")
	}
	return r
}

func TestEraseSession(t *testing.T) {
	w := newWorld(t)
	sc := w.scenario()
	ctx := context.Background()
	needles := []string{customerName, customerEmail, chatText, customerIP, noteText, fileName, customField}
	w.checkPresent(sc, needles...)
	// A stored API answer naming the session (as a session creation's
	// would) is purged too.
	_, err := w.db.Pool.Exec(ctx, `INSERT INTO idempotency_keys (tenant, principal, key, request_hash, status, body)
		VALUES ($1, 'k', 'x', '\x00', 201, convert_to($2, 'UTF8'))`, w.tenant, `{"id":"`+sc.session+`","customer_name":"`+customerName+`"}`)
	w.must(err)

	e, err := w.gdpr.RequestErasure(ctx, w.admin, compliance.ErasureRequest{Subject: "session:" + sc.session, Delay: dur(0)})
	w.must(err)
	r := w.checkReceipt(e, 2)
	if r.Keys[0].Subject != domain.SessionSubject(sc.session) || r.Keys[1].Subject != domain.ChatSubject(sc.session) {
		t.Errorf("receipt keys %+v", r.Keys)
	}
	if r.EventsAffected == 0 || r.ProjectionRows == 0 {
		t.Errorf("receipt counts %+v", r)
	}
	w.project()
	w.checkGone(sc, needles...)
	// The other session and the technician stay readable.
	w.checkPresent(sc, "Other Person", "unrelated chat", techName, techEmail)
	// Nothing new can be sealed for the erased session.
	c, _ := service.DecodeCommand([]byte(`{"type":"chat","from":"customer","text":"again"}`))
	if _, err := w.svc.SessionCommand(ctx, w.ingest, sc.session, c, [16]byte{}); err == nil {
		t.Error("a chat message was accepted for an erased session")
	}
	w.verifyLog()
}

func TestEraseTechnician(t *testing.T) {
	w := newWorld(t)
	sc := w.scenario()
	ctx := context.Background()
	needles := []string{techName, techEmail, techIP}
	w.checkPresent(sc, needles...)
	e, err := w.gdpr.RequestErasure(ctx, w.admin, compliance.ErasureRequest{Subject: "technician:" + sc.tech, Delay: dur(0)})
	w.must(err)
	w.checkReceipt(e, 1)
	w.project()
	w.checkGone(sc, needles...)
	w.checkPresent(sc, customerName, chatText)
	if _, err := w.store.Credential(ctx, w.tenant, sc.tech); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("credential after erasure: %v", err)
	}
	if _, err := w.svc.Authenticate(ctx, "x"); err == nil {
		t.Error("nonsense token accepted")
	}
	if _, err := w.svc.Login(ctx, service.LoginRequest{Email: techEmail, Password: password}); err == nil {
		t.Error("an erased technician can log in")
	}
	w.verifyLog()
}

func TestErasureDelayAndRevoke(t *testing.T) {
	w := newWorld(t)
	sc := w.scenario()
	ctx := context.Background()
	subject := "session:" + sc.session
	e, err := w.gdpr.RequestErasure(ctx, w.admin, compliance.ErasureRequest{Subject: subject})
	w.must(err)
	if e.State != compliance.ErasurePending || !e.DueAt.Equal(e.RequestedAt.Add(24*time.Hour)) {
		t.Fatalf("default request: %+v", e)
	}
	w.clock.Add(23 * time.Hour)
	if n, err := w.gdpr.ProcessDue(ctx); err != nil || n != 0 {
		t.Fatalf("before due: %d, %v", n, err)
	}
	r, err := w.gdpr.RevokeErasure(ctx, w.admin, e.ID, "customer withdrew")
	w.must(err)
	if r.State != compliance.ErasureRevoked {
		t.Fatalf("revoked: %+v", r)
	}
	if r2, err := w.gdpr.RevokeErasure(ctx, w.admin, e.ID, ""); err != nil || r2.State != compliance.ErasureRevoked {
		t.Errorf("second revoke: %+v %v", r2, err)
	}
	w.clock.Add(48 * time.Hour)
	if n, err := w.gdpr.ProcessDue(ctx); err != nil || n != 0 {
		t.Fatalf("revoked request performed: %d, %v", n, err)
	}
	w.checkPresent(sc, customerName, chatText, customerEmail)

	// Another request runs when due, and then cannot be revoked.
	e2, err := w.gdpr.RequestErasure(ctx, w.admin, compliance.ErasureRequest{Subject: subject, Delay: dur(time.Hour)})
	w.must(err)
	w.clock.Add(2 * time.Hour)
	if n, err := w.gdpr.ProcessDue(ctx); err != nil || n != 1 {
		t.Fatalf("due request: %d, %v", n, err)
	}
	if _, err := w.gdpr.RevokeErasure(ctx, w.admin, e2.ID, ""); domain.ErrorCode(err) != domain.CodeConflict {
		t.Errorf("revoking a done erasure: %v, want conflict", err)
	}
	got, err := w.gdpr.Erasure(ctx, w.admin, e2.ID)
	w.must(err)
	w.checkReceipt(got, 2)
	types := w.streamTypes(domain.SessionStream(sc.session))
	for _, want := range []string{"compliance.erasure_requested", "compliance.erasure_revoked", "compliance.subject_erased"} {
		if !strings.Contains(types, want) {
			t.Errorf("stream lacks %s: %s", want, types)
		}
	}
	w.project()
	w.checkGone(sc, customerName, chatText, customerEmail)
}

func (w *world) streamTypes(stream string) string {
	w.t.Helper()
	evs, err := w.store.ReadStream(context.Background(), w.tenant, stream, 0)
	w.must(err)
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Type + " ")
	}
	return b.String()
}

func TestErasureCrashResumes(t *testing.T) {
	for _, step := range []string{"plan", "shred", "purge", "hooks", "append"} {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t)
			sc := w.scenario()
			ctx := context.Background()
			crash := errors.New("crash")
			compliance.SetFailAfter(w.gdpr, func(s string) error {
				if s == step {
					return crash
				}
				return nil
			})
			_, err := w.gdpr.RequestErasure(ctx, w.admin, compliance.ErasureRequest{Subject: "session:" + sc.session, Delay: dur(0)})
			if !errors.Is(err, crash) {
				t.Fatalf("request with a crash: %v", err)
			}
			var id string
			w.must(w.db.Pool.QueryRow(ctx, `SELECT id::text FROM erasure_requests`).Scan(&id))
			e, err := w.gdpr.Erasure(ctx, w.admin, id)
			w.must(err)
			if e.State != compliance.ErasureRunning {
				t.Errorf("state after a crash: %s, want running", e.State)
			}
			if _, err := w.gdpr.RevokeErasure(ctx, w.admin, id, ""); domain.ErrorCode(err) != domain.CodeConflict {
				t.Errorf("revoking a started erasure: %v, want conflict", err)
			}
			compliance.SetFailAfter(w.gdpr, nil)
			if n, err := w.gdpr.ProcessDue(ctx); err != nil || n != 1 {
				t.Fatalf("resume: %d, %v", n, err)
			}
			e, err = w.gdpr.Erasure(ctx, w.admin, id)
			w.must(err)
			r := w.checkReceipt(e, 2)
			if r.ProjectionRows == 0 || r.EventsAffected == 0 {
				t.Errorf("counts lost across the crash: %+v", r)
			}
			if n := strings.Count(w.streamTypes(domain.SessionStream(sc.session)), "compliance.subject_erased"); n != 2 {
				t.Errorf("%d subject_erased events, want 2", n)
			}
			w.project()
			w.checkGone(sc, customerName, customerEmail, chatText, customerIP)
			w.verifyLog()
		})
	}
}

func TestChatOnlyErasure(t *testing.T) {
	w := newWorld(t)
	sc := w.scenario()
	ctx := context.Background()
	e, err := w.gdpr.RequestErasure(ctx, w.admin, compliance.ErasureRequest{Subject: "session:" + sc.session, Scope: compliance.ScopeChat, Delay: dur(0)})
	w.must(err)
	r := w.checkReceipt(e, 1)
	if r.Keys[0].Subject != domain.ChatSubject(sc.session) {
		t.Errorf("chat erasure destroyed %v", r.Keys)
	}
	w.project()
	w.checkGone(sc, chatText)
	w.checkPresent(sc, customerName, customerEmail, noteText, fileName, "unrelated chat")
	var chats, sessions int
	w.must(w.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM rpt_chat WHERE guid = $1), (SELECT count(*) FROM rpt_sessions WHERE guid = $1 AND customer_name_ref IS NOT NULL)`,
		sc.session).Scan(&chats, &sessions))
	if chats != 0 || sessions != 1 {
		t.Errorf("after chat erasure: %d chat rows, %d session rows with a name", chats, sessions)
	}
	if _, err := w.gdpr.RequestErasure(ctx, w.admin, compliance.ErasureRequest{Subject: "technician:" + sc.tech, Scope: compliance.ScopeChat}); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Errorf("chat scope for a technician: %v", err)
	}
	w.verifyLog()
}

// TestGDPRAccess: a wrong role is forbidden (docs/api.md), as on every
// endpoint; another tenant's subject is not found.
func TestGDPRAccess(t *testing.T) {
	w := newWorld(t)
	sc := w.scenario()
	ctx := context.Background()
	if _, err := w.gdpr.ExportSubject(ctx, sc.techP, "session:"+sc.session); domain.ErrorCode(err) != domain.CodeForbidden {
		t.Errorf("technician export: %v", err)
	}
	if _, err := w.gdpr.RequestErasure(ctx, w.ingest, compliance.ErasureRequest{Subject: "session:" + sc.session}); domain.ErrorCode(err) != domain.CodeForbidden {
		t.Errorf("ingest erasure: %v", err)
	}
	other := w.admin
	other.Tenant = "another-tenant"
	if _, err := w.gdpr.ExportSubject(ctx, other, "session:"+sc.session); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Errorf("export from another tenant: %v", err)
	}
	if _, err := w.gdpr.RequestErasure(ctx, w.admin, compliance.ErasureRequest{Subject: "group:x"}); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Errorf("bad subject: %v", err)
	}
}

// TestRebuildAfterErasure: a projection rebuild projects the erased
// subjects' events again; PurgeAfterRebuild, run in the rebuild's
// transaction, must leave every projection table exactly as the erasures
// left it.
func TestRebuildAfterErasure(t *testing.T) {
	w := newWorld(t)
	sc := w.scenario()
	ctx := context.Background()
	for _, req := range []compliance.ErasureRequest{
		{Subject: "session:" + sc.session, Delay: dur(0)},
		{Subject: "technician:" + sc.tech, Delay: dur(0)},
	} {
		_, err := w.gdpr.RequestErasure(ctx, w.admin, req)
		w.must(err)
	}
	w.project()
	snapshot := func() map[string]string {
		out := map[string]string{}
		for _, table := range []string{"rpt_sessions", "rpt_chat", "rpt_notes", "rpt_file_transfers", "rpt_consents",
			"rpt_actions", "rpt_logins", "rpt_recordings", "rpt_subject_index"} {
			var s *string
			w.must(w.db.Pool.QueryRow(ctx, `SELECT string_agg(t::text, E'\n' ORDER BY t::text) FROM `+table+` t`).Scan(&s))
			if s != nil {
				out[table] = *s
			}
		}
		return out
	}
	before := snapshot()
	if !strings.Contains(before["rpt_sessions"], sc.session) {
		t.Fatalf("the erased session's row is gone before the rebuild (purge clears its personal columns, keeps the row): %v", before["rpt_sessions"])
	}
	rebuild := func(opts projections.Options) {
		r := projections.NewRunner(w.db.Pool, w.store, opts, projections.NewReporting(w.sealer), projections.NewSubjects())
		for _, p := range r.Projections() {
			if _, err := r.Rebuild(ctx, p, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Without the hook the rows come back (what the hook is for)...
	rebuild(projections.Options{})
	if after := snapshot(); mapsEqual(after, before) {
		t.Fatal("a plain rebuild left the erased rows out: the test would prove nothing")
	}
	// ...with it, the tables are as the erasures left them.
	rebuild(projections.Options{AfterRebuild: compliance.PurgeAfterRebuild})
	after := snapshot()
	for table := range before {
		if after[table] != before[table] {
			t.Errorf("%s after rebuild differs from after erasure:\nbefore:\n%s\nafter:\n%s", table, before[table], after[table])
		}
	}
	for table := range after {
		if _, ok := before[table]; !ok {
			t.Errorf("%s has rows again after the rebuild:\n%s", table, after[table])
		}
	}
	// Idempotent: a second run purges nothing.
	tx, err := w.db.Pool.Begin(ctx)
	w.must(err)
	defer tx.Rollback(ctx)
	if n, err := compliance.PurgeAfterRebuild(ctx, tx); err != nil || n != 0 {
		t.Errorf("second PurgeAfterRebuild: %d rows, %v", n, err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestErasureCatchesUpProjections: an erasure while the projections are
// behind must not leave rows that they project after its purge. With
// CatchUp the erasure brings them up to date first.
func TestErasureCatchesUpProjections(t *testing.T) {
	for _, withCatchUp := range []bool{false, true} {
		t.Run(fmt.Sprint("catch-up=", withCatchUp), func(t *testing.T) {
			w := newWorld(t)
			sc := w.scenario()
			ctx := context.Background()
			// The projections fall behind: as if the whole scenario had
			// not been projected yet.
			tx, err := w.db.Pool.Begin(ctx)
			w.must(err)
			for _, p := range w.runner.Projections() {
				w.must(p.Reset(ctx, tx))
			}
			_, err = tx.Exec(ctx, `UPDATE projection_positions SET position = 0`)
			w.must(err)
			w.must(tx.Commit(ctx))

			cfg := w.gdprCfg
			if withCatchUp {
				cfg.CatchUp = w.runner.CatchUp
			}
			_, err = compliance.NewGDPR(cfg).RequestErasure(ctx, w.admin, compliance.ErasureRequest{Subject: "session:" + sc.session, Delay: dur(0)})
			w.must(err)
			w.project()
			var chat, index int
			w.must(w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM rpt_chat WHERE guid = $1`, sc.session).Scan(&chat))
			w.must(w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM rpt_subject_index WHERE subject LIKE '%' || $1`, sc.session).Scan(&index))
			var refs bool
			w.must(w.db.Pool.QueryRow(ctx, `SELECT customer_name_ref IS NOT NULL FROM rpt_sessions WHERE guid = $1`, sc.session).Scan(&refs))
			if withCatchUp && (chat != 0 || index != 0 || refs) {
				t.Errorf("after an erasure that caught the projections up: %d chat rows, %d index rows, name reference kept %v", chat, index, refs)
			}
			if !withCatchUp && chat == 0 {
				t.Error("without catching up, no row came back: the test proves nothing")
			}
			// The index forgets the subject either way (subject_erased).
			if index != 0 {
				t.Errorf("%d index rows of the erased session", index)
			}
		})
	}
}

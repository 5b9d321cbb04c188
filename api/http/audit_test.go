package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type auditEnv struct {
	t        *testing.T
	srv      *httptest.Server
	ledger   *ledger.Ledger
	verifier note.Verifier
	tenant   string
	auditor  string // API keys
	admin    string
	ingest   string
	other    string // another tenant
	otherKey string // its auditor
}

func newAuditEnv(t *testing.T) *auditEnv {
	t.Helper()
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, verifier := ledgertest.Keys(t)
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu"})
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: svc, Audit: compliance.NewAuditor(l)}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	e := &auditEnv{t: t, srv: srv, ledger: l, verifier: verifier}
	var err error
	tenant, admin, err := svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	e.tenant, e.admin = tenant.ID, admin
	if _, e.auditor, err = svc.CreateAPIKey(ctx, tenant.ID, service.RoleAuditor, "auditor"); err != nil {
		t.Fatal(err)
	}
	if _, e.ingest, err = svc.CreateAPIKey(ctx, tenant.ID, service.RoleIngest, "applet"); err != nil {
		t.Fatal(err)
	}
	other, _, err := svc.CreateTenant(ctx, "Other", "eu")
	if err != nil {
		t.Fatal(err)
	}
	e.other = other.ID
	if _, e.otherKey, err = svc.CreateAPIKey(ctx, other.ID, service.RoleAuditor, "auditor"); err != nil {
		t.Fatal(err)
	}
	return e
}

// chats appends n chat events to a new session of tenant and returns them.
func (e *auditEnv) chats(tenant string, n int) []domain.Event {
	e.t.Helper()
	var out []domain.Event
	for i := 0; i < n; i++ {
		ev := ledgertest.Chat(e.t, tenant, "s1", "hello")
		stored, err := e.ledger.Append(context.Background(), ev.Stream, ledger.AnyVersion, ev)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, stored...)
	}
	return out
}

func (e *auditEnv) call(method, path, cred string, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cred)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res, b
}

func (e *auditEnv) getJSON(path, cred string, v any) {
	e.t.Helper()
	res, b := e.call("GET", path, cred, "")
	if res.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		e.t.Fatal(err)
	}
}

func (e *auditEnv) latest(cred string) ledger.ParsedCheckpoint {
	e.t.Helper()
	res, b := e.call("GET", "/v1/checkpoints/latest", cred, "")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		e.t.Fatalf("latest checkpoint: %d %s", res.StatusCode, b)
	}
	p, err := ledger.OpenCheckpoint(b, note.VerifierList(e.verifier))
	if err != nil {
		e.t.Fatalf("latest checkpoint: %v", err)
	}
	if p.Origin != "vigil.test/"+e.tenant {
		e.t.Fatalf("origin %q", p.Origin)
	}
	return p
}

func TestExportEndpointStreamsAVerifiableBundle(t *testing.T) {
	e := newAuditEnv(t)
	e.chats(e.tenant, 10)

	res, b := e.call("POST", "/v1/exports", e.auditor, `{"from": 2, "open": true}`)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != compliance.BundleContentType {
		t.Fatalf("export: %d %s", res.StatusCode, b)
	}
	rep, err := compliance.VerifyBundle(bytes.NewReader(b), compliance.BundleVerifyOptions{Verifiers: note.VerifierList(e.verifier)})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.FromSeq != 2 || rep.Events != 9 || !rep.Opened || rep.Tenant != e.tenant {
		t.Errorf("report %+v", rep)
	}
	sum := sha256.Sum256(b)
	if got := res.Trailer.Get("Vigil-Bundle-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("trailer digest %q, bundle %x", got, sum)
	}
	if !bytes.Contains(b, []byte(`"value":"\"hello\""`)) && !bytes.Contains(b, []byte(`"value":"hello"`)) {
		t.Errorf("opened chat text missing")
	}

	// Since the checkpoint of this export.
	since := header(t, b).Checkpoint.Note
	e.chats(e.tenant, 3)
	body, _ := json.Marshal(map[string]any{"from": 12, "since": since})
	res, b = e.call("POST", "/v1/exports", e.auditor, string(body))
	if res.StatusCode != 200 {
		t.Fatalf("export since: %d %s", res.StatusCode, b)
	}
	if rep, err := compliance.VerifyBundle(bytes.NewReader(b), compliance.BundleVerifyOptions{Verifiers: note.VerifierList(e.verifier), Since: []byte(since)}); err != nil || rep.SinceSize == 0 {
		t.Fatalf("verify since: %v %+v", err, rep)
	}

	for _, tt := range []struct {
		name, cred, body string
		status           int
	}{
		{"admin may not export", e.admin, `{}`, 403},
		{"ingest may not export", e.ingest, `{}`, 403},
		{"bad range", e.auditor, `{"from": 5, "to": 2}`, 400},
		{"beyond the log", e.auditor, `{"to": 100000}`, 400},
		{"unknown field", e.auditor, `{"fromm": 1}`, 400},
		{"since of another log", e.auditor, `{"since": "vigil.test/x\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— x sig\n"}`, 400},
		{"no credential", "", `{}`, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.call("POST", "/v1/exports", tt.cred, tt.body)
			if res.StatusCode != tt.status || !strings.Contains(string(b), `"code"`) {
				t.Errorf("got %d %s, want %d with a JSON error", res.StatusCode, b, tt.status)
			}
		})
	}
}

func header(t *testing.T, b []byte) compliance.BundleHeader {
	t.Helper()
	var h compliance.BundleHeader
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if err := json.Unmarshal(line, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestProofEndpoints(t *testing.T) {
	e := newAuditEnv(t)
	evs := e.chats(e.tenant, 20)
	if _, err := e.ledger.Checkpoint(context.Background(), e.tenant); err != nil {
		t.Fatal(err)
	}
	cp := e.latest(e.admin)
	if cp != e.latest(e.auditor) {
		t.Error("admin and auditor see different checkpoints")
	}

	t.Run("inclusion", func(t *testing.T) {
		for _, seq := range []int64{0, 7, cp.Size - 1} {
			var p compliance.InclusionProof
			e.getJSON("/v1/proofs/inclusion?seq="+itoa(seq)+"&size="+itoa(cp.Size), e.auditor, &p)
			if p.Root != cp.Root || p.Size != cp.Size || p.Seq != seq {
				t.Fatalf("proof %+v does not name the signed root", p)
			}
			if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Root, seq, p.LeafHash); err != nil {
				t.Errorf("seq %d: %v", seq, err)
			}
		}
		ev := evs[5]
		var p compliance.InclusionProof
		e.getJSON("/v1/proofs/inclusion?seq="+itoa(ev.Seq), e.admin, &p) // size defaults to the latest
		if p.LeafHash != ev.LeafHash || tlog.CheckRecord(p.Proof, cp.Size, cp.Root, ev.Seq, ledger.LeafHash(&ev)) != nil {
			t.Errorf("the proof does not prove the event's own leaf hash")
		}
	})
	t.Run("consistency", func(t *testing.T) {
		var p compliance.ConsistencyProof
		e.getJSON("/v1/proofs/consistency?from=3&to="+itoa(cp.Size), e.auditor, &p)
		if p.ToRoot != cp.Root {
			t.Fatal("to_root is not the signed root")
		}
		if err := tlog.CheckTree(p.Proof, cp.Size, cp.Root, 3, p.FromRoot); err != nil {
			t.Error(err)
		}
		// The from root is the one an inclusion proof at size 3 names.
		var ip compliance.InclusionProof
		e.getJSON("/v1/proofs/inclusion?seq=0&size=3", e.auditor, &ip)
		if ip.Root != p.FromRoot {
			t.Error("from_root differs from the tree of size 3")
		}
	})
	t.Run("receipt", func(t *testing.T) {
		more := e.chats(e.tenant, 1)[0] // newer than the latest checkpoint
		var r compliance.EventReceipt
		e.getJSON("/v1/events/"+more.ID.String()+"/receipt", e.auditor, &r)
		c, err := ledger.OpenCheckpoint([]byte(r.Checkpoint), note.VerifierList(e.verifier))
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != more.Seq || r.LeafHash != ledger.LeafHash(&more) || c.Size <= more.Seq {
			t.Fatalf("receipt %+v", r)
		}
		if err := tlog.CheckRecord(r.Inclusion.Proof, c.Size, c.Root, r.Seq, r.LeafHash); err != nil {
			t.Error(err)
		}
	})
	for _, tt := range []struct {
		name, path, cred string
		status           int
	}{
		{"ingest may not", "/v1/checkpoints/latest", e.ingest, 403},
		{"seq beyond size", "/v1/proofs/inclusion?seq=30&size=5", e.auditor, 400},
		{"seq missing", "/v1/proofs/inclusion?size=5", e.auditor, 400},
		{"size beyond the log", "/v1/proofs/inclusion?seq=1&size=100000", e.auditor, 400},
		{"from 0", "/v1/proofs/consistency?from=0&to=5", e.auditor, 400},
		{"from after to", "/v1/proofs/consistency?from=9&to=5", e.auditor, 400},
		{"not a number", "/v1/proofs/consistency?from=x", e.auditor, 400},
		{"receipt of another tenant's event", "/v1/events/" + evs[0].ID.String() + "/receipt", e.otherKey, 404},
		{"receipt of an unknown event", "/v1/events/0190b5a4-0000-7000-8000-000000000000/receipt", e.auditor, 404},
		{"receipt of a malformed id", "/v1/events/nope/receipt", e.auditor, 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.call("GET", tt.path, tt.cred, "")
			if res.StatusCode != tt.status || !strings.Contains(string(b), `"code"`) {
				t.Errorf("got %d %s, want %d", res.StatusCode, b, tt.status)
			}
		})
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// httpTiles is a tlog.TileReader over the tlog endpoints: a standard tlog
// client of the tenant's log.
type httpTiles struct {
	e    *auditEnv
	cred string
}

func (h httpTiles) Height() int { return compliance.TileHeight }

func (h httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		// C2SP paths carry no height: tile/<L>/<N>[.p/<W>].
		path := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", t.H))
		res, b := h.e.call("GET", "/v1/tlog/tile/"+path, h.cred, "")
		if res.StatusCode != 200 {
			return nil, fmt.Errorf("tile %s: %d %s", path, res.StatusCode, b)
		}
		out[i] = b
	}
	return out, nil
}

func (h httpTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// TestTlogTiles: a generic tlog client that knows only the checkpoint and
// the hash tiles proves inclusion and consistency against signed roots.
func TestTlogTiles(t *testing.T) {
	e := newAuditEnv(t)
	evs := e.chats(e.tenant, 600) // more than two full tiles of leaves
	if err := e.ledger.CheckpointAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, note0 := e.call("GET", "/v1/tlog/checkpoint", e.auditor, "")
	if res.StatusCode != 200 {
		t.Fatalf("checkpoint: %d %s", res.StatusCode, note0)
	}
	cp, err := ledger.OpenCheckpoint(note0, note.VerifierList(e.verifier))
	if err != nil {
		t.Fatal(err)
	}
	tree := tlog.Tree{N: cp.Size, Hash: cp.Root}
	hr := tlog.TileHashReader(tree, httpTiles{e: e, cred: e.auditor})
	for _, ev := range []domain.Event{evs[0], evs[255], evs[256], evs[599]} {
		proof, err := tlog.ProveRecord(cp.Size, ev.Seq, hr)
		if err != nil {
			t.Fatalf("prove seq %d from tiles: %v", ev.Seq, err)
		}
		if err := tlog.CheckRecord(proof, cp.Size, cp.Root, ev.Seq, ev.LeafHash); err != nil {
			t.Fatalf("seq %d: %v", ev.Seq, err)
		}
	}
	// Consistency of an older tree with the checkpoint, from tiles alone.
	old := int64(300)
	oldRoot, err := tlog.TreeHash(old, hr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tlog.ProveTree(cp.Size, old, hr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(p, cp.Size, cp.Root, old, oldRoot); err != nil {
		t.Fatal(err)
	}
	// Full tiles are immutable; past the checkpoint, malformed, other roles
	// and entry bundles are refused.
	res, _ = e.call("GET", "/v1/tlog/tile/0/000", e.auditor, "")
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("full tile: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	for path, want := range map[string]int{
		"0/003":       404, // leaves 768-1023: past 600
		"0/002.p/100": 404, // 612 leaves
		"0/002.p/88":  200, // exactly 600
		"1/000":       404, // a full level-1 tile covers 65,536 leaves
		"1/000.p/2":   200,
		"7/000":       404,
		"0/abc":       400,
		"entries/000": 404,
	} {
		res, b := e.call("GET", "/v1/tlog/tile/"+path, e.auditor, "")
		if res.StatusCode != want {
			t.Errorf("tile %s: %d %s, want %d", path, res.StatusCode, b, want)
		}
	}
	if res, _ := e.call("GET", "/v1/tlog/tile/0/000", e.ingest, ""); res.StatusCode != 403 {
		t.Errorf("ingest key read a tile: %d", res.StatusCode)
	}
	// Another tenant's auditor sees its own (empty) log, not this one.
	if res, _ := e.call("GET", "/v1/tlog/tile/0/000", e.otherKey, ""); res.StatusCode == 200 {
		t.Error("another tenant's auditor read this tenant's tile")
	}
}

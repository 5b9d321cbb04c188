package compliance_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
)

const tenant = "acme"

func newStore(tb testing.TB) ledger.Store {
	db := pgtest.New(tb)
	s := postgres.NewStore(db.Pool, postgres.Options{})
	tb.Cleanup(s.Close)
	return s
}

type fixture struct {
	t       *testing.T
	env     *ledgertest.Env
	auditor *compliance.Auditor
	ctx     context.Context
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := ledgertest.NewEnv(t, newStore, ledger.Options{})
	return &fixture{t: t, env: env, auditor: compliance.NewAuditor(env.Ledger), ctx: context.Background()}
}

// appendEvent appends payload p on stream and returns the stored event.
func (f *fixture) appendEvent(stream string, actor domain.ActorKind, p domain.Payload) domain.Event {
	f.t.Helper()
	e, err := domain.NewEvent(domain.Meta{Tenant: tenant, Stream: stream, Actor: domain.Actor{Kind: actor, ID: "t1"}}, p)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := f.env.Ledger.Append(f.ctx, stream, ledger.AnyVersion, e)
	if err != nil {
		f.t.Fatal(err)
	}
	return out[0]
}

// session writes one support session with a consent and the remote control
// that relies on it, and returns the session's stream and the consent id.
func (f *fixture) session() (string, uuid.UUID) {
	f.t.Helper()
	guid := strings.ReplaceAll(uuid.NewString(), "-", "")
	s := domain.SessionStream(guid)
	f.appendEvent(s, domain.ActorSystem, domain.SessionCreated{GUID: guid, PIN: "123456", Queue: domain.QueueShared, GroupID: "g1", CustomerName: "Alice Example"})
	f.appendEvent(s, domain.ActorTechnician, domain.SessionPickedUp{TechnicianID: "t1", GroupID: "g1"})
	req := f.appendEvent(s, domain.ActorTechnician, domain.ConsentRequested{TechnicianID: "t1", Action: domain.ActionRemoteControl})
	grant := f.appendEvent(s, domain.ActorCustomer, domain.ConsentGranted{Action: domain.ActionRemoteControl, RequestEventID: req.ID})
	f.appendEvent(s, domain.ActorCustomer, domain.ChatMessage{From: domain.ChatFromCustomer, Text: "hello from " + guid})
	f.appendEvent(s, domain.ActorTechnician, domain.RemoteControlStarted{TechnicianID: "t1", ConsentEventID: grant.ID})
	return s, grant.ID
}

func (f *fixture) export(req compliance.ExportRequest) ([]byte, compliance.ExportResult) {
	f.t.Helper()
	if req.Tenant == "" {
		req.Tenant = tenant
	}
	if req.Actor.Kind == "" {
		req.Actor = domain.Actor{Kind: domain.ActorSystem, ID: "test"}
	}
	var buf bytes.Buffer
	res, err := f.auditor.Export(f.ctx, req, &buf)
	if err != nil {
		f.t.Fatalf("export: %v", err)
	}
	return buf.Bytes(), res
}

func (f *fixture) verify(b []byte, since []byte) (compliance.BundleReport, error) {
	return compliance.VerifyBundle(bytes.NewReader(b), compliance.BundleVerifyOptions{Verifiers: note.VerifierList(f.env.Verifier), Since: since})
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

// lines splits a bundle into its lines, each with its newline.
func lines(b []byte) [][]byte {
	ls := bytes.SplitAfter(b, []byte("\n"))
	if len(ls[len(ls)-1]) == 0 {
		ls = ls[:len(ls)-1]
	}
	return ls
}

func TestExportThenVerifyOffline(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 5; i++ {
		f.session()
	}
	b, res := f.export(compliance.ExportRequest{To: -1})
	if res.Count != 30 || res.FromSeq != 0 || res.ToSeq != 29 || res.TreeSize != 30 {
		t.Fatalf("result %+v", res)
	}
	rep, err := f.verify(b, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Events != 30 || rep.PrivilegedActions != 5 || rep.CheckpointSize != 30 || rep.Streams != 5 {
		t.Errorf("report %+v", rep)
	}
	if sum := sha256.Sum256(b); sum != res.SHA256 || int64(len(b)) != res.Bytes {
		t.Errorf("result digest/size do not match the bundle")
	}
	if bytes.Contains(b, []byte("Alice Example")) {
		t.Error("a sealed field is in clear in a bundle that was not opened")
	}

	// The export is itself an event on the tenant stream.
	evs, err := f.env.Ledger.ReadStream(f.ctx, tenant, domain.TenantStream(tenant), 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("tenant stream: %d events, %v", len(evs), err)
	}
	p, err := domain.Decode(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	got, ok := p.(*domain.AuditExportCreated)
	if !ok {
		t.Fatalf("payload %T", p)
	}
	want := domain.AuditExportCreated{FromSeq: 0, ToSeq: 29, TreeSize: 30, RootHash: hex.EncodeToString(res.Root[:]), SHA256: hex.EncodeToString(res.SHA256[:])}
	if *got != want {
		t.Errorf("export event %+v, want %+v", *got, want)
	}
	if evs[0].ID != res.EventID {
		t.Errorf("event id %s, result %s", evs[0].ID, res.EventID)
	}
	if _, err := f.env.Verify(f.ctx); err != nil {
		t.Errorf("the log no longer verifies: %v", err)
	}
}

func TestExportOpened(t *testing.T) {
	f := newFixture(t)
	f.session()
	b, _ := f.export(compliance.ExportRequest{To: -1, Open: true})
	if _, err := f.verify(b, nil); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !header(t, b).Opened {
		t.Error("header does not say opened")
	}
	var found bool
	for _, l := range lines(b)[1:] {
		var ev compliance.BundleEvent
		_ = json.Unmarshal(l, &ev)
		for _, o := range ev.Opened {
			if o.Name == "customer_name" && string(o.Value) == `"Alice Example"` {
				found = true
				// The ciphertext stays in the leaf.
				e, err := ledger.DecodeLeaf(ev.Leaf)
				if err != nil || len(e.Sealed) == 0 {
					t.Errorf("opened event lost its ciphertext: %v", err)
				}
			}
		}
	}
	if !found {
		t.Error("customer_name not opened")
	}
}

func TestExportRangeAndTamper(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 4; i++ {
		f.session()
	}
	cp, err := f.env.Ledger.Checkpoint(f.ctx, tenant) // size 24
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		f.session()
	}
	// A range in the middle, ending before the latest checkpoint: the prefix
	// hashes and the tail proof carry the tree.
	b, res := f.export(compliance.ExportRequest{From: 7, To: 20})
	if res.Count != 14 || res.TreeSize != cp.Size {
		t.Fatalf("result %+v, want 14 events under the checkpoint of size %d", res, cp.Size)
	}
	h := header(t, b)
	if len(h.Prefix) != 3 || len(h.TailProof) == 0 {
		t.Fatalf("prefix %d hashes, tail proof %d", len(h.Prefix), len(h.TailProof))
	}
	if _, err := f.verify(b, nil); err != nil {
		t.Fatalf("verify: %v", err)
	}

	ls := lines(b)
	join := func(ls [][]byte) []byte { return bytes.Join(ls, nil) }
	replaceLine := func(i int, fn func(ev *compliance.BundleEvent)) []byte {
		var ev compliance.BundleEvent
		if err := json.Unmarshal(ls[i], &ev); err != nil {
			t.Fatal(err)
		}
		fn(&ev)
		nb, _ := json.Marshal(ev)
		out := append([][]byte{}, ls...)
		out[i] = append(nb, '\n')
		return join(out)
	}
	otherSigner := func() note.Signer {
		skey, _, _ := note.GenerateKey(rand.Reader, "vigil.test")
		s, _ := note.NewSigner(skey)
		return s
	}
	withHeader := func(fn func(h *compliance.BundleHeader)) []byte {
		h := header(t, b)
		fn(&h)
		nb, _ := json.Marshal(h)
		out := append([][]byte{}, ls...)
		out[0] = append(nb, '\n')
		return join(out)
	}
	// A byte of the leaf, flipped in the file's base64 text.
	flipped := append([]byte{}, b...)
	i := bytes.Index(flipped, []byte(`"leaf":"`)) + len(`"leaf":"`) + 40
	if flipped[i] == 'A' {
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}

	tests := []struct {
		name   string
		bundle []byte
		want   string
	}{
		{"one byte of a leaf altered in the file", flipped, "seq 7, position"},
		{"one byte of a leaf altered with its leaf hash", replaceLine(3, func(ev *compliance.BundleEvent) {
			ev.Leaf[bytes.Index(ev.Leaf, []byte(`{"`))+2] ^= 1 // a letter of the data's first key
			ev.LeafHash = sha256.Sum256(append([]byte{0}, ev.Leaf...))
		}), "an event was altered, added or removed"},
		{"leaf altered, hash kept", replaceLine(5, func(ev *compliance.BundleEvent) { ev.Leaf[30] ^= 0x20 }), "seq 11"},
		{"an event dropped", join(append(append([][]byte{}, ls[:4]...), ls[5:]...)), "leaf 10 is missing"},
		{"the last event dropped", join(append(append([][]byte{}, ls[:14]...), ls[15:]...)), "events were removed"},
		{"the end record dropped", join(ls[:len(ls)-1]), "truncated"},
		{"checkpoint signed by another key", withHeader(func(h *compliance.BundleHeader) {
			n, _ := ledger.SignCheckpoint(otherSigner(), h.Origin, h.Checkpoint.Size, h.Checkpoint.Root)
			h.Checkpoint.Note = string(n)
		}), "checkpoint: the signature does not verify"},
		{"checkpoint text forged", withHeader(func(h *compliance.BundleHeader) {
			h.Checkpoint.Note = strings.Replace(h.Checkpoint.Note, fmt.Sprintf("\n%d\n", h.Checkpoint.Size), fmt.Sprintf("\n%d\n", h.Checkpoint.Size+1), 1)
		}), "checkpoint: the signature does not verify"},
		{"checkpoint of another tenant", withHeader(func(h *compliance.BundleHeader) {
			h.Tenant = "other"
			h.Origin = "vigil.test/other"
		}), `signed origin "vigil.test/acme"`},
		{"tail proof altered", withHeader(func(h *compliance.BundleHeader) { h.TailProof[0][0] ^= 1 }), "is not a prefix of the signed checkpoint"},
		{"prefix hash altered", withHeader(func(h *compliance.BundleHeader) { h.Prefix[0][0] ^= 1 }), "is not a prefix of the signed checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.verify(tt.bundle, nil)
			var be *compliance.BundleError
			if !errors.As(err, &be) {
				t.Fatalf("err = %v, want a *BundleError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to name %q", err, tt.want)
			}
		})
	}
}

func TestConsistencyBetweenTwoExports(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 3; i++ {
		f.session()
	}
	first, _ := f.export(compliance.ExportRequest{To: -1})
	older := []byte(header(t, first).Checkpoint.Note)
	for i := 0; i < 3; i++ {
		f.session()
	}

	t.Run("since inside the range", func(t *testing.T) {
		b, _ := f.export(compliance.ExportRequest{To: -1, Since: older})
		rep, err := f.verify(b, older)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if rep.SinceSize != 18 {
			t.Errorf("since size %d, want 18", rep.SinceSize)
		}
	})
	t.Run("since before the range, by proof", func(t *testing.T) {
		b, _ := f.export(compliance.ExportRequest{From: 25, To: -1, Since: older})
		rep, err := f.verify(b, older)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if rep.SinceSize != 18 {
			t.Errorf("since size %d, want 18", rep.SinceSize)
		}
		// Without the proof, the auditor's checkpoint cannot be related.
		h := header(t, b)
		h.Since = nil
		hb, _ := json.Marshal(h)
		_, rest, _ := bytes.Cut(b, []byte("\n"))
		_, err = f.verify(append(append(hb, '\n'), rest...), older)
		if err == nil || !strings.Contains(err.Error(), "carries no consistency proof") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a forked checkpoint fails", func(t *testing.T) {
		p, err := compliance.VerifyBundle(bytes.NewReader(first), compliance.BundleVerifyOptions{Verifiers: note.VerifierList(f.env.Verifier)})
		if err != nil {
			t.Fatal(err)
		}
		forged, _ := ledger.SignCheckpoint(f.env.Signer, "vigil.test/"+tenant, p.CheckpointSize, [32]byte{1})
		var buf bytes.Buffer
		_, err = f.auditor.Export(f.ctx, compliance.ExportRequest{Tenant: tenant, To: -1, Since: forged, Actor: domain.Actor{Kind: domain.ActorSystem}}, &buf)
		if domain.ErrorCode(err) != domain.CodeInvalid || buf.Len() != 0 {
			t.Errorf("export since a forked checkpoint: %v, %d bytes written", err, buf.Len())
		}
		b, _ := f.export(compliance.ExportRequest{From: 25, To: -1, Since: older})
		_, err = f.verify(b, forged)
		if err == nil || !strings.Contains(err.Error(), "the --since checkpoint") {
			t.Errorf("verify against a forked checkpoint: %v", err)
		}
	})
}

func TestPrivilegedActionWithoutConsentIsFlagged(t *testing.T) {
	f := newFixture(t)
	s, grant := f.session()
	f.session()
	// Forged: a remote control citing a consent that was never given,
	// written through the ledger so that the log itself is valid.
	forged := f.appendEvent(s, domain.ActorTechnician, domain.RemoteControlStarted{TechnicianID: "t1", ConsentEventID: uuid.Must(uuid.NewV7())})
	// A consent revoked by a transfer, then relied on.
	f.appendEvent(s, domain.ActorTechnician, domain.SessionTransferred{FromTechnicianID: "t1", ToTechnicianID: "t2", ToGroupID: "g1"})
	revoked := f.appendEvent(s, domain.ActorTechnician, domain.RemoteControlStarted{TechnicianID: "t2", ConsentEventID: grant})
	if _, err := f.env.Verify(f.ctx); err != nil {
		t.Fatalf("the log itself must verify: %v", err)
	}

	b, _ := f.export(compliance.ExportRequest{To: -1})
	_, err := f.verify(b, nil)
	var ce *compliance.ConsentError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConsentError", err)
	}
	if len(ce.Findings) != 2 {
		t.Fatalf("findings: %v", err)
	}
	if ce.Findings[0].Seq != forged.Seq || !strings.Contains(ce.Findings[0].Reason, "neither a consent_granted") {
		t.Errorf("first finding %v, want seq %d", ce.Findings[0], forged.Seq)
	}
	if ce.Findings[1].Seq != revoked.Seq || !strings.Contains(ce.Findings[1].Reason, "revoked by the transfer") {
		t.Errorf("second finding %v, want seq %d", ce.Findings[1], revoked.Seq)
	}
}

func TestConsentBeforeTheBundleIsProven(t *testing.T) {
	f := newFixture(t)
	s, grant := f.session()                                                                                        // seq 0..5, the grant at 3
	f.appendEvent(s, domain.ActorTechnician, domain.DesktopViewStarted{TechnicianID: "t1", ConsentEventID: grant}) // wrong action
	f.appendEvent(s, domain.ActorTechnician, domain.RemoteControlEnded{Reason: "technician"})
	f.appendEvent(s, domain.ActorTechnician, domain.RemoteControlStarted{TechnicianID: "t1", ConsentEventID: grant}) // seq 8
	b, _ := f.export(compliance.ExportRequest{From: 7, To: -1})
	if n := bytes.Count(b, []byte(`"prior_consents":[{`)); n != 1 {
		t.Fatalf("no prior consent in the end record")
	}
	rep, err := f.verify(b, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.PriorConsents != 1 || rep.PrivilegedActions != 1 {
		t.Errorf("report %+v", rep)
	}
	// From 6, the desktop view citing a remote-control consent is flagged.
	b, _ = f.export(compliance.ExportRequest{From: 6, To: -1})
	_, err = f.verify(b, nil)
	if err == nil || !strings.Contains(err.Error(), "seq 6") || !strings.Contains(err.Error(), "needs consent to desktop_view") {
		t.Errorf("err = %v", err)
	}
	// A prior consent whose proof is altered fails the bundle.
	b, _ = f.export(compliance.ExportRequest{From: 7, To: -1})
	i := bytes.Index(b, []byte(`"proof":["`)) + len(`"proof":["`)
	// Another valid base64 character, so that the proof decodes but is
	// wrong (flipping a bit could make it undecodable instead).
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	if _, err := f.verify(b, nil); err == nil || !strings.Contains(err.Error(), "prior consent") {
		t.Errorf("err = %v", err)
	}
}

func TestExportRefusals(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	_, err := f.auditor.Export(f.ctx, compliance.ExportRequest{Tenant: tenant, To: -1}, &buf)
	if domain.ErrorCode(err) != domain.CodeNotFound {
		t.Errorf("empty tenant: %v", err)
	}
	f.session()
	for _, req := range []compliance.ExportRequest{{From: 4, To: 2}, {To: 6}, {From: -1, To: -1}, {To: -1, Since: []byte("not a note")}} {
		req.Tenant = tenant
		_, err := f.auditor.Export(f.ctx, req, &buf)
		if domain.ErrorCode(err) != domain.CodeInvalid {
			t.Errorf("%+v: %v", req, err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("refused exports wrote %d bytes", buf.Len())
	}
}

func FuzzVerifyBundle(f *testing.F) {
	h := compliance.BundleHeader{Record: "header", Format: compliance.BundleFormat, Tenant: "t", Origin: "x/t", Count: 1, Prefix: nil}
	hb, _ := json.Marshal(h)
	f.Add(append(hb, '\n'))
	f.Add([]byte(`{"record":"event","seq":0,"leaf":"` + base64.StdEncoding.EncodeToString([]byte(ledger.LeafPrefix)) + `"}`))
	f.Add([]byte(`{"record":"end","count":0,"prior_consents":[{"seq":-1}]}`))
	skey, vkey, _ := note.GenerateKey(rand.Reader, "x")
	_ = skey
	v, _ := note.NewVerifier(vkey)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = compliance.VerifyBundle(bytes.NewReader(b), compliance.BundleVerifyOptions{Verifiers: note.VerifierList(v)})
	})
}

package ledger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func sampleEvent() domain.Event {
	return domain.Event{
		ID:         uuid.MustParse("01890a5d-ac96-774b-bcce-b302099a8057"),
		Tenant:     "acme",
		Stream:     "session-0123456789abcdef0123456789abcdef",
		Version:    7,
		Type:       "session.chat_message",
		Schema:     1,
		OccurredAt: time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC),
		RecordedAt: time.Date(2026, 11, 26, 10, 0, 1, 0, time.UTC),
		Actor:      domain.Actor{Kind: domain.ActorCustomer, ID: "c1"},
		Data:       []byte(`{"from":"customer"}`),
		Sealed: []domain.SealedField{{
			Name: "text", Subject: "session:0123456789abcdef0123456789abcdef", KeyID: "k1",
			Nonce: bytes.Repeat([]byte{1}, 12), Ciphertext: []byte("ciphertext and tag"),
		}},
	}
}

func TestLeafRoundTrip(t *testing.T) {
	cases := map[string]func(*domain.Event){
		"Full":      func(*domain.Event) {},
		"NoSealed":  func(e *domain.Event) { e.Sealed = nil },
		"EmptyData": func(e *domain.Event) { e.Data = []byte{} },
		"Unicode":   func(e *domain.Event) { e.Actor.ID = "tëchnician ☃" },
		"PreEpoch":  func(e *domain.Event) { e.OccurredAt = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			e := sampleEvent()
			mod(&e)
			b := ledger.EncodeLeaf(&e)
			got, err := ledger.DecodeLeaf(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ledger.EncodeLeaf(&got), b) {
				t.Fatal("re-encoding the decoded leaf changes it")
			}
			if got.ID != e.ID || got.Version != e.Version || !got.OccurredAt.Equal(e.OccurredAt) || got.Actor != e.Actor {
				t.Errorf("decoded %+v", got)
			}
			if diff := cmp.Diff(e.Sealed, got.Sealed); diff != "" && len(e.Sealed) > 0 {
				t.Errorf("sealed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLeafHashCoversEveryField(t *testing.T) {
	base := ledger.LeafHash(ptr(sampleEvent()))
	mods := map[string]func(*domain.Event){
		"ID":         func(e *domain.Event) { e.ID[15] ^= 1 },
		"Tenant":     func(e *domain.Event) { e.Tenant = "acme2" },
		"Stream":     func(e *domain.Event) { e.Stream += "0" },
		"Version":    func(e *domain.Event) { e.Version++ },
		"Type":       func(e *domain.Event) { e.Type = "session.note_added" },
		"Schema":     func(e *domain.Event) { e.Schema = 2 },
		"OccurredAt": func(e *domain.Event) { e.OccurredAt = e.OccurredAt.Add(time.Microsecond) },
		"RecordedAt": func(e *domain.Event) { e.RecordedAt = e.RecordedAt.Add(time.Microsecond) },
		"ActorKind":  func(e *domain.Event) { e.Actor.Kind = domain.ActorAdmin },
		"ActorID":    func(e *domain.Event) { e.Actor.ID = "c2" },
		"Data":       func(e *domain.Event) { e.Data = []byte(`{"from":"technician"}`) },
		"Ciphertext": func(e *domain.Event) { e.Sealed[0].Ciphertext = []byte("ciphertext and taG") },
		"Nonce":      func(e *domain.Event) { e.Sealed[0].Nonce = bytes.Repeat([]byte{2}, 12) },
		"KeyID":      func(e *domain.Event) { e.Sealed[0].KeyID = "k2" },
		"FieldName":  func(e *domain.Event) { e.Sealed[0].Name = "txt" },
		// Moving bytes between adjacent fields must change the hash too:
		// every field is length-prefixed.
		"Boundary": func(e *domain.Event) { e.Tenant, e.Stream = "acmes", e.Stream[1:] },
	}
	for name, mod := range mods {
		t.Run(name, func(t *testing.T) {
			e := sampleEvent()
			e.Sealed = append([]domain.SealedField(nil), e.Sealed...)
			mod(&e)
			if ledger.LeafHash(&e) == base {
				t.Errorf("changing %s does not change the leaf hash", name)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestDecodeLeafRejectsGarbage(t *testing.T) {
	good := ledger.EncodeLeaf(ptr(sampleEvent()))
	cases := map[string][]byte{
		"Empty":     nil,
		"Prefix":    append([]byte("vigil/leaf/v2\n"), good[len(ledger.LeafPrefix):]...),
		"Truncated": good[:len(good)-1],
		"Trailing":  append(append([]byte{}, good...), 0),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ledger.DecodeLeaf(b); !errors.Is(err, ledger.ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzLeafRoundTrip(f *testing.F) {
	f.Add(ledger.EncodeLeaf(ptr(sampleEvent())))
	e := sampleEvent()
	e.Sealed = nil
	f.Add(ledger.EncodeLeaf(&e))
	f.Add([]byte(ledger.LeafPrefix))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ledger.DecodeLeaf(b)
		if err != nil {
			return
		}
		// Whatever decodes must be canonical: it encodes back to the very
		// same bytes, so one event has one leaf hash.
		if again := ledger.EncodeLeaf(&ev); !bytes.Equal(again, b) {
			t.Fatalf("decode/encode not canonical:\n in  %x\n out %x", b, again)
		}
	})
}

func TestFrontierMatchesTlog(t *testing.T) {
	// Stored hashes kept in a map, as tlog expects of a HashReader.
	stored := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	var f ledger.Frontier
	for n := int64(0); n < 300; n++ {
		leaf := tlog.RecordHash([]byte{byte(n), byte(n >> 8)})
		want, err := tlog.StoredHashesForRecordHash(n, leaf, reader)
		if err != nil {
			t.Fatal(err)
		}
		got := f.Append(nil, leaf)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("stored hashes of record %d differ (-tlog +frontier):\n%s", n, diff)
		}
		for i, h := range want {
			stored[tlog.StoredHashIndex(0, n)+int64(i)] = h
		}
		root, err := tlog.TreeHash(n+1, reader)
		if err != nil {
			t.Fatal(err)
		}
		if f.Root() != root {
			t.Fatalf("root of %d leaves differs from tlog.TreeHash", n+1)
		}
		// The frontier rebuilt from stored hashes is the same frontier.
		idx := ledger.FrontierIndexes(n + 1)
		hs, _ := reader.ReadHashes(idx)
		g, err := ledger.LoadFrontier(n+1, hs)
		if err != nil {
			t.Fatal(err)
		}
		if g != f {
			t.Fatalf("frontier of %d leaves does not rebuild from stored hashes", n+1)
		}
	}
}

func TestCheckpointParse(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "vigil.test")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	root := tlog.RecordHash([]byte("x"))
	msg, err := ledger.SignCheckpoint(signer, "vigil.test/acme", 42, root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ledger.OpenCheckpoint(msg, note.VerifierList(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if p.Origin != "vigil.test/acme" || p.Size != 42 || p.Root != root {
		t.Errorf("parsed %+v", p)
	}
	for name, body := range map[string]string{
		"NoRoot":      "o\n42\n",
		"BadSize":     "o\n042\n" + "AAAA\n",
		"NegSize":     "o\n-1\nAAAA\n",
		"ShortRoot":   "o\n1\nAAAA\n",
		"EmptyOrigin": "\n1\nAAAA\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ledger.ParseCheckpointBody(body); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// memKeys is an in-memory KeyStore for sealing unit tests; the contract
// suite runs the real stores.
type memKeys struct{ keys map[string]ledger.WrappedKey }

func (m *memKeys) SubjectKey(_ context.Context, tenant string, s domain.Subject) (ledger.WrappedKey, error) {
	for _, k := range m.keys {
		if k.Tenant == tenant && k.Subject == s {
			return k, nil
		}
	}
	return ledger.WrappedKey{}, domain.ErrNotFound
}
func (m *memKeys) SubjectKeyByID(_ context.Context, id string) (ledger.WrappedKey, error) {
	k, ok := m.keys[id]
	if !ok {
		return k, domain.ErrNotFound
	}
	return k, nil
}
func (m *memKeys) CreateSubjectKey(ctx context.Context, k ledger.WrappedKey) (ledger.WrappedKey, error) {
	if old, err := m.SubjectKey(ctx, k.Tenant, k.Subject); err == nil {
		return old, nil
	}
	m.keys[k.KeyID] = k
	return k, nil
}
func (m *memKeys) DestroySubjectKey(ctx context.Context, tenant string, s domain.Subject) (string, error) {
	k, err := m.SubjectKey(ctx, tenant, s)
	if err != nil {
		return "", err
	}
	k.Wrapped = nil
	m.keys[k.KeyID] = k
	return k.KeyID, nil
}
func (m *memKeys) RewrapSubjectKeys(context.Context, func(ledger.WrappedKey) (ledger.WrappedKey, error)) (int, error) {
	return 0, errors.New("not needed here")
}

func TestSealedFieldsAreBoundToTheirEvent(t *testing.T) {
	ctx := context.Background()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	mk, _ := ledger.NewMasterKey(raw)
	s := ledger.NewSealer(&memKeys{keys: map[string]ledger.WrappedKey{}}, ledger.NewKeyring(mk), 0)
	newEvent := func() domain.Event {
		e, err := domain.NewEvent(domain.Meta{Tenant: "acme", Stream: domain.SessionStream("ab"), Actor: domain.Actor{Kind: domain.ActorCustomer}},
			domain.ChatMessage{From: "customer", Text: "secret"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := newEvent(), newEvent()
	for _, e := range []*domain.Event{&a, &b} {
		if err := s.Seal(ctx, e); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(e.Sealed[0].Ciphertext, []byte("secret")) || len(e.Personal) != 0 {
			t.Fatal("sealing left clear text")
		}
	}
	if a.Sealed[0].KeyID != b.Sealed[0].KeyID {
		t.Error("one subject got two keys")
	}
	if bytes.Equal(a.Sealed[0].Nonce, b.Sealed[0].Nonce) {
		t.Error("nonce reused")
	}
	// Moving a ciphertext to another event must fail to open.
	moved := b
	moved.Sealed = []domain.SealedField{a.Sealed[0]}
	if err := s.Open(ctx, &moved); err == nil {
		t.Error("a ciphertext opened under another event id")
	}
	renamed := a
	renamed.Sealed = []domain.SealedField{a.Sealed[0]}
	renamed.Sealed[0].Name = "from"
	if err := s.Open(ctx, &renamed); err == nil {
		t.Error("a ciphertext opened under another field name")
	}
	if err := s.Open(ctx, &a); err != nil || string(a.Personal[0].Value) != `"secret"` {
		t.Errorf("open: %v %v", err, a.Personal)
	}
}

func TestMasterKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := ledger.NewMasterKey(make([]byte, n)); err == nil {
			t.Errorf("master key of %d bytes accepted", n)
		}
	}
}

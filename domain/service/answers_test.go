package service_test

import (
	"bytes"
	"testing"

	"github.com/vigilhq/vigil/domain/service"
)

// TestStoredAnswersAreSealed: the answer of an idempotent request is
// stored sealed (the name and address it carries are nowhere in the
// table), with the ids it names in clear for erasure, and a repeat gets it
// back as it was.
func TestStoredAnswersAreSealed(t *testing.T) {
	w := newWorld(t)
	store := w.svc.Idempotency()
	k := service.IdempotencyKey{Tenant: w.tenant, Principal: w.admin.CredentialID, Key: "create-ada"}
	body := []byte(`{"id":"u4nqzjx3xkqtqyhb","group_id":"g5abcdefghijklmn","email":"ada.lovelace@example.com","name":"Ada Lovelace"}`)
	if _, claimed, err := store.Claim(w.ctx, k, []byte("hash"), w.clock.Now()); err != nil || !claimed {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	if err := store.Complete(w.ctx, k, 201, body); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := w.db.Pool.QueryRow(w.ctx, `SELECT body FROM idempotency_keys WHERE tenant = $1 AND key = $2`, w.tenant, k.Key).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	for _, personal := range []string{"ada.lovelace@example.com", "Ada Lovelace", "Lovelace"} {
		if bytes.Contains(raw, []byte(personal)) {
			t.Errorf("the stored answer holds %q in clear", personal)
		}
	}
	for _, ref := range []string{"u4nqzjx3xkqtqyhb", "g5abcdefghijklmn"} {
		if !bytes.Contains(raw, []byte(ref)) {
			t.Errorf("the stored answer does not name %s for erasure", ref)
		}
	}
	got, claimed, err := w.newService().Idempotency().Claim(w.ctx, k, []byte("hash"), w.clock.Now())
	if err != nil || claimed {
		t.Fatalf("repeat: %v %v", claimed, err)
	}
	if got.Status != 201 || !bytes.Equal(got.Body, body) || !bytes.Equal(got.RequestHash, []byte("hash")) {
		t.Errorf("repeat got %d %s", got.Status, got.Body)
	}
	// Bound to its key: copied under another key, it does not open.
	if _, err := w.db.Pool.Exec(w.ctx, `INSERT INTO idempotency_keys (tenant, principal, key, request_hash, status, body)
		SELECT tenant, principal, 'stolen', request_hash, status, body FROM idempotency_keys WHERE key = $1`, k.Key); err != nil {
		t.Fatal(err)
	}
	k.Key = "stolen"
	if _, _, err := store.Claim(w.ctx, k, []byte("hash"), w.clock.Now()); err == nil {
		t.Error("a stored answer opened under another key")
	}
}

package service_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// countingIDs counts the credential reads of an identity store.
type countingIDs struct {
	service.IdentityStore
	tokens, keys atomic.Int64
}

func (c *countingIDs) Token(ctx context.Context, id string) (service.Token, error) {
	c.tokens.Add(1)
	return c.IdentityStore.Token(ctx, id)
}

func (c *countingIDs) APIKey(ctx context.Context, id string) (service.APIKey, error) {
	c.keys.Add(1)
	return c.IdentityStore.APIKey(ctx, id)
}

// plainLog hides the ledger's one-query read of several streams, as a
// store without it would: nothing reads a credential along with it.
type plainLog struct{ service.Log }

// TestDeferredAuthentication (issue 15): a credential this service
// authenticated before is taken from memory by AuthenticateDeferred, and
// SessionCommand confirms it against its row in the round trip of its
// prefetch read (no read of its own); a token ended, a technician's tokens
// ended or an API key revoked by another node is refused by the very next
// command, with nothing appended. Without the one-query read, the service
// reads the row itself before deciding.
func TestDeferredAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plain bool
	}{{"probe in the prefetch read", false}, {"store without it", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tech := w.technician(w.group(nil), "ada@example.com")
			ids := &countingIDs{IdentityStore: w.store}
			svc := w.newService(func(c *service.Config) {
				c.Identity, c.Limiter, c.Assertions = ids, w.store, w.store
				if tc.plain {
					c.Log = plainLog{w.ledger}
				}
			})
			ctx := w.ctx
			res, err := svc.Login(ctx, service.LoginRequest{Email: "ada@example.com", Password: worldPassword})
			if err != nil {
				t.Fatal(err)
			}
			keyRec, ingestKey, err := svc.CreateAPIKey(ctx, w.tenant, service.RoleIngest, "applet")
			if err != nil {
				t.Fatal(err)
			}
			tok, err := svc.Authenticate(ctx, res.Token) // remembered from here on
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Authenticate(ctx, ingestKey); err != nil {
				t.Fatal(err)
			}
			sess, err := svc.CreateSession(ctx, tok, service.NewSession{Queue: "shared", Channel: "web"}, [16]byte{})
			if err != nil {
				t.Fatal(err)
			}
			run := func(bearer, body string) error {
				t.Helper()
				before := ids.tokens.Load() + ids.keys.Load()
				dctx, p, err := svc.AuthenticateDeferred(ctx, bearer)
				if err != nil {
					return err
				}
				if n := ids.tokens.Load() + ids.keys.Load() - before; n != 0 {
					t.Errorf("AuthenticateDeferred of a remembered credential read it %d times", n)
				}
				c, err := service.DecodeCommand([]byte(body))
				if err != nil {
					t.Fatal(err)
				}
				_, err = svc.SessionCommand(dctx, p, sess.ID, c, [16]byte{})
				want := int64(0)
				if tc.plain {
					want = 1
				}
				if n := ids.tokens.Load() + ids.keys.Load() - before; n != want {
					t.Errorf("%s: the credential was read %d times on its own, want %d", body, n, want)
				}
				return err
			}
			if err := run(ingestKey, `{"type":"connect_customer","platform":"windows"}`); err != nil {
				t.Fatal(err)
			}
			if err := run(res.Token, `{"type":"pick_up"}`); err != nil {
				t.Fatal(err)
			}
			if err := run(res.Token, `{"type":"note","text":"remembered"}`); err != nil {
				t.Fatal(err)
			}
			events := len(w.stream(domain.SessionStream(sess.ID)))

			// Another node ends the technician's tokens and revokes the key.
			if _, err := w.store.EndTechnicianTokens(ctx, w.tenant, tech, w.svc.Now()); err != nil {
				t.Fatal(err)
			}
			if err := w.svc.RevokeAPIKey(ctx, keyRec.ID); err != nil {
				t.Fatal(err)
			}
			if err := run(res.Token, `{"type":"note","text":"after the end"}`); domain.ErrorCode(err) != domain.CodeUnauthenticated {
				t.Errorf("ended token: got %v, want unauthenticated", err)
			}
			if err := run(ingestKey, `{"type":"chat","from":"customer","text":"after the revocation"}`); domain.ErrorCode(err) != domain.CodeUnauthenticated {
				t.Errorf("revoked key: got %v, want unauthenticated", err)
			}
			if n := len(w.stream(domain.SessionStream(sess.ID))); n != events {
				t.Errorf("%d events appended for refused credentials", n-events)
			}
			// What the refusal read is remembered: the next attempt is refused
			// by AuthenticateDeferred itself.
			if _, _, err := svc.AuthenticateDeferred(ctx, res.Token); domain.ErrorCode(err) != domain.CodeUnauthenticated {
				t.Errorf("ended token, next request: got %v, want unauthenticated", err)
			}
			if _, err := svc.Authenticate(ctx, ingestKey); domain.ErrorCode(err) != domain.CodeUnauthenticated {
				t.Errorf("revoked key through Authenticate: %v", err)
			}
			// A wrong secret for a remembered id is refused.
			wrong := res.Token[:len(res.Token)-4] + "aaaa"
			if wrong == res.Token {
				wrong = res.Token[:len(res.Token)-4] + "bbbb"
			}
			if _, _, err := svc.AuthenticateDeferred(ctx, wrong); domain.ErrorCode(err) != domain.CodeUnauthenticated {
				t.Errorf("wrong secret: got %v, want unauthenticated", err)
			}
			// Nothing to confirm on a context that AuthenticateDeferred did
			// not make.
			if err := svc.ConfirmDeferred(ctx); err != nil {
				t.Errorf("ConfirmDeferred without a deferred credential: %v", err)
			}
		})
	}
}

package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// session is one support session's chat, generated before a measurement so
// that event construction is not timed.
type session struct {
	tenant string
	guid   string
	stream string
	events []domain.Event
}

var words = strings.Fields(`the printer is offline again and the queue shows three jobs stuck
please restart the service then open the control panel and check the driver version
my password expired yesterday can you reset it I am locked out of the vpn too
thanks that worked but now outlook keeps asking for credentials every few minutes
I can see your screen now click on settings network and then advanced options
the update failed with error code 0x80070005 after the reboot nothing changed`)

// chatText returns a message of 3 to 40 words, so that the sealed field
// varies in size like real chat.
func chatText(rng *mrand.Rand) string {
	n := 3 + rng.IntN(38)
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}

func newGUID() string {
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	return hex.EncodeToString(raw)
}

// tenantName returns the name of the i-th benchmark tenant.
func tenantName(i int) string { return fmt.Sprintf("bench-tenant-%d", i+1) }

// genSessions returns sessions holding n chat events in total, perSession
// each (the last may be shorter), spread round-robin over tenants. The
// events are what a caller hands to ledger.Append: ids and times set,
// personal text in clear, no versions.
func genSessions(n, perSession, tenants int, rng *mrand.Rand) ([]*session, error) {
	var out []*session
	for made := 0; made < n; {
		k := min(perSession, n-made)
		s := &session{tenant: tenantName(len(out) % tenants), guid: newGUID()}
		s.stream = domain.SessionStream(s.guid)
		tech := fmt.Sprintf("tech-%d", rng.IntN(200))
		s.events = make([]domain.Event, 0, k)
		for i := range k {
			actor := domain.Actor{Kind: domain.ActorCustomer}
			msg := domain.ChatMessage{From: domain.ChatFromCustomer, Text: chatText(rng)}
			if i%2 == 1 {
				actor = domain.Actor{Kind: domain.ActorTechnician, ID: tech}
				msg.From, msg.SenderID = domain.ChatFromTechnician, tech
			}
			e, err := domain.NewEvent(domain.Meta{Tenant: s.tenant, Stream: s.stream, Actor: actor}, msg)
			if err != nil {
				return nil, err
			}
			s.events = append(s.events, e)
		}
		out = append(out, s)
		made += k
	}
	return out, nil
}

// eventColumns are the columns of the events table, in the order the
// postgres store copies them.
var eventColumns = []string{"position", "id", "tenant", "stream", "version", "seq", "type", "schema",
	"occurred_at", "recorded_at", "actor_kind", "actor_id", "data", "sealed", "leaf_hash"}

// baselineRows turns sessions into rows of the events table's shape and
// size, as the postgres store builds them: a personal field sealed the way
// ledger.Sealer does (32-hex key id, 12-byte nonce, ciphertext 16 bytes
// longer than the plaintext, in the canonical sealed encoding), a random leaf
// hash, gapless positions, per-tenant seqs and per-stream versions.
func baselineRows(sessions []*session) [][]any {
	var rows [][]any
	seq := map[string]int64{}
	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, s := range sessions {
		keyID := newGUID()
		for i, e := range s.events {
			sealed := make([]domain.SealedField, 0, len(e.Personal))
			for _, p := range e.Personal {
				nonce := make([]byte, 12)
				ct := make([]byte, len(p.Value)+16)
				_, _ = rand.Read(nonce)
				_, _ = rand.Read(ct)
				sealed = append(sealed, domain.SealedField{Name: p.Name, Subject: p.Subject, KeyID: keyID, Nonce: nonce, Ciphertext: ct})
			}
			leaf := make([]byte, 32)
			_, _ = rand.Read(leaf)
			rows = append(rows, []any{
				int64(len(rows) + 1), [16]byte(e.ID), e.Tenant, s.stream, int64(i + 1), seq[e.Tenant], e.Type, int32(e.Schema),
				e.OccurredAt.UTC().Truncate(time.Microsecond), now, string(e.Actor.Kind), e.Actor.ID, []byte(e.Data),
				ledger.EncodeSealed(sealed), leaf,
			})
			seq[e.Tenant]++
		}
	}
	return rows
}

package webhooks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/projections"
)

// FanoutName is the fan-out's key in projection_positions.
const FanoutName = "webhooks.fanout"

// Fanout turns committed events into deliveries: one row per matching
// subscription and event, with the payload built (and sealed when it
// carries personal data) at once, while the data can still be opened. It
// is a projection, run by a projections.Runner of its own, so that the
// deliveries and the position commit together. It is safe for concurrent
// use.
type Fanout struct {
	cfg Config
	// Wake, when set, is called after a batch created deliveries (the
	// Deliverer's Wake), so that they go out without waiting for a poll.
	Wake func()

	mu     sync.Mutex
	groups map[string]string // session stream → group, for group filters
}

var _ projections.Projection = (*Fanout)(nil)

// NewFanout returns the fan-out. It panics when Pool or Ledger is missing.
func NewFanout(cfg Config) *Fanout {
	cfg.defaults()
	return &Fanout{cfg: cfg, groups: map[string]string{}}
}

// Name implements projections.Projection.
func (f *Fanout) Name() string { return FanoutName }

// Reset implements projections.Projection. It deletes nothing: a rebuild
// finds the deliveries already made (their ids derive from subscription and
// event) and adds none twice.
func (f *Fanout) Reset(ctx context.Context, tx pgx.Tx) error { return nil }

type subRow struct {
	id          uuid.UUID
	tenant      string
	types       []string
	groupID     string
	excludeChat bool
	from        int64
}

// DeliveryID returns the webhook-id of event's delivery to subscription:
// derived, so that a repeated fan-out finds the same row.
func DeliveryID(subscription, event uuid.UUID) uuid.UUID {
	return uuid.NewSHA1(subscription, event[:])
}

func payloadPurpose(delivery uuid.UUID) string { return "vigil/webhook-payload/" + delivery.String() }

// Apply implements projections.Projection.
func (f *Fanout) Apply(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
	tenants := map[string]bool{}
	for _, e := range events {
		tenants[e.Tenant] = true
	}
	names := make([]string, 0, len(tenants))
	for t := range tenants {
		names = append(names, t)
	}
	rows, err := tx.Query(ctx, `SELECT id, tenant, event_types, group_id, exclude_chat, from_position FROM webhook_subscriptions
		WHERE state = 'active' AND tenant = ANY($1) AND from_position < $2`, names, events[len(events)-1].Position)
	if err != nil {
		return fmt.Errorf("subscriptions: %w", err)
	}
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (subRow, error) {
		var s subRow
		err := r.Scan(&s.id, &s.tenant, &s.types, &s.groupID, &s.excludeChat, &s.from)
		return s, err
	})
	if err != nil {
		return fmt.Errorf("subscriptions: %w", err)
	}
	if len(subs) == 0 {
		return nil
	}
	now := f.cfg.Now().UTC().Truncate(1000)
	expires := now.Add(f.cfg.PayloadRetention)
	batch := &pgx.Batch{}
	for _, e := range events {
		b := eventBuild{f: f, e: e}
		for _, s := range subs {
			if s.tenant != e.Tenant || e.Position <= s.from {
				continue
			}
			for _, typ := range deliveredTypes(e.Type) {
				if !hasType(s.types, typ) {
					continue
				}
				if s.groupID != "" {
					g, err := f.groupOf(ctx, e)
					if err != nil {
						return err
					}
					if g != s.groupID {
						continue
					}
				}
				sm, err := b.payload(ctx, typ, s.excludeChat)
				if errors.Is(err, domain.ErrSubjectErased) {
					continue // nothing may be sent about an erased subject
				}
				if err != nil {
					return fmt.Errorf("payload of %s for %s: %w", e.ID, typ, err)
				}
				// One delivery per (subscription, event, type): a
				// subscription naming session.closed and session.ended gets
				// both. A repeated fan-out (a rebuild) finds the same id and
				// adds nothing; any other clash is an error, never a
				// silently dropped delivery.
				did := DeliveryID(s.id, e.ID)
				if typ != e.Type {
					did = DeliveryID(s.id, uuid.NewSHA1(e.ID, []byte(typ)))
				}
				body, sealSubject := sm.body, ""
				subjects := make([]string, len(sm.subjects))
				for i, x := range sm.subjects {
					subjects[i] = string(x)
				}
				if len(sm.subjects) > 0 {
					sealSubject = string(sm.subjects[0])
					body, err = f.cfg.Ledger.Sealer().SealSecret(ctx, e.Tenant, sm.subjects[0], payloadPurpose(did), sm.body)
					if errors.Is(err, domain.ErrSubjectErased) {
						continue
					}
					if err != nil {
						return fmt.Errorf("seal payload of %s: %w", e.ID, err)
					}
				}
				batch.Queue(`INSERT INTO webhook_deliveries (id, tenant, subscription_id, event_id, event_type, position, payload, seal_subject, subjects,
					state, next_attempt_at, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10, $11)
					ON CONFLICT (id) DO NOTHING`, did, e.Tenant, s.id, e.ID, typ, e.Position, body, sealSubject, subjects, now, expires)
			}
		}
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	if f.Wake != nil {
		f.Wake()
	}
	return nil
}

// deliveredTypes returns the webhook types an event of type t is delivered
// as: its own, and the summary it completes.
func deliveredTypes(t string) []string {
	switch t {
	case "session.created":
		return []string{t, TypeSessionStarted}
	case "session.closed":
		return []string{t, TypeSessionEnded}
	}
	return []string{t}
}

// groupOf returns the group of the session e belongs to ("" for other
// streams), from the session's session.created event.
func (f *Fanout) groupOf(ctx context.Context, e domain.Event) (string, error) {
	var c domain.SessionCreated
	if e.Type == "session.created" {
		if err := decodePublic(e, &c); err != nil {
			return "", err
		}
		return c.GroupID, nil
	}
	if g, ok := strings.CutPrefix(e.Stream, domain.GroupStreamPrefix); ok {
		return g, nil
	}
	if _, ok := domain.ChatSubjectOf(e.Stream); !ok {
		return "", nil
	}
	f.mu.Lock()
	g, ok := f.groups[e.Stream]
	f.mu.Unlock()
	if ok {
		return g, nil
	}
	evs, err := f.cfg.Ledger.ReadSealed(ctx, e.Tenant, e.Stream, 0)
	if err != nil {
		return "", err
	}
	for _, x := range evs {
		if x.Type == "session.created" {
			if err := decodePublic(x, &c); err != nil {
				return "", err
			}
			break
		}
	}
	f.mu.Lock()
	if len(f.groups) > 100_000 {
		clear(f.groups)
	}
	f.groups[e.Stream] = c.GroupID
	f.mu.Unlock()
	return c.GroupID, nil
}

// eventBuild builds an event's payload variants once per batch.
type eventBuild struct {
	f        *Fanout
	e        domain.Event
	public   *summary
	started  *summary
	ended    map[bool]*summary
	endedErr error
}

func (b *eventBuild) payload(ctx context.Context, typ string, excludeChat bool) (summary, error) {
	e := b.e
	switch typ {
	case TypeSessionStarted:
		if b.started == nil {
			opened := e
			opened.Personal = nil
			if err := b.f.cfg.Ledger.Open(ctx, &opened); err != nil {
				return summary{}, err
			}
			data, err := buildStarted(opened)
			if err != nil {
				return summary{}, err
			}
			body, err := encodePayload(typ, e.OccurredAt, data)
			if err != nil {
				return summary{}, err
			}
			sm := summary{body: body}
			if data.CustomFields != nil {
				sub, _ := e.Subject()
				sm.subjects = []domain.Subject{sub}
			}
			b.started = &sm
		}
		return *b.started, nil
	case TypeSessionEnded:
		if b.ended == nil {
			b.ended = map[bool]*summary{}
			b.endedErr = b.buildEnded(ctx)
		}
		if b.endedErr != nil {
			return summary{}, b.endedErr
		}
		return *b.ended[!excludeChat && b.ended[true] != nil], nil
	}
	if b.public == nil {
		body, err := encodePayload(typ, e.OccurredAt, Public(e))
		if err != nil {
			return summary{}, err
		}
		b.public = &summary{body: body}
	}
	return *b.public, nil
}

// buildEnded fills b.ended[false] (no chat) and, when the group's policy
// lets chat go to CRM, b.ended[true].
func (b *eventBuild) buildEnded(ctx context.Context) error {
	e := b.e
	evs, err := b.f.cfg.Ledger.ReadStream(ctx, e.Tenant, e.Stream, 0)
	if err != nil {
		return err
	}
	upto := evs[:0:0]
	for _, x := range evs {
		if x.Version <= e.Version {
			upto = append(upto, x)
		}
	}
	data, subjects, err := b.f.buildEnded(ctx, e.Tenant, upto)
	if err != nil {
		return err
	}
	if len(subjects) == 0 {
		if sub, ok := e.Subject(); ok {
			subjects = []domain.Subject{sub}
		}
	}
	chat := data.Chat
	data.Chat = nil
	body, err := encodePayload(TypeSessionEnded, e.OccurredAt, data)
	if err != nil {
		return err
	}
	b.ended[false] = &summary{body: body, subjects: subjects}
	allowed, err := b.f.chatInCRM(ctx, e.Tenant, data.GroupID)
	if err != nil {
		return err
	}
	if allowed && len(chat) > 0 {
		data.Chat = chat
		body, err := encodePayload(TypeSessionEnded, e.OccurredAt, data)
		if err != nil {
			return err
		}
		withChat := append(subjects[:len(subjects):len(subjects)], domain.ChatSubject(data.SessionID))
		b.ended[true] = &summary{body: body, subjects: withChat}
	}
	return nil
}

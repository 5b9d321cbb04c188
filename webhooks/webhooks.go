// Package webhooks delivers Vigil's committed events out of Vigil: to
// CRM systems as signed Standard Webhooks (subscriptions, payloads, a
// persistent retry schedule) and to a message bus through watermill (the
// Dispatcher). Both are checkpointed catch-up subscribers of the ledger
// built on the projection runner, so that a restart resumes where it
// stopped and nothing committed is lost.
//
// Personal data leaves Vigil only in the session.started and session.ended
// summaries, opened from the log for subscriptions allowed to receive it;
// every other event type carries its public fields only. Stored payloads
// that carry personal data are sealed under the session's data key and
// purged on erasure (PurgeSubject) and on expiry.
//
// The package speaks SQL (PostgreSQL) through pgx directly, as projections
// and compliance do. The outbound HTTP client is a port (Sender);
// adapters/webhook implements it with the SSRF checks.
package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
)

// The summary event types a subscription receives by default.
const (
	TypeSessionStarted = "session.started"
	TypeSessionEnded   = "session.ended"
	// TypeTest is the type of the event POST /v1/webhooks/{id}/test sends.
	TypeTest = "webhook.test"
)

// DefaultEventTypes are the event types of a subscription that names none.
var DefaultEventTypes = []string{TypeSessionStarted, TypeSessionEnded}

// SecretOverlap is how long the previous secret keeps signing after a
// rotation.
const SecretOverlap = 24 * time.Hour

// secretsSubject owns the data key that seals the tenant's signing
// secrets: a non-personal subject, never erased with a person.
const secretsSubject = domain.Subject("webhook-secrets")

// Config wires the webhook service, fan-out and deliverer.
type Config struct {
	// Pool holds the webhook tables (required).
	Pool *pgxpool.Pool
	// Ledger is the log (required): summaries are opened through it and
	// secrets and payloads sealed with its sealer.
	Ledger *ledger.Ledger
	// PayloadRetention is how long a stored payload is kept after its
	// delivery was created (default 30 days; at least the retry schedule).
	PayloadRetention time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
	// CheckAddress, when set, applies the sender's SSRF rules to a
	// subscription's URL when it is created or changed, so that a refused
	// address answers address_refused at once rather than failing every
	// delivery. The sender still checks at dial time (DNS rebinding).
	CheckAddress func(ctx context.Context, rawURL string) error
}

// DefaultPayloadRetention is the default of Config.PayloadRetention.
const DefaultPayloadRetention = 30 * 24 * time.Hour

func (c *Config) defaults() {
	if c.Pool == nil || c.Ledger == nil {
		panic("webhooks: Config needs Pool and Ledger")
	}
	if c.PayloadRetention <= 0 {
		c.PayloadRetention = DefaultPayloadRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Service manages subscriptions and their deliveries for the API. It is
// safe for concurrent use.
type Service struct {
	cfg Config
}

// NewService returns the subscription service. It panics when Pool or
// Ledger is missing, which is a wiring mistake.
func NewService(cfg Config) *Service {
	cfg.defaults()
	return &Service{cfg: cfg}
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

// Subscription is a webhook endpoint's settings, as the API shows them.
type Subscription struct {
	ID             string    `json:"id"`
	URL            string    `json:"url"`
	EventTypes     []string  `json:"event_types"`
	GroupID        string    `json:"group_id,omitempty"`
	ExcludeChat    bool      `json:"exclude_chat"`
	Description    string    `json:"description,omitempty"`
	Enabled        bool      `json:"enabled"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	// Secret is set only in the answers of create and rotate-secret.
	Secret string `json:"secret,omitempty"`
}

// NewSubscription is the body of POST /v1/webhooks.
type NewSubscription struct {
	URL         string   `json:"url" text:"line,2000"`
	EventTypes  []string `json:"event_types" text:"line,128"`
	GroupID     string   `json:"group_id" text:"id"`
	ExcludeChat bool     `json:"exclude_chat"`
	Description string   `json:"description" text:"text,500"`
}

// SubscriptionChange is the body of PATCH /v1/webhooks/{id}; nil fields
// stay as they are. Enabled true re-enables a subscription disabled by a
// 410 answer.
type SubscriptionChange struct {
	URL         *string   `json:"url" text:"line,2000"`
	EventTypes  *[]string `json:"event_types" text:"line,128"`
	GroupID     *string   `json:"group_id" text:"id"`
	ExcludeChat *bool     `json:"exclude_chat"`
	Description *string   `json:"description" text:"text,500"`
	Enabled     *bool     `json:"enabled"`
}

func requireIntegration(p service.Principal) error {
	if p.Tenant == "" || !p.Is(service.RoleIntegration, service.RoleAdmin) {
		return &domain.Error{Code: domain.CodeForbidden, Message: "webhooks need an integration or admin key", Err: domain.ErrForbidden}
	}
	return nil
}

var typeRE = regexp.MustCompile(`^[a-z][a-z_]*\.[a-z][a-z_]*$`)

// checkURL validates a subscription's URL before it is stored: its form,
// then the SSRF rules of Config.CheckAddress.
func (s *Service) checkURL(ctx context.Context, raw string) error {
	if err := checkURLForm(raw); err != nil {
		return err
	}
	if s.cfg.CheckAddress != nil {
		if err := s.cfg.CheckAddress(ctx, raw); err != nil {
			return domain.Errorf(domain.CodeAddressRefused, "url %q: %v (webhooks reach public addresses over HTTPS; VIGIL_WEBHOOK_ALLOW_CIDRS allows others)", raw, err)
		}
	}
	return nil
}

func checkURLForm(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || len(raw) > 2000 {
		return domain.Errorf(domain.CodeInvalid, "url %q: want an absolute http(s) URL without credentials", raw)
	}
	if port := u.Port(); port != "" {
		// url.Parse takes any digits as a port.
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return domain.Errorf(domain.CodeInvalid, "url %q: the port must be 1 to 65535", raw)
		}
	}
	// HTTPS only, unless the address is allowed (checked at dial time by
	// the sender, which refuses plain HTTP to any address outside
	// VIGIL_WEBHOOK_ALLOW_CIDRS).
	return nil
}

func checkTypes(types []string) ([]string, error) {
	if len(types) == 0 {
		return slices.Clone(DefaultEventTypes), nil
	}
	out := make([]string, 0, len(types))
	for _, t := range types {
		known := t == TypeSessionStarted || t == TypeSessionEnded
		if !known {
			if _, ok := domain.Catalogue.Spec(t); ok && typeRE.MatchString(t) {
				known = true
			}
		}
		if !known {
			return nil, domain.Errorf(domain.CodeInvalid, "event type %q: want session.started, session.ended or a catalogue event type", t)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

// NewSecret returns a new signing secret: "whsec_" and the base64 of 32
// random bytes.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func secretPurpose(id string) string { return "vigil/webhook-secret/" + id }

func (s *Service) sealSecret(ctx context.Context, tenant, id, secret string) ([]byte, error) {
	return s.cfg.Ledger.Sealer().SealSecret(ctx, tenant, secretsSubject, secretPurpose(id), []byte(secret))
}

// Create adds a subscription and returns it with its secret, the only time
// the secret is shown. Only events committed after the subscription
// are delivered. Errors: forbidden, invalid.
func (s *Service) Create(ctx context.Context, p service.Principal, n NewSubscription) (Subscription, error) {
	if err := requireIntegration(p); err != nil {
		return Subscription{}, err
	}
	if err := s.checkURL(ctx, n.URL); err != nil {
		return Subscription{}, err
	}
	types, err := checkTypes(n.EventTypes)
	if err != nil {
		return Subscription{}, err
	}
	if len(n.Description) > 500 || len(n.GroupID) > 200 {
		return Subscription{}, domain.Errorf(domain.CodeInvalid, "description or group_id too long")
	}
	head, err := s.cfg.Ledger.Store().Head(ctx)
	if err != nil {
		return Subscription{}, fmt.Errorf("create webhook: %w", err)
	}
	id := uuid.New().String()
	secret := NewSecret()
	sealed, err := s.sealSecret(ctx, p.Tenant, id, secret)
	if err != nil {
		return Subscription{}, fmt.Errorf("create webhook: %w", err)
	}
	now := s.now()
	_, err = s.cfg.Pool.Exec(ctx, `INSERT INTO webhook_subscriptions (id, tenant, url, event_types, group_id, exclude_chat, description, secret,
		state, from_position, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, $10)`,
		id, p.Tenant, n.URL, types, n.GroupID, n.ExcludeChat, n.Description, sealed, head, now)
	if err != nil {
		return Subscription{}, fmt.Errorf("create webhook: %w", err)
	}
	return Subscription{ID: id, URL: n.URL, EventTypes: types, GroupID: n.GroupID, ExcludeChat: n.ExcludeChat,
		Description: n.Description, Enabled: true, CreatedAt: now, UpdatedAt: now, Secret: secret}, nil
}

const subColumns = `id, url, event_types, group_id, exclude_chat, description, state, disabled_reason, created_at, updated_at`

func scanSub(row pgx.Row) (Subscription, error) {
	var sub Subscription
	var id uuid.UUID
	var state string
	err := row.Scan(&id, &sub.URL, &sub.EventTypes, &sub.GroupID, &sub.ExcludeChat, &sub.Description, &state, &sub.DisabledReason, &sub.CreatedAt, &sub.UpdatedAt)
	sub.ID = id.String()
	sub.Enabled = state == "active"
	sub.CreatedAt, sub.UpdatedAt = sub.CreatedAt.UTC(), sub.UpdatedAt.UTC()
	return sub, err
}

func parseID(id string) (uuid.UUID, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, &domain.Error{Code: domain.CodeNotFound, Message: "no such webhook", Err: domain.ErrNotFound}
	}
	return u, nil
}

var errNoSub = &domain.Error{Code: domain.CodeNotFound, Message: "no such webhook", Err: domain.ErrNotFound}

// Get returns subscription id of p's tenant. Errors: forbidden,
// not_found.
func (s *Service) Get(ctx context.Context, p service.Principal, id string) (Subscription, error) {
	if err := requireIntegration(p); err != nil {
		return Subscription{}, err
	}
	u, err := parseID(id)
	if err != nil {
		return Subscription{}, err
	}
	sub, err := scanSub(s.cfg.Pool.QueryRow(ctx, `SELECT `+subColumns+` FROM webhook_subscriptions WHERE id = $1 AND tenant = $2 AND state <> 'deleted'`, u, p.Tenant))
	if errors.Is(err, pgx.ErrNoRows) {
		return Subscription{}, errNoSub
	}
	return sub, err
}

// List returns the subscriptions of p's tenant, oldest first.
func (s *Service) List(ctx context.Context, p service.Principal) ([]Subscription, error) {
	if err := requireIntegration(p); err != nil {
		return nil, err
	}
	rows, err := s.cfg.Pool.Query(ctx, `SELECT `+subColumns+` FROM webhook_subscriptions WHERE tenant = $1 AND state <> 'deleted' ORDER BY created_at, id`, p.Tenant)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Subscription{}
	for rows.Next() {
		sub, err := scanSub(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
	return out, rows.Err()
}

// Update changes a subscription. Errors: forbidden, not_found,
// invalid.
func (s *Service) Update(ctx context.Context, p service.Principal, id string, c SubscriptionChange) (Subscription, error) {
	sub, err := s.Get(ctx, p, id)
	if err != nil {
		return Subscription{}, err
	}
	if c.URL != nil {
		if err := s.checkURL(ctx, *c.URL); err != nil {
			return Subscription{}, err
		}
		sub.URL = *c.URL
	}
	if c.EventTypes != nil {
		if sub.EventTypes, err = checkTypes(*c.EventTypes); err != nil {
			return Subscription{}, err
		}
	}
	if c.GroupID != nil {
		sub.GroupID = *c.GroupID
	}
	if c.ExcludeChat != nil {
		sub.ExcludeChat = *c.ExcludeChat
	}
	if c.Description != nil {
		sub.Description = *c.Description
	}
	state, reason := "active", ""
	if !sub.Enabled {
		state, reason = "disabled", sub.DisabledReason
	}
	if c.Enabled != nil {
		if *c.Enabled {
			state, reason = "active", ""
		} else {
			state, reason = "disabled", "disabled by request"
		}
	}
	now := s.now()
	_, err = s.cfg.Pool.Exec(ctx, `UPDATE webhook_subscriptions SET url = $3, event_types = $4, group_id = $5, exclude_chat = $6,
		description = $7, state = $8, disabled_reason = $9, updated_at = $10 WHERE id = $1 AND tenant = $2`,
		sub.ID, p.Tenant, sub.URL, sub.EventTypes, sub.GroupID, sub.ExcludeChat, sub.Description, state, reason, now)
	if err != nil {
		return Subscription{}, fmt.Errorf("update webhook %s: %w", id, err)
	}
	return s.Get(ctx, p, id)
}

// Delete removes a subscription: nothing more is delivered, and its
// stored payloads are deleted with its deliveries.
func (s *Service) Delete(ctx context.Context, p service.Principal, id string) error {
	if _, err := s.Get(ctx, p, id); err != nil {
		return err
	}
	// The subscription row is locked before its deliveries, in the order
	// the deliverer takes them (a 410 disables the subscription, then
	// updates the delivery); PostgreSQL may still pick this transaction as
	// a deadlock victim under load, so it is retried.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = s.delete(ctx, id); !isDeadlock(err) {
			return err
		}
	}
	return err
}

func (s *Service) delete(ctx context.Context, id string) error {
	tx, err := s.cfg.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `UPDATE webhook_subscriptions SET state = 'deleted', secret = '', previous_secret = NULL, updated_at = $2 WHERE id = $1`, id, s.now()); err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM webhook_deliveries WHERE subscription_id = $1`, id); err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	return tx.Commit(ctx)
}

// isDeadlock reports whether err is PostgreSQL's deadlock_detected.
func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}

// RotateSecret gives the subscription a new secret and returns it; the
// previous one keeps signing (both signatures are sent) for SecretOverlap.
func (s *Service) RotateSecret(ctx context.Context, p service.Principal, id string) (Subscription, error) {
	sub, err := s.Get(ctx, p, id)
	if err != nil {
		return Subscription{}, err
	}
	secret := NewSecret()
	sealed, err := s.sealSecret(ctx, p.Tenant, sub.ID, secret)
	if err != nil {
		return Subscription{}, err
	}
	now := s.now()
	_, err = s.cfg.Pool.Exec(ctx, `UPDATE webhook_subscriptions SET previous_secret = secret, previous_until = $3, secret = $2, updated_at = $4 WHERE id = $1`,
		sub.ID, sealed, now.Add(SecretOverlap), now)
	if err != nil {
		return Subscription{}, fmt.Errorf("rotate webhook secret %s: %w", id, err)
	}
	sub.Secret, sub.UpdatedAt = secret, now
	return sub, nil
}

// Delivery is one event's delivery to one subscription, as the delivery
// log shows it.
type Delivery struct {
	ID            string     `json:"id"`
	EventID       string     `json:"event_id,omitempty"`
	EventType     string     `json:"event_type"`
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
	LastStatus    int        `json:"last_status,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LatencyMS     int        `json:"latency_ms"`
	PayloadStored bool       `json:"payload_stored"`
}

// DeliveryFilter narrows Deliveries.
type DeliveryFilter struct {
	// State is pending, delivered, dead or purged; empty means all.
	State string
	// Before pages back: deliveries created before this time.
	Before time.Time
	// Limit caps the answer (default 100, at most 1000).
	Limit int
}

// Deliveries lists a subscription's deliveries, newest first.
func (s *Service) Deliveries(ctx context.Context, p service.Principal, id string, f DeliveryFilter) ([]Delivery, error) {
	if _, err := s.Get(ctx, p, id); err != nil {
		return nil, err
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	if f.State != "" && !slices.Contains([]string{"pending", "delivered", "dead", "purged"}, f.State) {
		return nil, domain.Errorf(domain.CodeInvalid, "state %q: want pending, delivered, dead or purged", f.State)
	}
	if f.Before.IsZero() {
		f.Before = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	rows, err := s.cfg.Pool.Query(ctx, `SELECT id, event_id, event_type, state, attempts, next_attempt_at, created_at, delivered_at,
		last_status, last_error, last_latency_ms, payload IS NOT NULL FROM webhook_deliveries
		WHERE subscription_id = $1 AND ($2 = '' OR state = $2) AND created_at < $3 ORDER BY created_at DESC, id LIMIT $4`,
		id, f.State, f.Before, f.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		var d Delivery
		var did uuid.UUID
		var eid *uuid.UUID
		var next time.Time
		if err := rows.Scan(&did, &eid, &d.EventType, &d.State, &d.Attempts, &next, &d.CreatedAt, &d.DeliveredAt,
			&d.LastStatus, &d.LastError, &d.LatencyMS, &d.PayloadStored); err != nil {
			return nil, err
		}
		d.ID = did.String()
		if eid != nil {
			d.EventID = eid.String()
		}
		if d.State == "pending" {
			n := next.UTC()
			d.NextAttemptAt = &n
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Replay sends again, with their original webhook-ids, the subscription's
// deliveries created at or after since whose payload is still stored
// (dead letters included), and returns how many it queued.
func (s *Service) Replay(ctx context.Context, p service.Principal, id string, since time.Time) (int64, error) {
	if _, err := s.Get(ctx, p, id); err != nil {
		return 0, err
	}
	tag, err := s.cfg.Pool.Exec(ctx, `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $3
		WHERE subscription_id = $1 AND created_at >= $2 AND payload IS NOT NULL AND state <> 'purged'`, id, since, s.now())
	if err != nil {
		return 0, fmt.Errorf("replay webhook %s: %w", id, err)
	}
	return tag.RowsAffected(), nil
}

// Test queues a webhook.test event for the subscription and returns its
// delivery id.
func (s *Service) Test(ctx context.Context, p service.Principal, id string) (string, error) {
	if _, err := s.Get(ctx, p, id); err != nil {
		return "", err
	}
	now := s.now()
	body, err := encodePayload(TypeTest, now, map[string]any{"subscription_id": id, "message": "test event from Vigil"})
	if err != nil {
		return "", err
	}
	did := uuid.New()
	_, err = s.cfg.Pool.Exec(ctx, `INSERT INTO webhook_deliveries (id, tenant, subscription_id, event_type, payload, state, next_attempt_at, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $7)`, did, p.Tenant, id, TypeTest, body, now, now.Add(s.cfg.PayloadRetention))
	if err != nil {
		return "", fmt.Errorf("test webhook %s: %w", id, err)
	}
	return did.String(), nil
}

// PurgeSubject deletes the stored payloads that carried personal data of
// subject in tenant and returns how many; pending deliveries of them are
// dropped (state purged). It implements compliance.WebhookPurger.
func (s *Service) PurgeSubject(ctx context.Context, tenant string, subject domain.Subject) (int64, error) {
	tag, err := s.cfg.Pool.Exec(ctx, `UPDATE webhook_deliveries SET payload = NULL, state = CASE WHEN state = 'pending' THEN 'purged' ELSE state END
		WHERE tenant = $1 AND subjects @> ARRAY[$2::text] AND payload IS NOT NULL`, tenant, string(subject))
	if err != nil {
		return 0, fmt.Errorf("purge webhook payloads of %s: %w", subject, err)
	}
	return tag.RowsAffected(), nil
}

// ExpirePayloads deletes the payloads of finished deliveries (delivered,
// dead) whose retention passed, and returns how many.
func (s *Service) ExpirePayloads(ctx context.Context) (int64, error) {
	tag, err := s.cfg.Pool.Exec(ctx, `UPDATE webhook_deliveries SET payload = NULL WHERE expires_at <= $1 AND payload IS NOT NULL AND state IN ('delivered', 'dead')`, s.now())
	if err != nil {
		return 0, fmt.Errorf("expire webhook payloads: %w", err)
	}
	return tag.RowsAffected(), nil
}

func hasType(types []string, t string) bool { return slices.Contains(types, t) }

func trimWhsec(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("secret lacks the whsec_ prefix")
	}
	return base64.StdEncoding.DecodeString(b64)
}

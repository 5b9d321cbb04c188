package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
)

// SessionLocator finds the tenant of a session from its GUID alone, which
// is all a customer's applet presents to the relay. It returns
// domain.ErrNotFound for an unknown GUID.
type SessionLocator interface {
	SessionTenant(ctx context.Context, guid string) (string, error)
}

// SessionLocatorFunc adapts a function to SessionLocator.
type SessionLocatorFunc func(ctx context.Context, guid string) (string, error)

// SessionTenant implements SessionLocator.
func (f SessionLocatorFunc) SessionTenant(ctx context.Context, guid string) (string, error) {
	return f(ctx, guid)
}

// RelaySession names a session held by a relay.
type RelaySession struct {
	Tenant string `json:"tenant" text:"id"`
	GUID   string `json:"session" text:"id"`
}

// RelayGrant is the answer to an accepted relay side.
type RelayGrant struct {
	Tenant       string `json:"tenant"`
	TechnicianID string `json:"technician_id,omitempty"`
}

// RelayEvent is a relay's report on the bus (relay.Event's JSON form).
type RelayEvent struct {
	ID                  string    `json:"id"`
	Type                string    `json:"type"`
	Tenant              string    `json:"tenant"`
	Session             string    `json:"session"`
	RelayID             string    `json:"relay_id"`
	At                  time.Time `json:"at"`
	Side                string    `json:"side,omitempty"`
	SourceIP            string    `json:"source_ip,omitempty"`
	PairingMS           int64     `json:"pairing_ms,omitempty"`
	BytesFromCustomer   int64     `json:"bytes_from_customer,omitempty"`
	BytesFromTechnician int64     `json:"bytes_from_technician,omitempty"`
	DurationMS          int64     `json:"duration_ms,omitempty"`
	Reason              string    `json:"reason,omitempty"`
}

// Relay runs what the gateway relay asks of the backend. A relay key's
// principal is confined to its tenant; an in-process relay's principal
// has no tenant and sessions are found through the locator. It is safe
// for concurrent use.
type Relay struct {
	svc    *Service
	locate SessionLocator
}

// Relay returns the relay's side of the service; locate may be nil when
// every caller is a tenant's relay key.
func (s *Service) Relay(locate SessionLocator) *Relay { return &Relay{svc: s, locate: locate} }

func (r *Relay) tenant(ctx context.Context, p Principal, guid string) (string, error) {
	if p.Role != RoleRelay {
		return "", errForbidden("relay calls need a relay key")
	}
	if _, err := uuid.Parse(guid); err != nil || len(guid) != 32 {
		return "", errNotFound("session %s does not exist", guid)
	}
	if p.Tenant != "" {
		return p.Tenant, nil
	}
	if r.locate == nil {
		return "", errNotFound("session %s does not exist", guid)
	}
	t, err := r.locate.SessionTenant(ctx, guid)
	if errors.Is(err, domain.ErrNotFound) {
		return "", errNotFound("session %s does not exist", guid)
	}
	return t, err
}

func (r *Relay) session(ctx context.Context, tenant, guid string) (*domain.Session, error) {
	sess := domain.NewSession(tenant, guid)
	if err := r.svc.load(ctx, sess); err != nil {
		return nil, err
	}
	if !sess.Exists() {
		return nil, errNotFound("session %s does not exist", guid)
	}
	return sess, nil
}

// AuthorizeCustomer accepts the customer side of session guid: it must
// exist (not_found) and be open (session_closed): waiting, queued or
// active, since the applet may reach the relay before or after a
// technician picks the session up. forbidden unless p is a relay.
func (r *Relay) AuthorizeCustomer(ctx context.Context, p Principal, guid string) (RelayGrant, error) {
	tenant, err := r.tenant(ctx, p, guid)
	if err != nil {
		return RelayGrant{}, err
	}
	sess, err := r.session(ctx, tenant, guid)
	if err != nil {
		return RelayGrant{}, err
	}
	if sess.Closed() {
		return RelayGrant{}, &domain.Error{Code: domain.CodeSessionClosed, Message: "the session is closed", Err: domain.ErrSessionClosed}
	}
	return RelayGrant{Tenant: tenant}, nil
}

// AuthorizeTechnician accepts the technician side of session guid: token
// must be a live, full-scope technician token of the session's tenant
// whose technician holds the open session. Errors: unauthenticated for a
// bad token, not_found, session_closed, forbidden for another technician.
func (r *Relay) AuthorizeTechnician(ctx context.Context, p Principal, guid, token string) (RelayGrant, error) {
	tp, err := r.svc.Authenticate(ctx, token)
	if err != nil {
		return RelayGrant{}, err
	}
	if tp.Role != RoleTechnician || tp.Scope != ScopeFull {
		return RelayGrant{}, errUnauthenticated("the technician side needs a technician's login token")
	}
	if p.Tenant != "" && p.Tenant != tp.Tenant {
		return RelayGrant{}, errNotFound("session %s does not exist", guid)
	}
	if _, err := r.tenant(ctx, Principal{Role: RoleRelay, Tenant: tp.Tenant}, guid); err != nil {
		return RelayGrant{}, err
	}
	sess, err := r.session(ctx, tp.Tenant, guid)
	if err != nil {
		return RelayGrant{}, err
	}
	if sess.Closed() {
		return RelayGrant{}, &domain.Error{Code: domain.CodeSessionClosed, Message: "the session is closed", Err: domain.ErrSessionClosed}
	}
	if sess.TechnicianID() != tp.TechnicianID {
		return RelayGrant{}, errForbidden("the session is not held by this technician")
	}
	return RelayGrant{Tenant: tp.Tenant, TechnicianID: tp.TechnicianID}, nil
}

// ClosedSessions returns those of sessions that are closed or unknown. A
// relay key only asks about its tenant's sessions; others are returned as
// gone.
func (r *Relay) ClosedSessions(ctx context.Context, p Principal, sessions []RelaySession) ([]RelaySession, error) {
	if p.Role != RoleRelay {
		return nil, errForbidden("relay calls need a relay key")
	}
	var out []RelaySession
	for _, rs := range sessions {
		if p.Tenant != "" && rs.Tenant != p.Tenant {
			out = append(out, rs)
			continue
		}
		sess, err := r.session(ctx, rs.Tenant, rs.GUID)
		if errors.Is(err, domain.ErrNotFound) {
			out = append(out, rs)
			continue
		}
		if err != nil {
			return nil, err
		}
		if sess.Closed() {
			out = append(out, rs)
		}
	}
	return out, nil
}

// ErrRelayEventRejected wraps the domain's refusal of a relay event (for
// example relay_connected after the session closed, or a malformed event):
// retrying cannot help, so a bus subscriber acknowledges it.
var ErrRelayEventRejected = errors.New("relay event rejected")

// RecordRelayEvent appends e to its session's stream as relay_connected,
// relay_paired or relay_closed, with e.ID as the ledger event id: a
// redelivered event appends nothing new. It returns an error wrapping
// ErrRelayEventRejected when the domain refuses the event, and other
// errors (to retry) when the log fails.
func (r *Relay) RecordRelayEvent(ctx context.Context, e RelayEvent) error {
	id, err := uuid.Parse(e.ID)
	if err != nil || e.Tenant == "" || e.RelayID == "" || e.At.IsZero() {
		return fmt.Errorf("%w: event %q lacks an id, tenant, relay or time", ErrRelayEventRejected, e.ID)
	}
	if _, err := uuid.Parse(e.Session); err != nil || len(e.Session) != 32 {
		return fmt.Errorf("%w: session %q", ErrRelayEventRejected, e.Session)
	}
	_, err = retry(ctx, func() ([]domain.Event, error) {
		sess := domain.NewSession(e.Tenant, e.Session)
		evs, err := r.svc.events(ctx, e.Tenant, sess.Stream())
		if err != nil {
			return nil, err
		}
		for i := range evs {
			if evs[i].ID == id {
				return nil, nil // delivered before
			}
		}
		if err := sess.Load(evs); err != nil {
			return nil, err
		}
		cmd := domain.Cmd{Actor: domain.Actor{Kind: domain.ActorRelay, ID: e.RelayID}, At: e.At.UTC().Truncate(time.Microsecond), EventID: id}
		var events []domain.Event
		switch e.Type {
		case "relay_connected":
			ip, err := ParseIP(e.SourceIP)
			if err != nil {
				return nil, err
			}
			if !sess.Exists() {
				return nil, errNotFound("session %s does not exist", e.Session)
			}
			g, err := r.svc.loadGroup(ctx, e.Tenant, sess.GroupID())
			if err != nil {
				return nil, err
			}
			events, err = sess.ConnectRelay(cmd, domain.RelaySide(e.Side), e.RelayID, ip, g)
			if err != nil {
				return nil, err
			}
		case "relay_paired":
			if events, err = sess.PairRelay(cmd, domain.RelayPaired{RelayID: e.RelayID, PairingMS: e.PairingMS}); err != nil {
				return nil, err
			}
		case "relay_closed":
			if events, err = sess.CloseRelay(cmd, domain.RelayClosed{RelayID: e.RelayID, BytesFromCustomer: e.BytesFromCustomer,
				BytesFromTechnician: e.BytesFromTechnician, DurationMS: e.DurationMS, Reason: e.Reason}); err != nil {
				return nil, err
			}
		default:
			return nil, domain.Errorf(domain.CodeInvalid, "unknown relay event type %q", e.Type)
		}
		return r.svc.commit(ctx, sess, events, nil)
	})
	var de *domain.Error
	if errors.As(err, &de) && !errors.Is(err, domain.ErrConcurrency) && de.Code != domain.CodeInternal {
		return fmt.Errorf("%w: %s %s: %v", ErrRelayEventRejected, e.Type, e.ID, err)
	}
	if err != nil {
		return fmt.Errorf("record %s %s: %w", e.Type, e.ID, err)
	}
	return nil
}

// HandleRelayMessage is the bus subscriber's handler: it decodes a relay
// event and records it. It returns nil when the event is recorded, was
// recorded before, or can never be (logged): the message is then
// acknowledged; any other error asks for a redelivery.
func (r *Relay) HandleRelayMessage(ctx context.Context, payload []byte) error {
	var e RelayEvent
	if err := json.Unmarshal(payload, &e); err != nil {
		r.svc.logger.Warn("relay event: undecodable message dropped", "err", err)
		return nil
	}
	err := r.RecordRelayEvent(ctx, e)
	if errors.Is(err, ErrRelayEventRejected) {
		r.svc.logger.Warn("relay event: refused by the domain, dropped", "type", e.Type, "id", e.ID, "session", e.Session, "err", err)
		return nil
	}
	return err
}

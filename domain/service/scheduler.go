package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// TickResult counts what one scheduler pass did.
type TickResult struct {
	SessionsClosed    int
	TechniciansLogged int // logged out after console inactivity
}

// schedulerActor records the scheduler's own decisions.
var schedulerActor = domain.Actor{Kind: domain.ActorSystem, ID: "scheduler"}

// Tick closes the sessions idle past their group's session inactivity
// timeout (session.closed, closed_by inactivity) and logs out the
// technicians whose console token expired (technician.logged_out, reason
// inactivity). Its state is in the database, so a restart loses nothing;
// several processes may tick at once (the log's version checks make each
// close happen once).
func (s *Service) Tick(ctx context.Context) (TickResult, error) {
	var res TickResult
	now := s.Now()
	idle, err := s.activity.IdleSessions(ctx, now, 200)
	if err != nil {
		return res, fmt.Errorf("idle sessions: %w", err)
	}
	var errs []error
	for _, o := range idle {
		closed, err := s.closeIfIdle(ctx, o, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("session %s: %w", o.GUID, err))
			continue
		}
		if closed {
			res.SessionsClosed++
		}
	}
	tokens, err := s.ids.ExpiredTokens(ctx, now, 200)
	if err != nil {
		return res, errors.Join(append(errs, fmt.Errorf("expired tokens: %w", err))...)
	}
	for _, t := range tokens {
		if err := s.endToken(ctx, t.Tenant, t.TechnicianID, t.ID, schedulerActor, domain.LogoutInactivity); err != nil {
			errs = append(errs, fmt.Errorf("token %s: %w", t.ID, err))
			continue
		}
		res.TechniciansLogged++
	}
	return res, errors.Join(errs...)
}

func (s *Service) closeIfIdle(ctx context.Context, o OpenSession, now time.Time) (bool, error) {
	return retry(ctx, func() (bool, error) {
		sess := domain.NewSession(o.Tenant, o.GUID)
		if err := s.load(ctx, sess); err != nil {
			return false, err
		}
		if !sess.Exists() {
			// Watched before its creation was appended, and the append
			// never happened.
			if now.Sub(o.LastActivity) > time.Minute {
				return false, s.activity.EndSession(ctx, o.Tenant, o.GUID)
			}
			return false, nil
		}
		if sess.Closed() {
			return false, s.activity.EndSession(ctx, o.Tenant, o.GUID)
		}
		g, err := s.loadGroup(ctx, o.Tenant, sess.GroupID())
		if err != nil {
			return false, err
		}
		timeout := g.Policy().SessionInactivityTimeout.Duration()
		if !sess.IdleSince(now, timeout) {
			// Activity the tracker missed, or a changed timeout.
			return false, s.activity.TouchSession(ctx, OpenSession{Tenant: o.Tenant, GUID: o.GUID, LastActivity: sess.LastActivity(), IdleAfter: timeout})
		}
		events, err := sess.Close(domain.Cmd{Actor: schedulerActor, At: now}, domain.ClosedByInactivity, fmt.Sprintf("no activity for %s", timeout))
		if err != nil {
			return false, err
		}
		if _, err := s.commit(ctx, sess, events, nil); err != nil {
			return false, err
		}
		return true, s.activity.EndSession(ctx, o.Tenant, o.GUID)
	})
}

// RunScheduler ticks every interval until ctx ends, logging what it did
// and what failed.
func (s *Service) RunScheduler(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := s.Tick(ctx)
		if err != nil && ctx.Err() == nil {
			s.logger.Error("scheduler", "err", err)
		}
		if res.SessionsClosed > 0 || res.TechniciansLogged > 0 {
			s.logger.Info("scheduler", "sessions_closed", res.SessionsClosed, "technicians_logged_out", res.TechniciansLogged)
		}
		if s.idem != nil {
			if _, err := s.idem.Purge(ctx, s.Now().Add(-IdempotencyTTL)); err != nil && ctx.Err() == nil {
				s.logger.Warn("purge idempotency keys", "err", err)
			}
		}
		s.purgeLoginFailures(ctx)
		s.purgeAssertions(ctx)
	}
}

// IdempotencyTTL is how long a stored answer to an idempotent request is
// kept.
const IdempotencyTTL = 24 * time.Hour

package service

import (
	"context"

	"github.com/vigilhq/vigil/domain"
)

// ChangeRetention sets the tenant's retention periods for closed sessions
// (tenant.retention_changed); the retention worker applies them from its
// next round to the closed sessions not archived yet. Admins only; the same
// periods again record nothing.
func (s *Service) ChangeRetention(ctx context.Context, p Principal, r domain.Retention, eventID [16]byte) (domain.Retention, error) {
	if err := requireAdmin(p); err != nil {
		return domain.Retention{}, err
	}
	return retry(ctx, func() (domain.Retention, error) {
		t := domain.NewTenant(p.Tenant)
		if err := s.load(ctx, t); err != nil {
			return domain.Retention{}, err
		}
		events, err := t.ChangeRetention(s.cmd(p, eventID), r)
		if err != nil {
			return domain.Retention{}, err
		}
		if len(events) > 0 {
			if _, err := s.commit(ctx, t, events, nil); err != nil {
				return domain.Retention{}, err
			}
		}
		return t.Retention(), nil
	})
}

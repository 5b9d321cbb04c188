package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/vigilhq/vigil/domain/service"
)

var _ service.AssertionStore = (*Store)(nil)

// ConsumeAssertion implements service.AssertionStore with one insert: the
// primary key decides, so that of two nodes accepting one assertion at
// once exactly one succeeds.
func (s *Store) ConsumeAssertion(ctx context.Context, tenant, assertionID string, expiresAt, now time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO saml_assertions (tenant, assertion_id, expires_at, consumed_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, assertion_id) DO NOTHING`, tenant, assertionID, expiresAt, now)
	if err != nil {
		return false, fmt.Errorf("consume assertion of %s: %w", tenant, translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// PurgeAssertions implements service.AssertionStore.
func (s *Store) PurgeAssertions(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM saml_assertions WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("purge assertions: %w", translate(err))
	}
	return int(tag.RowsAffected()), nil
}

package postgres

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TranslateForTest exposes translate to the external tests.
var TranslateForTest = translate

// RelaxedExecForTest exposes relaxedExec to the external tests.
func (s *Store) RelaxedExecForTest(ctx context.Context, sql string, args ...any) error {
	_, err := s.relaxedExec(ctx, sql, args...)
	return err
}

// HotReadsForTest returns the hot reads' pool configuration and the
// statements run with cached generic plans, by name, with example
// arguments.
func (s *Store) HotReadsForTest() (*pgxpool.Config, map[string]string) {
	return s.reads.Config(), map[string]string{
		"ReadStream": sqlReadStream, "ReadStreams": sqlReadStreams, "Token": sqlToken, "APIKey": sqlAPIKey,
		"check head": sqlCheckHead, "check sizes": sqlCheckSizes, "check versions": sqlCheckVersions,
		"claim": sqlClaimBatch, "complete": sqlCompleteBatch,
	}
}

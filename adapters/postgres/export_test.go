package postgres

import "context"

// TranslateForTest exposes translate to the external tests.
var TranslateForTest = translate

// RelaxedExecForTest exposes relaxedExec to the external tests.
func (s *Store) RelaxedExecForTest(ctx context.Context, sql string, args ...any) error {
	_, err := s.relaxedExec(ctx, sql, args...)
	return err
}

package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

var _ service.RecordingIndex = (*Store)(nil)

// AddRecording implements service.RecordingIndex.
func (s *Store) AddRecording(ctx context.Context, ref service.RecordingRef) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO recording_objects (tenant, recording_id, guid, object_key)
		VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, recording_id) DO NOTHING`, ref.Tenant, ref.RecordingID, ref.SessionID, ref.ObjectKey)
	if err != nil {
		return fmt.Errorf("add recording %s: %w", ref.RecordingID, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	got, err := s.FindRecording(ctx, ref.Tenant, ref.RecordingID)
	if err != nil {
		return err
	}
	if got.SessionID != ref.SessionID || got.ObjectKey != ref.ObjectKey {
		return &domain.Error{Code: domain.CodeConflict, Message: "recording id " + ref.RecordingID + " is used by another session", Err: domain.ErrConflict}
	}
	return nil
}

// FindRecording implements service.RecordingIndex.
func (s *Store) FindRecording(ctx context.Context, tenant, recordingID string) (service.RecordingRef, error) {
	ref := service.RecordingRef{Tenant: tenant, RecordingID: recordingID}
	err := s.pool.QueryRow(ctx, `SELECT guid, object_key FROM recording_objects WHERE tenant = $1 AND recording_id = $2`,
		tenant, recordingID).Scan(&ref.SessionID, &ref.ObjectKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return ref, &domain.Error{Code: domain.CodeNotFound, Message: "recording " + recordingID + " does not exist", Err: domain.ErrNotFound}
	}
	if err != nil {
		return ref, fmt.Errorf("find recording %s: %w", recordingID, err)
	}
	return ref, nil
}

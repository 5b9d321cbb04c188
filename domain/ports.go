package domain

import "context"

// EventStore is the port to the immutable log that the services load
// aggregates from and append their changes to. The ledger implements it;
// implementations must be safe for concurrent use.
type EventStore interface {
	// Load returns the events of stream in tenant in version order, with
	// their personal fields opened (or marked erased). A stream without
	// events yields an empty slice and no error.
	Load(ctx context.Context, tenant, stream string) ([]Event, error)
	// Append appends events to stream, all of one tenant, if the stream's
	// current version is expectedVersion (0 for a new stream), and returns
	// them with Version, Position, Seq, RecordedAt and LeafHash assigned.
	// An event whose ID is already stored with the same content is an
	// idempotent no-op and is returned as stored. It returns an error
	// matching ErrConcurrency on a version clash and ErrConflict when an
	// event ID is reused for different content.
	Append(ctx context.Context, stream string, expectedVersion int64, events ...Event) ([]Event, error)
}

package ledger

import (
	"context"
	"errors"

	"github.com/vigilhq/vigil/domain"
	"golang.org/x/mod/sumdb/tlog"
)

// Expected stream versions with a special meaning for Append.
const (
	// AnyVersion appends whatever the stream's current version.
	AnyVersion int64 = -1
	// NoStream appends only if the stream has no events yet.
	NoStream int64 = 0
)

// AppendRequest is one caller's append: events for one stream, all or
// nothing. The events are sealed, and for an explicit ExpectedVersion their
// versions and leaf hashes are already set; the store checks the version and
// recomputes anything that differs from what it assigns.
type AppendRequest struct {
	Tenant          string
	Stream          string
	ExpectedVersion int64
	Events          []domain.Event

	// Set by the store.
	Err error
}

// Store keeps the log. One Commit is one transaction: for each request that
// passes its version check, it assigns versions, global positions (gapless,
// in commit order across every process writing to the store), per-tenant
// sequence numbers and leaf hashes, and writes the events with the Merkle
// log's stored hashes. Implementations are safe for concurrent use; a shared
// contract suite (ledger/ledgertest) pins their behaviour.
type Store interface {
	KeyStore

	// Commit writes reqs in one transaction. A request whose expected
	// version does not match gets Err wrapping domain.ErrConcurrency; one
	// whose event ids are all stored already gets the stored events back
	// (idempotent retry); one that mixes stored and new ids, or reuses an
	// id of another stream, gets domain.ErrConflict. Such per-request
	// failures leave the other requests to commit. Commit returns an error
	// only when the transaction as a whole failed; then no request was
	// written, unless the failure was in the commit itself, in which case
	// the outcome is unknown, the error wraps ErrOutcomeUnknown, and a
	// retry with the same event ids is safe.
	Commit(ctx context.Context, reqs []*AppendRequest) error

	// ReadStream returns the events of stream in tenant with version above
	// after, in version order, sealed.
	ReadStream(ctx context.Context, tenant, stream string, after int64) ([]domain.Event, error)
	// ReadAll returns up to limit events with position above after, in
	// position order, sealed.
	ReadAll(ctx context.Context, after int64, limit int) ([]domain.Event, error)
	// EventByID returns the event with id, domain.ErrNotFound if none.
	EventByID(ctx context.Context, id [16]byte) (domain.Event, error)
	// Head returns the highest committed position, 0 for an empty log.
	Head(ctx context.Context) (int64, error)
	// WaitForAppend blocks until the head may have passed after, ctx ends,
	// or a poll interval passed; callers re-check the head.
	WaitForAppend(ctx context.Context, after int64) error

	// Tenants returns the tenants that have a Merkle log, sorted.
	Tenants(ctx context.Context) ([]string, error)
	// TreeSize returns the size of tenant's Merkle log.
	TreeSize(ctx context.Context, tenant string) (int64, error)
	// ReadHashes returns the stored hashes of tenant's log at indexes, in
	// the same order; it implements tlog.HashReader through HashReader.
	ReadHashes(ctx context.Context, tenant string, indexes []int64) ([]tlog.Hash, error)
	// ScanLog calls fn for each event of tenant with seq in [from, to), in
	// seq order, with LeafHash as stored and the sealed fields as their
	// stored bytes (e.Sealed is left nil, so that a verifier hashes exactly
	// what is stored and a malformed encoding cannot stop the scan). fn
	// must not keep e or sealed after it returns.
	ScanLog(ctx context.Context, tenant string, from, to int64, fn func(e *domain.Event, sealed []byte) error) error
	// ScanHashes calls fn for each stored hash of tenant in index order.
	ScanHashes(ctx context.Context, tenant string, fn func(index int64, h tlog.Hash) error) error
	// ScanPositions calls fn for every committed position in order.
	ScanPositions(ctx context.Context, fn func(position int64) error) error

	// SaveCheckpoint stores c; storing again a checkpoint of a size already
	// checkpointed with the same root is a no-op, and with another root (a
	// fork of the log) an error wrapping ErrCheckpointFork, the stored
	// checkpoint left as it was.
	SaveCheckpoint(ctx context.Context, c Checkpoint) error
	// LatestCheckpoint returns tenant's largest checkpoint,
	// domain.ErrNotFound when it has none.
	LatestCheckpoint(ctx context.Context, tenant string) (Checkpoint, error)
	// Checkpoints returns every checkpoint of tenant in size order.
	Checkpoints(ctx context.Context, tenant string) ([]Checkpoint, error)
}

// Syncer is implemented by a Store whose Commit may return before the
// commit is durable, so that the one transaction at a time that assigns
// positions does not also wait for its flush to disk (the PostgreSQL store
// commits asynchronously for that reason). Sync returns nil once every
// commit that returned before the call is durable; several commits share
// one Sync. The ledger acknowledges an append only after a Sync that
// covers it, and Subscribe hands events to its callback only after one.
// An error leaves the durability of those commits unknown; a retry of
// their appends with the same event ids settles it.
type Syncer interface {
	Sync(ctx context.Context) error
}

// StreamsReader is implemented by a Store that reads the new events of
// several streams of a tenant in one query. ReadStreams returns the events
// of each streams[i] with version above after[i], sealed, each stream's in
// version order.
type StreamsReader interface {
	ReadStreams(ctx context.Context, tenant string, streams []string, after []int64) ([]domain.Event, error)
}

// HashReader adapts a store's tenant log to tlog.HashReader, for proofs.
type HashReader struct {
	Ctx    context.Context
	Store  Store
	Tenant string
}

// ReadHashes implements tlog.HashReader.
func (r HashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	return r.Store.ReadHashes(r.Ctx, r.Tenant, indexes)
}

// ErrOutcomeUnknown is wrapped by Store.Commit's error when the connection
// was lost after COMMIT may have reached the server: the events may be
// stored or not. The ledger resolves it by retrying with the same event ids
// (a request whose ids are all stored gets the stored events back) until
// the database answers again, within Options.OutcomeWindow.
var ErrOutcomeUnknown = errors.New("commit outcome unknown")

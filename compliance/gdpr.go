// Package compliance implements what the product exists for beyond the log
// itself: GDPR subject export and erasure (crypto-shredding with a signed
// receipt), retention of closed sessions (archive, then shred), and the
// auditor's exports with proofs. It works on the ledger and the reporting
// tables, writing SQL with pgx directly as the projections do.
package compliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

// Credentials is what erasure needs of the identity store: removing a
// technician's credential (password hash, e-mail blind index, sealed TOTP
// secrets) and ending their tokens. service.IdentityStore satisfies it.
type Credentials interface {
	DeleteCredential(ctx context.Context, tenant, technicianID string) error
	EndTechnicianTokens(ctx context.Context, tenant, technicianID string, at time.Time) (int, error)
}

// RecordingDeleter deletes one stored recording's object; erasure calls it
// for every recording of an erased session that has an object key. Nothing
// stores recordings yet: nil means there is nothing to delete.
type RecordingDeleter func(ctx context.Context, tenant, guid, recordingID, objectKey string) error

// WebhookPurger purges stored webhook payloads that carried personal data
// of subject, and returns how many; nil means none are stored (webhooks do
// not exist yet).
type WebhookPurger func(ctx context.Context, tenant string, subject domain.Subject) (int64, error)

// GDPRConfig wires a GDPR service.
type GDPRConfig struct {
	// Pool is the database holding the reporting tables and the erasure
	// requests (required).
	Pool *pgxpool.Pool
	// Ledger is the log (required): events are read and opened through it,
	// compliance events appended, keys shredded.
	Ledger *ledger.Ledger
	// Credentials removes an erased technician's credential and tokens
	// (required).
	Credentials Credentials
	// Signer signs erasure receipts: the checkpoint signing key, so that
	// the checkpoint verifier key checks them (required).
	Signer note.Signer
	// Recordings deletes recordings' objects on erasure (optional).
	Recordings RecordingDeleter
	// Webhooks purges stored webhook payloads on erasure (optional).
	Webhooks WebhookPurger
	// DefaultDelay is the grace period of an erasure request that names
	// none (default 24 h, the whitepaper's revocable delay).
	DefaultDelay time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Logger receives the worker's messages (default slog.Default()).
	Logger *slog.Logger
	// CatchUp, when set, brings the projections that hold personal data up
	// to the log's head (projections.Runner.CatchUp; safe beside a running
	// runner). An erasure calls it once the keys are destroyed and before
	// it purges, so that every event sealed for the subject is projected
	// and the purge finds all its rows; nothing sealed for the subject can
	// be appended after. Without it, rows projected after the purge carry
	// references that open as [erased], and a rebuild removes them
	// (PurgeAfterRebuild).
	CatchUp func(context.Context) error
}

// GDPR runs subject exports and erasures for the API, the erase command
// and the erasure worker. It is safe for concurrent use and across
// processes.
type GDPR struct {
	cfg GDPRConfig
	// failAfter, set by tests, makes an erasure stop with an error after
	// the named step, as a crash would.
	failAfter func(step string) error
}

// DefaultErasureDelay is the grace period of an erasure request that names
// none: the whitepaper's product deletes chat logs after a revocable 24-hour
// delay.
const DefaultErasureDelay = 24 * time.Hour

// NewGDPR returns the GDPR service. It panics when a required dependency
// is missing, which is a wiring mistake.
func NewGDPR(cfg GDPRConfig) *GDPR {
	if cfg.Pool == nil || cfg.Ledger == nil || cfg.Credentials == nil || cfg.Signer == nil {
		panic("compliance: NewGDPR needs Pool, Ledger, Credentials and Signer")
	}
	if cfg.DefaultDelay <= 0 {
		cfg.DefaultDelay = DefaultErasureDelay
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &GDPR{cfg: cfg}
}

func (g *GDPR) now() time.Time { return g.cfg.Now().UTC().Truncate(time.Microsecond) }

// requireGDPRAdmin checks that p is an admin API key: exports and erasures
// are the data-protection officer's, never a technician's.
func requireGDPRAdmin(p service.Principal) error {
	if p.Role != service.RoleAdmin || p.Tenant == "" {
		return &domain.Error{Code: domain.CodeForbidden, Message: "GDPR exports and erasures need an admin key", Err: domain.ErrForbidden}
	}
	return nil
}

// subjectStream returns the stream of a technician or session subject.
func subjectStream(s domain.Subject) string {
	kind, id, _ := strings.Cut(string(s), ":")
	if kind == "technician" {
		return domain.TechnicianStream(id)
	}
	return domain.SessionStream(id)
}

// subjectID returns the id part of a subject ("<id>" of "technician:<id>").
func subjectID(s domain.Subject) string {
	_, id, _ := strings.Cut(string(s), ":")
	return id
}

func isTechnician(s domain.Subject) bool { return strings.HasPrefix(string(s), "technician:") }

// complianceEventID derives a stable event id for a step of a request, so
// that repeating the step appends nothing twice.
func complianceEventID(parts ...string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("vigil:compliance:"+strings.Join(parts, ":")))
}

// appendCompliance appends compliance events to stream (any version; they
// are accepted after a session closed, see domain.Session.RecordCompliance).
func (g *GDPR) appendCompliance(ctx context.Context, tenant, stream string, actor domain.Actor, at time.Time, ids []uuid.UUID, payloads ...domain.Payload) ([]domain.Event, error) {
	return appendComplianceTo(ctx, g.cfg.Ledger, tenant, stream, actor, at, ids, payloads...)
}

func appendComplianceTo(ctx context.Context, l *ledger.Ledger, tenant, stream string, actor domain.Actor, at time.Time, ids []uuid.UUID, payloads ...domain.Payload) ([]domain.Event, error) {
	evs := make([]domain.Event, 0, len(payloads))
	for i, p := range payloads {
		if !domain.IsComplianceEvent(p.EventType()) {
			return nil, fmt.Errorf("append %s: not a compliance event", p.EventType())
		}
		m := domain.Meta{Tenant: tenant, Stream: stream, Actor: actor, OccurredAt: at}
		if i < len(ids) {
			m.ID = ids[i]
		}
		e, err := domain.NewEvent(m, p)
		if err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	out, err := l.Append(ctx, stream, ledger.AnyVersion, evs...)
	if err != nil {
		return nil, fmt.Errorf("append %s to %s: %w", payloads[0].EventType(), stream, err)
	}
	return out, nil
}

// streamExists reports whether stream has any event.
func streamExists(ctx context.Context, l *ledger.Ledger, tenant, stream string) (bool, error) {
	evs, err := l.Store().ReadStream(ctx, tenant, stream, 0)
	if err != nil {
		return false, err
	}
	return len(evs) > 0, nil
}

// subjectPositions returns the positions the subject index holds for
// subjects, sorted, without repeats.
func subjectPositions(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, tenant string, subjects []domain.Subject) ([]int64, error) {
	names := make([]string, len(subjects))
	for i, s := range subjects {
		names[i] = string(s)
	}
	rows, err := q.Query(ctx, `SELECT DISTINCT position FROM rpt_subject_index WHERE tenant = $1 AND subject = ANY($2) ORDER BY position`, tenant, names)
	if err != nil {
		return nil, fmt.Errorf("subject index: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// notFoundf returns an error of code not_found matching domain.ErrNotFound.
func notFoundf(format string, args ...any) error {
	return &domain.Error{Code: domain.CodeNotFound, Message: fmt.Sprintf(format, args...), Err: domain.ErrNotFound}
}

// conflictf returns an error of code conflict matching domain.ErrConflict.
func conflictf(format string, args ...any) error {
	return &domain.Error{Code: domain.CodeConflict, Message: fmt.Sprintf(format, args...), Err: domain.ErrConflict}
}

var errNoRows = pgx.ErrNoRows

func isNoRows(err error) bool { return errors.Is(err, errNoRows) }

// mustJSON encodes v, which is built of plain values and cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("compliance: encoding %T: %v", v, err))
	}
	return b
}

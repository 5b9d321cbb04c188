package compliance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// Erasure scopes.
const (
	// ScopeAll erases the subject: every data key of domain.KeySubjects.
	ScopeAll = "all"
	// ScopeChat erases one session's chat log only (its chat key).
	ScopeChat = "chat"
)

// Erasure states as shown to callers. A request is pending until a worker
// starts it, running while (or after a crash during) erasing, then done;
// revoked when withdrawn while pending.
const (
	ErasurePending = "pending"
	ErasureRunning = "running"
	ErasureDone    = "done"
	ErasureRevoked = "revoked"
)

// MaxErasureDelay bounds the grace period of an erasure request.
const MaxErasureDelay = 90 * 24 * time.Hour

// ErasureRequest asks for the erasure of one subject.
type ErasureRequest struct {
	// Subject is "technician:<id>" or "session:<guid>".
	Subject string
	// Scope is ScopeAll (default) or ScopeChat (sessions only).
	Scope string
	// Delay is the revocable grace period; nil means the default (24 h), 0
	// erases at once.
	Delay *time.Duration
	// Reason is a short, non-personal comment recorded in the log.
	Reason string
	// EventID, when set, is the id of the erasure_requested event and so of
	// the request: repeating a request with the same id returns the first.
	EventID [16]byte
}

// Erasure is an erasure request and its state.
type Erasure struct {
	ID          string         `json:"id"`
	Tenant      string         `json:"tenant"`
	Subject     domain.Subject `json:"subject"`
	Scope       string         `json:"scope"`
	State       string         `json:"state"`
	RequestedAt time.Time      `json:"requested_at"`
	DueAt       time.Time      `json:"due_at"`
	RevokedAt   *time.Time     `json:"revoked_at,omitempty"`
	DoneAt      *time.Time     `json:"done_at,omitempty"`
	Attempts    int            `json:"attempts,omitempty"`
	// Receipt is the signed erasure receipt (see ParseErasureReceipt), once done.
	Receipt string `json:"receipt,omitempty"`
}

// keySubjects returns the subjects whose keys the request destroys.
func keySubjects(subject domain.Subject, scope string) []domain.Subject {
	if scope == ScopeChat {
		return []domain.Subject{domain.ChatSubject(subjectID(subject))}
	}
	return domain.KeySubjects(subject)
}

// RequestErasure records an erasure request for p's tenant (admin only):
// the request row and compliance.erasure_requested on the subject's stream.
// With a zero delay the erasure runs at once and the request comes back
// done, with its receipt. Errors: forbidden for a non-admin;
// invalid for a malformed subject, scope or delay; not_found for a subject
// without a stream.
func (g *GDPR) RequestErasure(ctx context.Context, p service.Principal, req ErasureRequest) (Erasure, error) {
	if err := requireGDPRAdmin(p); err != nil {
		return Erasure{}, err
	}
	subject, err := domain.ParseSubject(req.Subject)
	if err != nil {
		return Erasure{}, err
	}
	scope := req.Scope
	switch scope {
	case "":
		scope = ScopeAll
	case ScopeAll:
	case ScopeChat:
		if isTechnician(subject) {
			return Erasure{}, domain.Errorf(domain.CodeInvalid, "scope chat is for sessions only")
		}
	default:
		return Erasure{}, domain.Errorf(domain.CodeInvalid, "scope %q: want all or chat", scope)
	}
	delay := g.cfg.DefaultDelay
	if req.Delay != nil {
		delay = *req.Delay
	}
	if delay < 0 || delay > MaxErasureDelay {
		return Erasure{}, domain.Errorf(domain.CodeInvalid, "delay %s: want 0 to %s", delay, MaxErasureDelay)
	}
	if len(req.Reason) > 200 {
		return Erasure{}, domain.Errorf(domain.CodeInvalid, "reason: at most 200 characters")
	}
	stream := subjectStream(subject)
	ok, err := streamExists(ctx, g.cfg.Ledger, p.Tenant, stream)
	if err != nil {
		return Erasure{}, err
	}
	if !ok {
		return Erasure{}, notFoundf("%s does not exist in this tenant", subject)
	}
	id := uuid.UUID(req.EventID)
	if id == uuid.Nil {
		id = domain.NewEventID()
	}
	if e, err := g.erasure(ctx, p.Tenant, id); err == nil {
		return e, nil // a repeat of a recorded request
	} else if !errors.Is(err, domain.ErrNotFound) {
		return Erasure{}, err
	}
	now := g.now()
	due := now.Add(delay)
	tx, err := g.cfg.Pool.Begin(ctx)
	if err != nil {
		return Erasure{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `INSERT INTO erasure_requests (id, tenant, subject, scope, state, requested_by, requested_at, due_at)
		VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		id, p.Tenant, string(subject), scope, p.CredentialID, now, due); err != nil {
		return Erasure{}, fmt.Errorf("record erasure request: %w", err)
	}
	named := subject
	if scope == ScopeChat {
		named = domain.ChatSubject(subjectID(subject))
	}
	// The event commits before the row: a request the log does not show
	// never runs; a crash between the two leaves an event without a row,
	// and a retry with the same id completes it.
	if _, err := g.appendCompliance(ctx, p.Tenant, stream, p.Actor(), now, []uuid.UUID{id},
		domain.ErasureRequested{Subject: named, Reason: req.Reason, NotBefore: due}); err != nil {
		return Erasure{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Erasure{}, fmt.Errorf("record erasure request: %w", err)
	}
	if delay == 0 {
		if _, err := g.process(ctx, &id); err != nil {
			return Erasure{}, err
		}
	}
	return g.erasure(ctx, p.Tenant, id)
}

// Erasure returns the request id of p's tenant (admin only); not_found for
// an unknown id or one of another tenant.
func (g *GDPR) Erasure(ctx context.Context, p service.Principal, id string) (Erasure, error) {
	if err := requireGDPRAdmin(p); err != nil {
		return Erasure{}, err
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return Erasure{}, notFoundf("no erasure request %q", id)
	}
	return g.erasure(ctx, p.Tenant, u)
}

func (g *GDPR) erasure(ctx context.Context, tenant string, id uuid.UUID) (Erasure, error) {
	var e Erasure
	var u uuid.UUID
	var subject string
	var receipt *string
	var started bool
	err := g.cfg.Pool.QueryRow(ctx, `SELECT r.id, r.tenant, r.subject, r.scope, r.state, r.requested_at, r.due_at, r.revoked_at, r.done_at,
			r.attempts, r.receipt, EXISTS (SELECT 1 FROM erasure_progress p WHERE p.id = r.id)
		FROM erasure_requests r WHERE r.id = $1 AND r.tenant = $2`, id, tenant).
		Scan(&u, &e.Tenant, &subject, &e.Scope, &e.State, &e.RequestedAt, &e.DueAt, &e.RevokedAt, &e.DoneAt, &e.Attempts, &receipt, &started)
	if isNoRows(err) {
		return Erasure{}, notFoundf("no erasure request %s", id)
	}
	if err != nil {
		return Erasure{}, fmt.Errorf("erasure request %s: %w", id, err)
	}
	e.ID, e.Subject = u.String(), domain.Subject(subject)
	if e.State == ErasurePending && started {
		e.State = ErasureRunning
	}
	if receipt != nil {
		e.Receipt = *receipt
	}
	return e, nil
}

// RevokeErasure withdraws a pending request of p's tenant (admin only) and
// appends compliance.erasure_revoked. Revoking a revoked request returns
// it. Errors: not_found for an unknown id; conflict once the erasure has
// started or is done (a revocation racing a running erasure waits for it
// and then fails).
func (g *GDPR) RevokeErasure(ctx context.Context, p service.Principal, id, reason string) (Erasure, error) {
	if err := requireGDPRAdmin(p); err != nil {
		return Erasure{}, err
	}
	if len(reason) > 200 {
		return Erasure{}, domain.Errorf(domain.CodeInvalid, "reason: at most 200 characters")
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return Erasure{}, notFoundf("no erasure request %q", id)
	}
	now := g.now()
	tx, err := g.cfg.Pool.Begin(ctx)
	if err != nil {
		return Erasure{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var subject, scope string
	var revokedAt time.Time
	err = tx.QueryRow(ctx, `UPDATE erasure_requests r SET state = 'revoked', revoked_at = $3
		WHERE r.id = $1 AND r.tenant = $2 AND r.state = 'pending'
		  AND NOT EXISTS (SELECT 1 FROM erasure_progress p WHERE p.id = r.id)
		RETURNING r.subject, r.scope, r.revoked_at`, u, p.Tenant, now).Scan(&subject, &scope, &revokedAt)
	if isNoRows(err) {
		_ = tx.Rollback(ctx)
		e, err := g.erasure(ctx, p.Tenant, u)
		if err != nil {
			return Erasure{}, err
		}
		if e.State == ErasureRevoked {
			return e, nil
		}
		return Erasure{}, conflictf("erasure request %s is %s and can no longer be revoked", id, e.State)
	}
	if err != nil {
		return Erasure{}, fmt.Errorf("revoke erasure %s: %w", id, err)
	}
	s := domain.Subject(subject)
	named := s
	if scope == ScopeChat {
		named = domain.ChatSubject(subjectID(s))
	}
	if _, err := g.appendCompliance(ctx, p.Tenant, subjectStream(s), p.Actor(), revokedAt,
		[]uuid.UUID{complianceEventID(u.String(), "revoked")},
		domain.ErasureRevoked{Subject: named, RequestEventID: u, Reason: reason}); err != nil {
		return Erasure{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Erasure{}, fmt.Errorf("revoke erasure %s: %w", id, err)
	}
	return g.erasure(ctx, p.Tenant, u)
}

// RunErasures performs due erasures every interval until ctx ends. Any
// number of processes may run it: each request is claimed with a row lock
// (SKIP LOCKED), and one interrupted by a crash is picked up again and
// completed, its steps being idempotent.
func (g *GDPR) RunErasures(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := g.ProcessDue(ctx); err != nil && ctx.Err() == nil {
			g.cfg.Logger.Error("erasure worker", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ProcessDue performs every erasure that is due and not being performed by
// another process, and returns how many it completed. It stops at the
// first failure, which it returns (the request stays pending and is
// retried).
func (g *GDPR) ProcessDue(ctx context.Context) (int, error) {
	n := 0
	for {
		done, err := g.process(ctx, nil)
		if err != nil || !done {
			return n, err
		}
		n++
	}
}

// erasureJob is a claimed request.
type erasureJob struct {
	id          uuid.UUID
	tenant      string
	subject     domain.Subject
	scope       string
	requestedBy string
}

// process claims one due request (the one with id, when given) and
// performs it, holding its row lock until it is marked done. It reports
// whether it performed one.
func (g *GDPR) process(ctx context.Context, id *uuid.UUID) (bool, error) {
	tx, err := g.cfg.Pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var j erasureJob
	var subject string
	q := `SELECT id, tenant, subject, scope, requested_by FROM erasure_requests
		WHERE state = 'pending' AND due_at <= $1 ORDER BY due_at, id FOR UPDATE SKIP LOCKED LIMIT 1`
	args := []any{g.now()}
	if id != nil {
		q = `SELECT id, tenant, subject, scope, requested_by FROM erasure_requests
			WHERE state = 'pending' AND due_at <= $1 AND id = $2 FOR UPDATE SKIP LOCKED`
		args = append(args, *id)
	}
	err = tx.QueryRow(ctx, q, args...).Scan(&j.id, &j.tenant, &subject, &j.scope, &j.requestedBy)
	if isNoRows(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim erasure: %w", err)
	}
	j.subject = domain.Subject(subject)
	receipt, doneAt, err := g.erase(ctx, j)
	if err != nil {
		_ = tx.Rollback(ctx)
		if _, uerr := g.cfg.Pool.Exec(context.WithoutCancel(ctx), `UPDATE erasure_requests SET attempts = attempts + 1, last_error = $2 WHERE id = $1`,
			j.id, truncate(err.Error(), 500)); uerr != nil {
			g.cfg.Logger.Warn("record erasure failure", "request", j.id, "err", uerr)
		}
		return false, fmt.Errorf("erase %s (request %s): %w", j.subject, j.id, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE erasure_requests SET state = 'done', done_at = $2, receipt = $3, attempts = attempts + 1, last_error = '' WHERE id = $1`,
		j.id, doneAt, string(receipt)); err != nil {
		return false, fmt.Errorf("finish erasure %s: %w", j.id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("finish erasure %s: %w", j.id, err)
	}
	g.cfg.Logger.Info("subject erased", "tenant", j.tenant, "subject", j.subject, "scope", j.scope, "request", j.id)
	return true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// erasureProgress is what was counted before anything was destroyed.
type erasureProgress struct {
	startedAt       time.Time
	eventsAffected  int64
	projectionRows  int64
	recordings      int64
	webhookPayloads int64
	keyIDs          []string
}

// erase performs the steps of one erasure. Every step is idempotent, so
// that a run interrupted anywhere completes when repeated:
//
//  1. plan: count what will be destroyed and commit the counts (from then
//     on the request cannot be revoked);
//  2. shred every key subject (a missing key is first created, then
//     destroyed, so that nothing can ever be sealed for it again);
//  3. purge the reporting rows, the subject index, stored API answers that
//     name the subject, and, for technicians, the credential and tokens;
//  4. delete recordings and webhook payloads (hooks);
//  5. append compliance.subject_erased, one per destroyed key, with ids
//     derived from the request;
//  6. sign the receipt (Ed25519 is deterministic: a repeat signs the same
//     text to the same receipt).
func (g *GDPR) erase(ctx context.Context, j erasureJob) ([]byte, time.Time, error) {
	subjects := keySubjects(j.subject, j.scope)
	prog, err := g.plan(ctx, j, subjects)
	if err != nil {
		return nil, time.Time{}, err
	}
	if err := g.fail("plan"); err != nil {
		return nil, time.Time{}, err
	}

	sealer := g.cfg.Ledger.Sealer()
	keyIDs := make([]string, len(subjects))
	for i, s := range subjects {
		// Make sure the subject has a key to destroy: a destroyed key is
		// what refuses every later attempt to seal data of the subject.
		if _, err := sealer.SealSecret(ctx, j.tenant, s, "vigil/erasure-tombstone", nil); err != nil && !errors.Is(err, domain.ErrSubjectErased) {
			return nil, time.Time{}, fmt.Errorf("tombstone %s: %w", s, err)
		}
		id, err := sealer.Shred(ctx, j.tenant, s)
		if err != nil {
			return nil, time.Time{}, err
		}
		keyIDs[i] = id
		if err := g.fail("shred"); err != nil {
			return nil, time.Time{}, err
		}
	}
	if _, err := g.cfg.Pool.Exec(ctx, `UPDATE erasure_progress SET key_ids = $2 WHERE id = $1`, j.id, keyIDs); err != nil {
		return nil, time.Time{}, fmt.Errorf("record destroyed keys: %w", err)
	}

	if g.cfg.CatchUp != nil {
		if err := g.cfg.CatchUp(ctx); err != nil {
			return nil, time.Time{}, fmt.Errorf("bring the projections up to date before the purge: %w", err)
		}
	}
	if _, err := purgeRows(ctx, g.cfg.Pool, j, subjects, false); err != nil {
		return nil, time.Time{}, err
	}
	if err := g.fail("purge"); err != nil {
		return nil, time.Time{}, err
	}
	if isTechnician(j.subject) && j.scope == ScopeAll {
		tech := subjectID(j.subject)
		if err := g.cfg.Credentials.DeleteCredential(ctx, j.tenant, tech); err != nil && !errors.Is(err, domain.ErrNotFound) {
			return nil, time.Time{}, fmt.Errorf("delete credential: %w", err)
		}
		if _, err := g.cfg.Credentials.EndTechnicianTokens(ctx, j.tenant, tech, g.now()); err != nil {
			return nil, time.Time{}, fmt.Errorf("end tokens: %w", err)
		}
	}
	if err := g.deleteRecordings(ctx, j); err != nil {
		return nil, time.Time{}, err
	}
	if g.cfg.Webhooks != nil {
		n, err := g.cfg.Webhooks(ctx, j.tenant, j.subject)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("purge webhook payloads: %w", err)
		}
		if n > 0 {
			if _, err := g.cfg.Pool.Exec(ctx, `UPDATE erasure_progress SET webhook_payloads = webhook_payloads + $2 WHERE id = $1`, j.id, n); err != nil {
				return nil, time.Time{}, err
			}
			prog.webhookPayloads += n
		}
	}
	if err := g.fail("hooks"); err != nil {
		return nil, time.Time{}, err
	}

	payloads := make([]domain.Payload, len(subjects))
	ids := make([]uuid.UUID, len(subjects))
	for i, s := range subjects {
		ev := domain.SubjectErased{Subject: s, KeyID: keyIDs[i]}
		if i == 0 {
			ev.EventsAffected, ev.ProjectionRows = prog.eventsAffected, prog.projectionRows
			ev.Recordings, ev.WebhookPayloads = prog.recordings, prog.webhookPayloads
		}
		payloads[i], ids[i] = ev, complianceEventID(j.id.String(), "erased", string(s))
	}
	actor := domain.Actor{Kind: domain.ActorSystem, ID: "erasure"}
	evs, err := g.appendCompliance(ctx, j.tenant, subjectStream(j.subject), actor, prog.startedAt, ids, payloads...)
	if err != nil {
		return nil, time.Time{}, err
	}
	if err := g.fail("append"); err != nil {
		return nil, time.Time{}, err
	}
	r := ErasureReceipt{
		Tenant: j.tenant, Subject: j.subject, Scope: j.scope, Request: j.id.String(), ErasedAt: prog.startedAt,
		EventsAffected: prog.eventsAffected, ProjectionRows: prog.projectionRows,
		Recordings: prog.recordings, WebhookPayloads: prog.webhookPayloads,
	}
	for i, s := range subjects {
		r.Keys = append(r.Keys, ErasedKey{Subject: s, KeyID: keyIDs[i]})
	}
	for _, e := range evs {
		r.Events = append(r.Events, ErasedEvent{ID: e.ID.String(), Position: e.Position, Seq: e.Seq, LeafHash: e.LeafHash})
	}
	msg, err := SignErasureReceipt(g.cfg.Signer, r)
	if err != nil {
		return nil, time.Time{}, err
	}
	return msg, prog.startedAt, nil
}

func (g *GDPR) fail(step string) error {
	if g.failAfter == nil {
		return nil
	}
	return g.failAfter(step)
}

// plan returns the request's progress row, counting and storing it first
// when the erasure has not started before.
func (g *GDPR) plan(ctx context.Context, j erasureJob, subjects []domain.Subject) (erasureProgress, error) {
	var p erasureProgress
	load := func() error {
		return g.cfg.Pool.QueryRow(ctx, `SELECT started_at, events_affected, projection_rows, recordings, webhook_payloads, key_ids
			FROM erasure_progress WHERE id = $1`, j.id).
			Scan(&p.startedAt, &p.eventsAffected, &p.projectionRows, &p.recordings, &p.webhookPayloads, &p.keyIDs)
	}
	err := load()
	if err == nil {
		return p, nil
	}
	if !isNoRows(err) {
		return p, fmt.Errorf("erasure progress: %w", err)
	}
	positions, err := subjectPositions(ctx, g.cfg.Pool, j.tenant, subjects)
	if err != nil {
		return p, err
	}
	rows, err := purgeRows(ctx, g.cfg.Pool, j, subjects, true)
	if err != nil {
		return p, err
	}
	var recordings int64
	if !isTechnician(j.subject) && j.scope == ScopeAll {
		if err := g.cfg.Pool.QueryRow(ctx, `SELECT count(*) FROM rpt_recordings WHERE tenant = $1 AND guid = $2 AND object_key <> ''`,
			j.tenant, subjectID(j.subject)).Scan(&recordings); err != nil {
			return p, fmt.Errorf("count recordings: %w", err)
		}
	}
	if _, err := g.cfg.Pool.Exec(ctx, `INSERT INTO erasure_progress (id, started_at, events_affected, projection_rows, recordings, webhook_payloads, positions)
		VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (id) DO NOTHING`, j.id, g.now(), int64(len(positions)), rows, recordings, positions); err != nil {
		return p, fmt.Errorf("record erasure progress: %w", err)
	}
	if err := load(); err != nil {
		return p, fmt.Errorf("erasure progress: %w", err)
	}
	return p, nil
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// purgeStatement is one purge: a table, the rows concerned, and what is
// done to them (deleted, or the personal columns cleared).
type purgeStatement struct {
	table string
	where string // over $1 tenant, $2 subject id, $3 positions, $4 subject names
	set   string // "" deletes the rows
}

// purgeStatements lists what erasing subjects purges. Rows are found both
// by the subject index's positions and by the session or technician id,
// so that nothing is missed when one projection is ahead of the other.
func purgeStatements(subject domain.Subject, scope string) []purgeStatement {
	byPos := `tenant = $1 AND position = ANY($3)`
	switch {
	case isTechnician(subject):
		return []purgeStatement{
			{table: "rpt_logins", where: `tenant = $1 AND (technician_id = $2 OR position = ANY($3))`},
			{table: "rpt_chat", where: byPos},
			{table: "rpt_notes", where: byPos},
			{table: "rpt_file_transfers", where: byPos + ` AND name_ref IS NOT NULL`, set: `name_ref = NULL`},
			{table: "rpt_subject_index", where: `tenant = $1 AND subject = ANY($4)`},
			// Stored answers to idempotent requests (technician.created
			// answers carry the name and address).
			{table: "idempotency_keys", where: `tenant = $1 AND body IS NOT NULL AND position(convert_to($2, 'UTF8') IN body) > 0`},
		}
	case scope == ScopeChat:
		return []purgeStatement{
			{table: "rpt_chat", where: `tenant = $1 AND (guid = $2 OR position = ANY($3))`},
			{table: "rpt_subject_index", where: `tenant = $1 AND subject = ANY($4)`},
			{table: "idempotency_keys", where: `tenant = $1 AND body IS NOT NULL AND position(convert_to($2, 'UTF8') IN body) > 0`},
		}
	}
	return []purgeStatement{
		{table: "rpt_sessions", where: `tenant = $1 AND guid = $2 AND (customer_name_ref IS NOT NULL OR customer_email_ref IS NOT NULL
			OR custom_fields_ref IS NOT NULL OR customer_email_idx IS NOT NULL)`,
			set: `customer_name_ref = NULL, customer_email_ref = NULL, custom_fields_ref = NULL, customer_email_idx = NULL`},
		{table: "rpt_chat", where: `tenant = $1 AND (guid = $2 OR position = ANY($3))`},
		{table: "rpt_notes", where: `tenant = $1 AND (guid = $2 OR position = ANY($3))`},
		{table: "rpt_file_transfers", where: `tenant = $1 AND (guid = $2 OR position = ANY($3)) AND name_ref IS NOT NULL`, set: `name_ref = NULL`},
		{table: "rpt_logins", where: byPos},
		{table: "rpt_subject_index", where: `tenant = $1 AND subject = ANY($4)`},
		{table: "idempotency_keys", where: `tenant = $1 AND body IS NOT NULL AND position(convert_to($2, 'UTF8') IN body) > 0`},
	}
}

// purgeRows counts (count set) or purges the rows of the request's
// subjects, and returns how many rows that is. The rows are found by the
// subject index and by the positions the erasure recorded when it started
// (the index no longer names them once purged). Purging twice purges
// nothing more.
func purgeRows(ctx context.Context, db execer, j erasureJob, subjects []domain.Subject, count bool) (int64, error) {
	positions, err := subjectPositions(ctx, db, j.tenant, subjects)
	if err != nil {
		return 0, err
	}
	var stored []int64
	err = db.QueryRow(ctx, `SELECT positions FROM erasure_progress WHERE id = $1`, j.id).Scan(&stored)
	if err != nil && !isNoRows(err) {
		return 0, fmt.Errorf("erasure progress: %w", err)
	}
	positions = append(positions, stored...)
	names := make([]string, len(subjects))
	for i, s := range subjects {
		names[i] = string(s)
	}
	args := []any{j.tenant, subjectID(j.subject), positions, names}
	var total int64
	for _, st := range purgeStatements(j.subject, j.scope) {
		// Every statement names all four parameters so that their types
		// are known.
		where := st.where + ` AND $2::text IS NOT NULL AND $3::bigint[] IS NOT NULL AND $4::text[] IS NOT NULL`
		if count {
			var n int64
			if err := db.QueryRow(ctx, `SELECT count(*) FROM `+st.table+` WHERE `+where, args...).Scan(&n); err != nil {
				return 0, fmt.Errorf("count %s: %w", st.table, err)
			}
			total += n
			continue
		}
		sql := `DELETE FROM ` + st.table + ` WHERE ` + where
		if st.set != "" {
			sql = `UPDATE ` + st.table + ` SET ` + st.set + ` WHERE ` + where
		}
		tag, err := db.Exec(ctx, sql, args...)
		if err != nil {
			return 0, fmt.Errorf("purge %s: %w", st.table, err)
		}
		total += tag.RowsAffected()
	}
	return total, nil
}

// deleteRecordings deletes an erased session's recordings through the
// hook, then their rows.
func (g *GDPR) deleteRecordings(ctx context.Context, j erasureJob) error {
	if isTechnician(j.subject) || j.scope != ScopeAll {
		return nil
	}
	guid := subjectID(j.subject)
	if g.cfg.Recordings != nil {
		rows, err := g.cfg.Pool.Query(ctx, `SELECT recording_id, object_key FROM rpt_recordings WHERE tenant = $1 AND guid = $2 AND object_key <> ''`, j.tenant, guid)
		if err != nil {
			return fmt.Errorf("list recordings: %w", err)
		}
		type rec struct{ id, key string }
		recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rec, error) {
			var x rec
			return x, r.Scan(&x.id, &x.key)
		})
		if err != nil {
			return fmt.Errorf("list recordings: %w", err)
		}
		for _, r := range recs {
			if err := g.cfg.Recordings(ctx, j.tenant, guid, r.id, r.key); err != nil {
				return fmt.Errorf("delete recording %s: %w", r.id, err)
			}
		}
	}
	if _, err := g.cfg.Pool.Exec(ctx, `DELETE FROM rpt_recordings WHERE tenant = $1 AND guid = $2`, j.tenant, guid); err != nil {
		return fmt.Errorf("delete recording rows: %w", err)
	}
	return nil
}

// ErasedSubjects lists the subjects of tenant with a completed erasure of
// scope all, for callers that must refuse to show them.
func (g *GDPR) ErasedSubjects(ctx context.Context, tenant string) ([]domain.Subject, error) {
	rows, err := g.cfg.Pool.Query(ctx, `SELECT DISTINCT subject FROM erasure_requests WHERE tenant = $1 AND state = 'done' AND scope = 'all' ORDER BY 1`, tenant)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make([]domain.Subject, len(names))
	for i, n := range names {
		out[i] = domain.Subject(n)
	}
	return out, nil
}

// PurgeAfterRebuild removes again, in tx, what completed erasures and
// retention removed from the projections, and returns how many rows that
// was. A rebuild projects every event of the log again, erased subjects'
// and archived sessions' included (their sealed references would read
// [erased], but the rows would be back); the projection runner calls this
// in the rebuild's transaction (projections.Options.AfterRebuild), so that
// readers never see them. It is idempotent.
func PurgeAfterRebuild(ctx context.Context, tx pgx.Tx) (int64, error) {
	var total int64
	rows, err := tx.Query(ctx, `SELECT r.id, r.tenant, r.subject, r.scope FROM erasure_requests r
		WHERE r.state = 'done' ORDER BY r.done_at, r.id`)
	if err != nil {
		return 0, fmt.Errorf("completed erasures: %w", err)
	}
	var jobs []erasureJob
	for rows.Next() {
		var j erasureJob
		var subject string
		if err := rows.Scan(&j.id, &j.tenant, &subject, &j.scope); err != nil {
			rows.Close()
			return 0, err
		}
		j.subject = domain.Subject(subject)
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, j := range jobs {
		n, err := purgeRows(ctx, tx, j, keySubjects(j.subject, j.scope), false)
		if err != nil {
			return total, fmt.Errorf("erasure %s: %w", j.id, err)
		}
		total += n
	}
	// Erased sessions' recordings (the objects were deleted with them).
	tag, err := tx.Exec(ctx, `DELETE FROM rpt_recordings x USING erasure_requests r
		WHERE r.state = 'done' AND r.scope = 'all' AND r.subject = 'session:' || x.guid AND x.tenant = r.tenant`)
	if err != nil {
		return total, fmt.Errorf("erased recordings: %w", err)
	}
	total += tag.RowsAffected()
	// Sessions moved out by retention: their rows go again; purged ones
	// also leave the subject index.
	for _, t := range retentionTables {
		tag, err := tx.Exec(ctx, `DELETE FROM `+t+` x USING retention_sessions r WHERE x.tenant = r.tenant AND x.guid = r.guid`)
		if err != nil {
			return total, fmt.Errorf("retention %s: %w", t, err)
		}
		total += tag.RowsAffected()
	}
	tag, err = tx.Exec(ctx, `DELETE FROM rpt_subject_index x USING retention_sessions r
		WHERE r.state = 'purged' AND x.tenant = r.tenant
		  AND x.subject IN ('session:' || r.guid, 'session-chat:' || r.guid)`)
	if err != nil {
		return total, fmt.Errorf("retention subject index: %w", err)
	}
	return total + tag.RowsAffected(), nil
}

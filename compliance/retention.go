package compliance

import (
	"context"
	"encoding/base64"
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
	"github.com/vigilhq/vigil/ledger"
)

// RetentionArchiveFormat names the archive bundle's JSON shape (before
// encryption).
const RetentionArchiveFormat = "vigil-retention-archive/v1"

// retentionPurpose binds an archive's encryption to its use.
const retentionPurpose = "vigil/retention-archive"

// RetentionConfig wires a retention job.
type RetentionConfig struct {
	// Pool is the database of the reporting tables and retention state
	// (required).
	Pool *pgxpool.Pool
	// Ledger is the log (required).
	Ledger *ledger.Ledger
	// Blobs stores the archive bundles (required).
	Blobs Blobs
	// Recordings deletes a session's recording objects when it is shredded
	// at the end of the archive period (optional: nil keeps the objects,
	// unreadable once the keys are gone).
	Recordings RecordingDeleter
	// Now is the clock (default time.Now); tests move it by years.
	Now func() time.Time
	// Logger receives the job's messages (default slog.Default()).
	Logger *slog.Logger
}

// RetentionJob applies each tenant's retention policy (domain.Retention) to
// closed sessions: past the online period a session's events are archived,
// encrypted, with inclusion proofs, into the blob store and its reporting
// rows removed (compliance.retention_archived); past the archive period its
// keys are shredded and the archive deleted (compliance.retention_purged).
// Every step is idempotent and keyed by the session, so that a crash
// anywhere is completed by the next run, and any number of processes may
// run the job (each session is handled under an advisory lock). It is safe
// for concurrent use.
type RetentionJob struct {
	cfg RetentionConfig
}

// NewRetentionJob returns the job. It panics when a required dependency is
// missing.
func NewRetentionJob(cfg RetentionConfig) *RetentionJob {
	if cfg.Pool == nil || cfg.Ledger == nil || cfg.Blobs == nil {
		panic("compliance: NewRetentionJob needs Pool, Ledger and Blobs")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &RetentionJob{cfg: cfg}
}

// RetentionReport counts what one run did.
type RetentionReport struct {
	Archived int
	Purged   int
}

// RunRetention runs the job every interval until ctx ends.
func (j *RetentionJob) RunRetention(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rep, err := j.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			j.cfg.Logger.Error("retention", "err", err)
		} else if rep.Archived+rep.Purged > 0 {
			j.cfg.Logger.Info("retention applied", "archived", rep.Archived, "purged", rep.Purged)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce archives every closed session past its tenant's online period
// and purges every archived one past the archive period.
func (j *RetentionJob) RunOnce(ctx context.Context) (RetentionReport, error) {
	var rep RetentionReport
	now := j.cfg.Now().UTC().Truncate(time.Microsecond)
	policies := map[string]domain.Retention{}
	policy := func(tenant string) (domain.Retention, error) {
		if p, ok := policies[tenant]; ok {
			return p, nil
		}
		p, err := j.policy(ctx, tenant)
		policies[tenant] = p
		return p, err
	}
	rows, err := j.cfg.Pool.Query(ctx, `SELECT s.tenant, s.guid, s.closed_at FROM rpt_sessions s
		WHERE s.status = 'closed' AND s.closed_at IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM retention_sessions r WHERE r.tenant = s.tenant AND r.guid = s.guid)
		ORDER BY s.closed_at`)
	if err != nil {
		return rep, fmt.Errorf("retention candidates: %w", err)
	}
	type cand struct {
		tenant, guid string
		closed       time.Time
	}
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cand, error) {
		var c cand
		return c, r.Scan(&c.tenant, &c.guid, &c.closed)
	})
	if err != nil {
		return rep, fmt.Errorf("retention candidates: %w", err)
	}
	for _, c := range cands {
		p, err := policy(c.tenant)
		if err != nil {
			return rep, err
		}
		if now.Before(c.closed.AddDate(0, 0, p.OnlineDays)) {
			continue
		}
		purgeAfter := c.closed.AddDate(0, 0, p.OnlineDays+p.ArchiveDays)
		done, err := j.archive(ctx, c.tenant, c.guid, c.closed, purgeAfter, now)
		if err != nil {
			return rep, fmt.Errorf("archive session %s: %w", c.guid, err)
		}
		if done {
			rep.Archived++
		}
	}
	rows, err = j.cfg.Pool.Query(ctx, `SELECT tenant, guid FROM retention_sessions WHERE state = 'archived' AND purge_after <= $1 ORDER BY purge_after`, now)
	if err != nil {
		return rep, fmt.Errorf("retention purges: %w", err)
	}
	due, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cand, error) {
		var c cand
		return c, r.Scan(&c.tenant, &c.guid)
	})
	if err != nil {
		return rep, fmt.Errorf("retention purges: %w", err)
	}
	for _, c := range due {
		done, err := j.purge(ctx, c.tenant, c.guid, now)
		if err != nil {
			return rep, fmt.Errorf("purge session %s: %w", c.guid, err)
		}
		if done {
			rep.Purged++
		}
	}
	return rep, nil
}

// policy returns tenant's retention periods from its stream, the defaults
// when it states none.
func (j *RetentionJob) policy(ctx context.Context, tenant string) (domain.Retention, error) {
	evs, err := j.cfg.Ledger.Store().ReadStream(ctx, tenant, domain.TenantStream(tenant), 0)
	if err != nil {
		return domain.DefaultRetention, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	t := domain.NewTenant(tenant)
	if err := t.Load(evs); err != nil || !t.Exists() {
		return domain.DefaultRetention, nil
	}
	r := t.Retention()
	if r.OnlineDays <= 0 || r.ArchiveDays < 0 {
		return domain.DefaultRetention, nil
	}
	return r, nil
}

// lockSession starts a transaction holding the session's advisory lock, or
// returns nil when another process holds it.
func (j *RetentionJob) lockSession(ctx context.Context, tenant, guid string) (pgx.Tx, error) {
	tx, err := j.cfg.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended('vigil/retention/' || $1 || '/' || $2, 0))`, tenant, guid).Scan(&ok); err != nil || !ok {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	return tx, nil
}

// ArchiveBundle is the content of a retention archive, before encryption:
// the session's events as stored (their leaf encodings, personal fields
// sealed), each with its leaf hash and an inclusion proof to the signed
// checkpoint it carries.
type ArchiveBundle struct {
	Format     string          `json:"format"`
	Tenant     string          `json:"tenant"`
	Session    string          `json:"session"`
	Checkpoint string          `json:"checkpoint"` // the signed note
	Events     []ArchivedEvent `json:"events"`
}

// ArchivedEvent is one event of an archive.
type ArchivedEvent struct {
	Position int64    `json:"position"`
	Seq      int64    `json:"seq"`
	LeafHash string   `json:"leaf_hash"` // hex
	Leaf     string   `json:"leaf"`      // base64 of ledger.EncodeLeaf
	Proof    []string `json:"proof"`     // hex hashes, for tlog.CheckRecord
}

// retentionTables are the reporting tables an archived session leaves.
var retentionTables = []string{"rpt_sessions", "rpt_chat", "rpt_notes", "rpt_file_transfers", "rpt_consents", "rpt_actions", "rpt_recordings"}

func (j *RetentionJob) archive(ctx context.Context, tenant, guid string, closed, purgeAfter, now time.Time) (bool, error) {
	tx, err := j.lockSession(ctx, tenant, guid)
	if err != nil || tx == nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	l := j.cfg.Ledger
	stream := domain.SessionStream(guid)
	id := complianceEventID("retention", tenant, guid, "archived")
	var done domain.RetentionArchived
	if stored, err := l.Store().EventByID(ctx, id); err == nil {
		if err := json.Unmarshal(stored.Data, &done); err != nil {
			return false, fmt.Errorf("stored retention_archived: %w", err)
		}
	} else if !errors.Is(err, domain.ErrNotFound) {
		return false, err
	} else {
		evs, err := l.ReadSealed(ctx, tenant, stream, 0)
		if err != nil {
			return false, err
		}
		cp, err := l.Checkpoint(ctx, tenant)
		if err != nil {
			return false, err
		}
		b := ArchiveBundle{Format: RetentionArchiveFormat, Tenant: tenant, Session: guid, Checkpoint: string(cp.Note)}
		for i := range evs {
			e := &evs[i]
			proof, err := l.ProveInclusion(ctx, tenant, e.Seq, cp.Size)
			if err != nil {
				return false, fmt.Errorf("inclusion proof of seq %d: %w", e.Seq, err)
			}
			ae := ArchivedEvent{Position: e.Position, Seq: e.Seq, LeafHash: hex.EncodeToString(e.LeafHash[:]),
				Leaf: base64.StdEncoding.EncodeToString(ledger.EncodeLeaf(e))}
			for _, h := range proof {
				ae.Proof = append(ae.Proof, hex.EncodeToString(h[:]))
			}
			b.Events = append(b.Events, ae)
		}
		plain := mustJSON(b)
		blob, err := l.Sealer().SealSecret(ctx, tenant, domain.SessionSubject(guid), retentionPurpose, plain)
		if errors.Is(err, domain.ErrSubjectErased) {
			// An erased session: its sealed fields cannot be opened by
			// anyone, and the rest is public; keep the bundle as it is.
			blob, err = plain, nil
		}
		if err != nil {
			return false, err
		}
		done = domain.RetentionArchived{Subject: domain.SessionSubject(guid), Object: "archives/" + tenant + "/" + guid + ".vra",
			EventCount: int64(len(evs)), SHA256: hexSHA256(blob)}
		if err := j.cfg.Blobs.Put(ctx, done.Object, blob); err != nil {
			return false, err
		}
		actor := domain.Actor{Kind: domain.ActorSystem, ID: "retention"}
		if _, err := appendComplianceTo(ctx, l, tenant, stream, actor, now, []uuid.UUID{id}, done); err != nil {
			return false, err
		}
	}
	for _, t := range retentionTables {
		if _, err := tx.Exec(ctx, `DELETE FROM `+t+` WHERE tenant = $1 AND guid = $2`, tenant, guid); err != nil {
			return false, fmt.Errorf("remove %s rows: %w", t, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO retention_sessions (tenant, guid, state, closed_at, object, sha256, event_count, archived_at, purge_after)
		VALUES ($1, $2, 'archived', $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant, guid) DO NOTHING`,
		tenant, guid, closed, done.Object, done.SHA256, done.EventCount, now, purgeAfter); err != nil {
		return false, fmt.Errorf("record archive: %w", err)
	}
	return true, tx.Commit(ctx)
}

func (j *RetentionJob) purge(ctx context.Context, tenant, guid string, now time.Time) (bool, error) {
	tx, err := j.lockSession(ctx, tenant, guid)
	if err != nil || tx == nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var state, object string
	var count int64
	if err := tx.QueryRow(ctx, `SELECT state, object, event_count FROM retention_sessions WHERE tenant = $1 AND guid = $2`, tenant, guid).
		Scan(&state, &object, &count); err != nil {
		return false, err
	}
	if state != "archived" {
		return false, nil
	}
	l := j.cfg.Ledger
	subjects := domain.KeySubjects(domain.SessionSubject(guid))
	var keyID string
	for i, s := range subjects {
		if _, err := l.Sealer().SealSecret(ctx, tenant, s, "vigil/erasure-tombstone", nil); err != nil && !errors.Is(err, domain.ErrSubjectErased) {
			return false, err
		}
		id, err := l.Sealer().Shred(ctx, tenant, s)
		if err != nil {
			return false, err
		}
		if i == 0 {
			keyID = id
		}
	}
	if err := j.cfg.Blobs.Delete(ctx, object); err != nil {
		return false, err
	}
	if err := j.deleteRecordings(ctx, tenant, guid); err != nil {
		return false, err
	}
	names := make([]string, len(subjects))
	for i, s := range subjects {
		names[i] = string(s)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM rpt_subject_index WHERE tenant = $1 AND subject = ANY($2)`, tenant, names); err != nil {
		return false, err
	}
	actor := domain.Actor{Kind: domain.ActorSystem, ID: "retention"}
	if _, err := appendComplianceTo(ctx, l, tenant, domain.SessionStream(guid), actor, now,
		[]uuid.UUID{complianceEventID("retention", tenant, guid, "purged")},
		domain.RetentionPurged{Subject: domain.SessionSubject(guid), KeyID: keyID, EventCount: count, Object: object}); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `UPDATE retention_sessions SET state = 'purged', purged_at = $3 WHERE tenant = $1 AND guid = $2`, tenant, guid, now); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// OpenArchive decrypts and parses an archive bundle of tenant's session
// guid as Blobs holds it; it fails with domain.ErrSubjectErased once the
// session's key is shredded.
func OpenArchive(ctx context.Context, sealer *ledger.Sealer, tenant, guid string, blob []byte) (ArchiveBundle, error) {
	plain := blob
	if !strings.HasPrefix(string(blob), "{") {
		var err error
		if plain, err = sealer.OpenSecret(ctx, tenant, domain.SessionSubject(guid), retentionPurpose, blob); err != nil {
			return ArchiveBundle{}, err
		}
	}
	var b ArchiveBundle
	if err := json.Unmarshal(plain, &b); err != nil {
		return ArchiveBundle{}, fmt.Errorf("archive bundle: %w", err)
	}
	return b, nil
}

// deleteRecordings deletes a shredded session's recording objects through
// the hook. The reporting rows are gone since the archiving, so the objects
// are found in recording_objects, which outlives them.
func (j *RetentionJob) deleteRecordings(ctx context.Context, tenant, guid string) error {
	if j.cfg.Recordings == nil {
		return nil
	}
	rows, err := j.cfg.Pool.Query(ctx, `SELECT recording_id, object_key FROM recording_objects WHERE tenant = $1 AND guid = $2 ORDER BY recording_id`, tenant, guid)
	if err != nil {
		return fmt.Errorf("list recordings of %s: %w", guid, err)
	}
	type rec struct{ id, key string }
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rec, error) {
		var x rec
		return x, r.Scan(&x.id, &x.key)
	})
	if err != nil {
		return fmt.Errorf("list recordings of %s: %w", guid, err)
	}
	for _, r := range recs {
		if err := j.cfg.Recordings(ctx, tenant, guid, r.id, r.key); err != nil {
			return fmt.Errorf("delete recording %s: %w", r.id, err)
		}
	}
	return nil
}

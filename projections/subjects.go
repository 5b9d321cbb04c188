package projections

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/domain"
)

// Subjects is the GDPR subject index: for every event carrying personal
// data, one row per data subject and reporting table holding it (an empty tbl for
// the log alone). Export and erasure find everything about a subject here
// without scanning the log.
type Subjects struct{}

// NewSubjects returns the subject index projection.
func NewSubjects() *Subjects { return &Subjects{} }

// Name implements Projection.
func (*Subjects) Name() string { return "subjects" }

// Tables implements Tabled.
func (*Subjects) Tables() []string { return []string{"rpt_subject_index"} }

// Reset implements Projection.
func (*Subjects) Reset(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `DELETE FROM rpt_subject_index`)
	return err
}

// subjectTable names the reporting table that keeps an event type's
// personal values, if any.
func subjectTable(eventType string) string {
	switch eventType {
	case "session.created", "session.custom_fields_set":
		return "rpt_sessions"
	case "session.chat_message":
		return "rpt_chat"
	case "session.note_added":
		return "rpt_notes"
	case "session.file_sent", "session.file_received":
		return "rpt_file_transfers"
	case "technician.login_succeeded", "technician.login_failed", "technician.sso_login_succeeded", "technician.sso_login_failed":
		return "rpt_logins"
	}
	return ""
}

// Apply implements Projection.
func (*Subjects) Apply(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
	var tenants, subjects, tables []string
	var positions []int64
	var erasedTenants, erased []string
	var erasedAt []int64
	for _, e := range events {
		// An erasure ends with compliance.subject_erased: the subject's key
		// is destroyed, so the index forgets what it held of the subject
		// before, as the erasure's purge did (an incremental run that was
		// behind the purge, and a rebuild, then agree).
		if e.Type == "compliance.subject_erased" {
			var d struct {
				Subject domain.Subject `json:"subject"`
			}
			if json.Unmarshal(e.Data, &d) == nil && d.Subject != "" {
				erasedTenants = append(erasedTenants, e.Tenant)
				erased = append(erased, string(d.Subject))
				erasedAt = append(erasedAt, e.Position)
			}
		}
		seen := map[domain.Subject]bool{}
		subject := func(s domain.Subject) {
			if s == "" || seen[s] {
				return
			}
			seen[s] = true
			tenants = append(tenants, e.Tenant)
			subjects = append(subjects, string(s))
			positions = append(positions, e.Position)
			tables = append(tables, subjectTable(e.Type))
		}
		for _, f := range e.Sealed {
			subject(f.Subject)
		}
		// A technician's own stream concerns them even without personal
		// fields (logins, lockouts): an export lists it all.
		if strings.HasPrefix(e.Stream, domain.TechnicianStreamPrefix) {
			if s, ok := domain.StreamSubject(e.Stream); ok {
				subject(s)
			}
		}
	}
	if len(subjects) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO rpt_subject_index (tenant, subject, position, tbl)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) ON CONFLICT DO NOTHING`,
			cleanAll(tenants), cleanAll(subjects), positions, tables); err != nil {
			return err
		}
	}
	if len(erased) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM rpt_subject_index x USING unnest($1::text[], $2::text[], $3::bigint[]) AS u(tenant, subject, position)
			WHERE x.tenant = u.tenant AND x.subject = u.subject AND x.position <= u.position`,
			cleanAll(erasedTenants), cleanAll(erased), erasedAt); err != nil {
			return err
		}
	}
	return nil
}

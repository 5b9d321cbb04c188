package compliance

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
)

// SubjectExportFormat names the GDPR export's JSON shape.
const SubjectExportFormat = "vigil-gdpr-export/v1"

// SubjectExport is everything Vigil holds about one data subject.
type SubjectExport struct {
	Format      string         `json:"format"`
	Tenant      string         `json:"tenant"`
	Subject     domain.Subject `json:"subject"`
	GeneratedAt time.Time      `json:"generated_at"`
	// EventID is the id of the compliance.subject_exported event recording
	// this export.
	EventID string `json:"event_id"`
	// SHA256 is the digest of the JSON encoding of Content, as recorded in
	// that event.
	SHA256  string        `json:"sha256"`
	Content ExportContent `json:"content"`
}

// ExportContent is the body of a subject export.
type ExportContent struct {
	// Events are the subject's events, opened: those of its stream and
	// every other event the subject index lists for it, in log order.
	Events []ExportedEvent `json:"events"`
	// Tables are the reporting rows about the subject by table, sealed
	// references opened (a column "x_ref" appears as "x").
	Tables map[string][]map[string]any `json:"tables"`
	// Recordings lists the session's recordings with download links.
	Recordings []ExportedRecording `json:"recordings"`
	// WebhookDeliveries lists stored webhook deliveries that carried the
	// subject's data.
	WebhookDeliveries []json.RawMessage `json:"webhook_deliveries"`
	// Notes explain what the export cannot contain.
	Notes []string `json:"notes,omitempty"`
}

// ExportedEvent is one event with its personal fields opened; an erased
// field reads "[erased]".
type ExportedEvent struct {
	ID         string                     `json:"id"`
	Position   int64                      `json:"position"`
	Seq        int64                      `json:"seq"`
	LeafHash   string                     `json:"leaf_hash"`
	Stream     string                     `json:"stream"`
	Version    int64                      `json:"version"`
	Type       string                     `json:"type"`
	Schema     int                        `json:"schema"`
	OccurredAt time.Time                  `json:"occurred_at"`
	RecordedAt time.Time                  `json:"recorded_at"`
	Actor      domain.Actor               `json:"actor"`
	Data       json.RawMessage            `json:"data"`
	Personal   map[string]json.RawMessage `json:"personal,omitempty"`
}

// ExportedRecording is one recording of a session.
type ExportedRecording struct {
	GUID        string     `json:"session"`
	RecordingID string     `json:"recording_id"`
	State       string     `json:"state"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	StoppedAt   *time.Time `json:"stopped_at,omitempty"`
	Size        *int64     `json:"size,omitempty"`
	SHA256      string     `json:"sha256,omitempty"`
	// Download is the API path of the recording's content.
	Download string `json:"download"`
}

// ExportSubject returns everything p's tenant holds about subject
// ("technician:<id>" or "session:<guid>") and appends
// compliance.subject_exported to the subject's stream (admin only).
// Errors: forbidden, invalid for a malformed subject, not_found
// for a subject without a stream.
func (g *GDPR) ExportSubject(ctx context.Context, p service.Principal, subject string) (SubjectExport, error) {
	if err := requireGDPRAdmin(p); err != nil {
		return SubjectExport{}, err
	}
	s, err := domain.ParseSubject(subject)
	if err != nil {
		return SubjectExport{}, err
	}
	tenant, stream := p.Tenant, subjectStream(s)
	l := g.cfg.Ledger
	evs, err := l.ReadStream(ctx, tenant, stream, 0)
	if err != nil {
		return SubjectExport{}, err
	}
	if len(evs) == 0 {
		return SubjectExport{}, notFoundf("%s does not exist in this tenant", s)
	}
	content := ExportContent{Events: []ExportedEvent{}, Tables: map[string][]map[string]any{},
		Recordings: []ExportedRecording{}, WebhookDeliveries: []json.RawMessage{}}
	seen := map[int64]bool{}
	for i := range evs {
		seen[evs[i].Position] = true
		content.Events = append(content.Events, exportEvent(&evs[i]))
	}
	positions, err := subjectPositions(ctx, g.cfg.Pool, tenant, domain.KeySubjects(s))
	if err != nil {
		return SubjectExport{}, err
	}
	for _, pos := range positions {
		if seen[pos] {
			continue
		}
		got, err := l.Store().ReadAll(ctx, pos-1, 1)
		if err != nil {
			return SubjectExport{}, fmt.Errorf("read position %d: %w", pos, err)
		}
		if len(got) == 0 || got[0].Position != pos || got[0].Tenant != tenant {
			continue
		}
		if err := l.Open(ctx, &got[0]); err != nil {
			return SubjectExport{}, err
		}
		content.Events = append(content.Events, exportEvent(&got[0]))
	}
	if err := g.exportTables(ctx, tenant, s, positions, &content); err != nil {
		return SubjectExport{}, err
	}
	if g.cfg.Webhooks == nil {
		content.Notes = append(content.Notes, "webhook deliveries: none are stored by this deployment (webhooks are not implemented yet)")
	}
	if !isTechnician(s) {
		content.Notes = append(content.Notes, "recordings: download each with GET on its download path, with an admin key")
	}
	body := mustJSON(content)
	now := g.now()
	out := SubjectExport{Format: SubjectExportFormat, Tenant: tenant, Subject: s, GeneratedAt: now, SHA256: hexSHA256(body), Content: content}
	appended, err := g.appendCompliance(ctx, tenant, stream, p.Actor(), now, nil,
		domain.SubjectExported{Subject: s, EventCount: int64(len(content.Events)), Format: "json", SHA256: out.SHA256})
	if err != nil {
		return SubjectExport{}, err
	}
	out.EventID = appended[0].ID.String()
	return out, nil
}

func exportEvent(e *domain.Event) ExportedEvent {
	x := ExportedEvent{
		ID: e.ID.String(), Position: e.Position, Seq: e.Seq, LeafHash: hex.EncodeToString(e.LeafHash[:]),
		Stream: e.Stream, Version: e.Version, Type: e.Type, Schema: e.Schema,
		OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt, Actor: e.Actor, Data: e.Data,
	}
	if len(e.Personal) > 0 {
		x.Personal = map[string]json.RawMessage{}
		for _, f := range e.Personal {
			if f.Erased {
				x.Personal[f.Name] = json.RawMessage(`"` + ledger.ErasedText + `"`)
				continue
			}
			x.Personal[f.Name] = f.Value
		}
	}
	return x
}

// exportTables adds the reporting rows about s.
func (g *GDPR) exportTables(ctx context.Context, tenant string, s domain.Subject, positions []int64, c *ExportContent) error {
	id := subjectID(s)
	type query struct{ table, sql string }
	var qs []query
	if isTechnician(s) {
		qs = []query{
			{"rpt_logins", `SELECT to_jsonb(t) FROM rpt_logins t WHERE tenant = $1 AND (technician_id = $2 OR position = ANY($3)) ORDER BY position`},
			{"rpt_technician_daily", `SELECT to_jsonb(t) FROM rpt_technician_daily t WHERE tenant = $1 AND technician_id = $2 AND $3::bigint[] IS NOT NULL ORDER BY day`},
			// Sessions the technician held or owned: the session's own
			// (customer) data belongs to another subject and is left out.
			{"rpt_sessions", `SELECT jsonb_build_object('guid', guid, 'status', status, 'created_at', created_at, 'closed_at', closed_at,
				'technician_id', technician_id, 'owner_id', owner_id) FROM rpt_sessions t
				WHERE tenant = $1 AND (technician_id = $2 OR owner_id = $2) AND $3::bigint[] IS NOT NULL ORDER BY created_at, guid`},
			{"rpt_chat", `SELECT to_jsonb(t) FROM rpt_chat t WHERE tenant = $1 AND position = ANY($3) AND $2::text IS NOT NULL ORDER BY position`},
			{"rpt_notes", `SELECT to_jsonb(t) FROM rpt_notes t WHERE tenant = $1 AND position = ANY($3) AND $2::text IS NOT NULL ORDER BY position`},
		}
	} else {
		for _, t := range []string{"rpt_chat", "rpt_notes", "rpt_file_transfers", "rpt_consents", "rpt_actions"} {
			qs = append(qs, query{t, `SELECT to_jsonb(t) FROM ` + t + ` t WHERE tenant = $1 AND (guid = $2 OR position = ANY($3)) ORDER BY position`})
		}
		qs = append(qs, query{"rpt_sessions", `SELECT to_jsonb(t) FROM rpt_sessions t WHERE tenant = $1 AND guid = $2 AND $3::bigint[] IS NOT NULL`})
	}
	for _, q := range qs {
		rows, err := g.cfg.Pool.Query(ctx, q.sql, tenant, id, positions)
		if err != nil {
			return fmt.Errorf("export %s: %w", q.table, err)
		}
		list, err := pgx.CollectRows(rows, pgx.RowTo[map[string]any])
		if err != nil {
			return fmt.Errorf("export %s: %w", q.table, err)
		}
		for _, row := range list {
			if err := g.openRow(ctx, tenant, row); err != nil {
				return fmt.Errorf("export %s: %w", q.table, err)
			}
		}
		if len(list) > 0 {
			c.Tables[q.table] = list
		}
	}
	if isTechnician(s) {
		return nil
	}
	rows, err := g.cfg.Pool.Query(ctx, `SELECT guid, recording_id, state, started_at, stopped_at, size, sha256
		FROM rpt_recordings WHERE tenant = $1 AND guid = $2 ORDER BY started_at, recording_id`, tenant, id)
	if err != nil {
		return fmt.Errorf("export recordings: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ExportedRecording, error) {
		var x ExportedRecording
		err := r.Scan(&x.GUID, &x.RecordingID, &x.State, &x.StartedAt, &x.StoppedAt, &x.Size, &x.SHA256)
		x.Download = "/v1/recordings/" + x.RecordingID + "?session=" + x.GUID
		return x, err
	})
	if err != nil {
		return fmt.Errorf("export recordings: %w", err)
	}
	c.Recordings = append(c.Recordings, recs...)
	return nil
}

// openRow replaces each sealed reference column "x_ref" (bytea, which
// to_jsonb renders as "\\x<hex>") by "x" holding the opened value, and drops
// blind-index columns, which mean nothing outside the deployment.
func (g *GDPR) openRow(ctx context.Context, tenant string, row map[string]any) error {
	for k, v := range row {
		switch {
		case strings.HasSuffix(k, "_idx"):
			delete(row, k)
		case strings.HasSuffix(k, "_ref"):
			delete(row, k)
			str, ok := v.(string)
			if !ok {
				continue // NULL
			}
			raw, err := hex.DecodeString(strings.TrimPrefix(str, `\x`))
			if err != nil {
				return fmt.Errorf("column %s: not bytea", k)
			}
			val, erased, err := g.cfg.Ledger.Sealer().OpenRef(ctx, tenant, raw)
			if err != nil {
				return fmt.Errorf("column %s: %w", k, err)
			}
			if erased {
				val = json.RawMessage(`"` + ledger.ErasedText + `"`)
			}
			row[strings.TrimSuffix(k, "_ref")] = val
		}
	}
	return nil
}

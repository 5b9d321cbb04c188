package gql

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// csvPage is how many rows a CSV report reads at a time: the report is
// streamed page by page, never held whole.
const csvPage = 500

// CSV returns the handler of GET /v1/reports/{name}.csv, name being
// sessions, chatlog, logins or file-transfers, with optional from and to
// (RFC 3339; default the last 30 days). The rows are those the same caller
// sees through GraphQL, personal fields opened ([erased] for an erased
// subject); integration keys may not download the chat log. Cells that a
// spreadsheet would run as a formula are prefixed with a quote.
func (s *Server) CSV() http.Handler { return http.HandlerFunc(s.serveCSV) }

// csvError answers like the rest of the HTTP API: {"error": {code, message}}.
func csvError(w http.ResponseWriter, c *codedError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	status := statusOf(c.code)
	if c.code == domain.CodeNotFound {
		status = http.StatusNotFound
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "2")
	}
	w.WriteHeader(status)
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = c.code, c.msg
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) serveCSV(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = w.Write([]byte(`{"error":{"code":"invalid","message":"use GET"}}` + "\n"))
		return
	}
	name, ok := strings.CutSuffix(path.Base(r.URL.Path), ".csv")
	var write func(context.Context, service.Principal, *csvOut, time.Time, time.Time) error
	switch name {
	case "sessions":
		write = s.csvSessions
	case "chatlog":
		write = s.csvChat
	case "logins":
		write = s.csvLogins
	case "file-transfers":
		write = s.csvFiles
	default:
		ok = false
	}
	if !ok {
		csvError(w, coded(domain.CodeNotFound, "no such report: %s (sessions, chatlog, logins, file-transfers)", path.Base(r.URL.Path)))
		return
	}
	p, cerr := s.authenticate(w, r)
	if cerr != nil {
		csvError(w, cerr)
		return
	}
	if name == "chatlog" && !mayReadChat(p) {
		csvError(w, errNoChat.(*codedError))
		return
	}
	from, to, err := s.csvRange(r)
	if err != nil {
		csvError(w, err.(*codedError))
		return
	}
	out := &csvOut{w: w, name: name, now: s.cfg.Now()}
	ctx := r.Context()
	if err := write(ctx, p, out, from, to); err != nil {
		c, internal := toCoded(ctx, err)
		if internal {
			s.log.Error("csv report failed", "report", name, "err", err)
		}
		if !out.started {
			csvError(w, c)
			return
		}
		// The status is sent: cut the body short, so that the client sees
		// a broken transfer rather than a complete-looking file.
		panic(http.ErrAbortHandler)
	}
	out.start()
	out.cw.Flush()
}

func (s *Server) csvRange(r *http.Request) (time.Time, time.Time, error) {
	q := r.URL.Query()
	parse := func(key string) (time.Time, error) {
		v := q.Get(key)
		if v == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return t, errInvalid("%s must be an RFC 3339 time such as 2025-03-14T09:26:53Z, not %q", key, v)
		}
		return t, nil
	}
	from, err := parse("from")
	if err != nil {
		return from, from, err
	}
	to, err := parse("to")
	if err != nil {
		return from, to, err
	}
	if to.IsZero() {
		to = s.cfg.Now()
	}
	if from.IsZero() {
		from = to.Add(-DefaultCSVRange)
	}
	if to.Before(from) {
		return from, to, errInvalid("to is before from")
	}
	return from, to, nil
}

// csvOut writes a CSV answer, sending the status and header row only with
// the first page, so that a failure before it is still a proper error.
type csvOut struct {
	w       http.ResponseWriter
	cw      *csv.Writer
	name    string
	header  []string
	now     time.Time
	started bool
}

func (o *csvOut) start() {
	if o.started {
		return
	}
	o.started = true
	h := o.w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", `attachment; filename="`+o.name+"-"+o.now.UTC().Format("20060102T150405Z")+`.csv"`)
	o.w.WriteHeader(http.StatusOK)
	o.cw = csv.NewWriter(o.w)
	_ = o.cw.Write(o.header)
}

// page writes rows and flushes them to the client.
func (o *csvOut) page(rows [][]string) error {
	o.start()
	for _, r := range rows {
		if err := o.cw.Write(r); err != nil {
			return err
		}
	}
	o.cw.Flush()
	if f, ok := o.w.(http.Flusher); ok {
		f.Flush()
	}
	return o.cw.Error()
}

// cell neutralises text a spreadsheet would evaluate (CSV injection):
// customers type their names and file names.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func csvTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func csvFloat(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f, 'f', -1, 64)
}

// openCell opens a sealed reference for a cell.
func (s *Server) openCell(ctx context.Context, tenant string, ref []byte) (string, error) {
	if len(ref) == 0 {
		return "", nil
	}
	v, err := s.opener.OpenRefString(ctx, tenant, ref)
	return cell(v), err
}

func (s *Server) csvSessions(ctx context.Context, p service.Principal, out *csvOut, from, to time.Time) error {
	out.header = []string{"id", "status", "queue", "channel", "group_id", "technician_id", "owner_id", "platform", "tracking_id",
		"created_at", "connected_at", "picked_up_at", "closed_at", "waiting_s", "pickup_s", "active_s", "total_s",
		"transfers", "tools", "closed_by", "close_reason", "recorded", "customer_name", "customer_email", "custom_fields",
		"gateway_id", "transport", "time_to_p2p_ms", "p2p_failure", "lens_minutes"}
	f := SessionFilter{From: from, To: to, VisibleTo: visibleTo(p)}
	var after *SessionCursor
	for {
		rows, err := s.reports.Sessions(ctx, p.Tenant, f, SessionPage{After: after, Limit: csvPage})
		if err != nil {
			return err
		}
		lines := make([][]string, 0, len(rows))
		for i := range rows {
			x := &rows[i]
			name, err := s.openCell(ctx, p.Tenant, x.CustomerNameRef)
			if err != nil {
				return err
			}
			email, err := s.openCell(ctx, p.Tenant, x.CustomerEmailRef)
			if err != nil {
				return err
			}
			custom := ""
			if len(x.CustomFieldsRef) > 0 {
				v, err := s.openJSONFor(ctx, p.Tenant, x.CustomFieldsRef)
				if err != nil {
					return err
				}
				custom = cell(v)
			}
			lines = append(lines, []string{x.ID, x.Status, x.Queue, x.Channel, x.GroupID, x.TechnicianID, x.OwnerID,
				cell(x.Platform), cell(x.TrackingID), csvTime(&x.CreatedAt), csvTime(x.ConnectedAt), csvTime(x.PickedUpAt),
				csvTime(x.ClosedAt), csvFloat(x.WaitingSeconds), csvFloat(x.PickupSeconds), csvFloat(x.ActiveSeconds),
				csvFloat(x.TotalSeconds), strconv.Itoa(x.Transfers), strings.Join(x.Tools, ";"), x.ClosedBy,
				cell(x.CloseReason), strconv.FormatBool(x.Recorded), name, email, custom,
				cell(x.GatewayID), x.Transport, p2pMS(x.TimeToP2PMS), cell(x.P2PFailure), strconv.FormatFloat(float64(x.LensMS)/60000, 'f', -1, 64)})
		}
		if err := out.page(lines); err != nil {
			return err
		}
		if len(rows) < csvPage {
			return nil
		}
		last := rows[len(rows)-1]
		after = &SessionCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
}

// logPages reads a log-like report page by page.
func logPages[T any](ctx context.Context, out *csvOut, read func(LogPage) ([]T, error), key func(T) LogCursor, line func(T) ([]string, error)) error {
	var after *LogCursor
	for {
		rows, err := read(LogPage{After: after, Limit: csvPage})
		if err != nil {
			return err
		}
		lines := make([][]string, 0, len(rows))
		for _, r := range rows {
			l, err := line(r)
			if err != nil {
				return err
			}
			lines = append(lines, l)
		}
		if err := out.page(lines); err != nil {
			return err
		}
		if len(rows) < csvPage {
			return nil
		}
		k := key(rows[len(rows)-1])
		after = &k
	}
}

func (s *Server) csvChat(ctx context.Context, p service.Principal, out *csvOut, from, to time.Time) error {
	out.header = []string{"position", "session_id", "event_id", "occurred_at", "sender", "sender_id", "text"}
	f := LogFilter{From: from, To: to, VisibleTo: visibleTo(p)}
	return logPages(ctx, out, func(pg LogPage) ([]ChatMessage, error) { return s.reports.ChatLog(ctx, p.Tenant, f, pg) },
		func(c ChatMessage) LogCursor { return LogCursor{c.OccurredAt, c.Position} },
		func(c ChatMessage) ([]string, error) {
			text, err := s.openCell(ctx, p.Tenant, c.TextRef)
			return []string{strconv.FormatInt(c.Position, 10), c.SessionID, c.EventID, csvTime(&c.OccurredAt), c.Sender, c.SenderID, text}, err
		})
}

func (s *Server) csvLogins(ctx context.Context, p service.Principal, out *csvOut, from, to time.Time) error {
	out.header = []string{"position", "event_id", "occurred_at", "technician_id", "outcome", "reason", "ip", "method"}
	f := LoginFilter{From: from, To: to, TechnicianID: visibleTo(p)}
	return logPages(ctx, out, func(pg LogPage) ([]Login, error) { return s.reports.Logins(ctx, p.Tenant, f, pg) },
		func(l Login) LogCursor { return LogCursor{l.OccurredAt, l.Position} },
		func(l Login) ([]string, error) {
			ip, err := s.openCell(ctx, p.Tenant, l.IPRef)
			return []string{strconv.FormatInt(l.Position, 10), l.EventID, csvTime(&l.OccurredAt), l.TechnicianID, l.Outcome, cell(l.Reason), ip, l.Method}, err
		})
}

func (s *Server) csvFiles(ctx context.Context, p service.Principal, out *csvOut, from, to time.Time) error {
	out.header = []string{"position", "session_id", "event_id", "occurred_at", "direction", "technician_id", "name", "size", "md5", "sha256", "consent_event_id"}
	f := LogFilter{From: from, To: to, VisibleTo: visibleTo(p)}
	return logPages(ctx, out, func(pg LogPage) ([]FileTransfer, error) { return s.reports.FileTransfers(ctx, p.Tenant, f, pg) },
		func(x FileTransfer) LogCursor { return LogCursor{x.OccurredAt, x.Position} },
		func(x FileTransfer) ([]string, error) {
			name, err := s.openCell(ctx, p.Tenant, x.NameRef)
			return []string{strconv.FormatInt(x.Position, 10), x.SessionID, x.EventID, csvTime(&x.OccurredAt), x.Direction,
				x.TechnicianID, name, strconv.FormatInt(x.Size, 10), x.MD5, x.SHA256, x.ConsentEventID}, err
		})
}

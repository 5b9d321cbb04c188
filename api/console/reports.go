package console

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	gql "github.com/vigilhq/vigil/api/graphql"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// pageSize is the rows of a list page.
const pageSize = 50

// csvMaxRows bounds a CSV download.
const csvMaxRows = 100000

func (c *Console) home(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	http.Redirect(w, r, Prefix+"sessions", http.StatusSeeOther)
	return nil
}

// sessionQuery is the sessions list's filter as the form shows it.
type sessionQuery struct {
	From, To, Technician, Group, Status, Email string
}

func (q sessionQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"from": q.From, "to": q.To, "technician": q.Technician, "group": q.Group, "status": q.Status, "email": q.Email} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// parseDay reads a yyyy-mm-dd date of a filter form; end moves it to the
// next day, so that "to" includes the day named.
func parseDay(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, domain.Errorf(domain.CodeInvalid, "date %q: want yyyy-mm-dd", s)
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

var sessionStatuses = []string{"waiting", "active", "closed"}

func (c *Console) sessionFilter(ctx context.Context, r *http.Request, p service.Principal) (sessionQuery, gql.SessionFilter, error) {
	q := r.URL.Query()
	sq := sessionQuery{From: q.Get("from"), To: q.Get("to"), Technician: strings.TrimSpace(q.Get("technician")),
		Group: strings.TrimSpace(q.Get("group")), Status: q.Get("status"), Email: strings.TrimSpace(q.Get("email"))}
	var f gql.SessionFilter
	var err error
	if f.From, err = parseDay(sq.From, false); err != nil {
		return sq, f, err
	}
	if f.To, err = parseDay(sq.To, true); err != nil {
		return sq, f, err
	}
	f.TechnicianID, f.GroupID, f.Status = sq.Technician, sq.Group, sq.Status
	if sq.Status != "" && !contains(sessionStatuses, sq.Status) {
		return sq, f, domain.Errorf(domain.CodeInvalid, "status %q: want one of %s", sq.Status, strings.Join(sessionStatuses, ", "))
	}
	if sq.Email != "" {
		idx, err := c.opts.Index.BlindIndex(ctx, gql.CustomerEmailPurpose, strings.ToLower(sq.Email))
		if err != nil {
			return sq, f, err
		}
		f.CustomerEmailIndex = idx
	}
	if p.Role == service.RoleTechnician {
		f.VisibleTo = p.TechnicianID
	}
	return sq, f, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func encodeSessionCursor(s gql.Session) string {
	return base64.RawURLEncoding.EncodeToString([]byte(s.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + s.ID))
}

func decodeSessionCursor(v string) (*gql.SessionCursor, error) {
	if v == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, domain.Errorf(domain.CodeInvalid, "bad cursor")
	}
	at, id, ok := strings.Cut(string(raw), "|")
	t, err := time.Parse(time.RFC3339Nano, at)
	if !ok || err != nil {
		return nil, domain.Errorf(domain.CodeInvalid, "bad cursor")
	}
	return &gql.SessionCursor{CreatedAt: t, ID: id}, nil
}

// sessionRow is a session of the list with its customer opened.
type sessionRow struct {
	gql.Session
	Customer string
}

type sessionsPage struct {
	Query    sessionQuery
	Statuses []string
	Rows     []sessionRow
	Total    int
	Next     string
	CSV      string
	First    string
}

func (c *Console) sessions(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	ctx := r.Context()
	sq, f, err := c.sessionFilter(ctx, r, rc.p)
	if err != nil {
		return err
	}
	after, err := decodeSessionCursor(r.URL.Query().Get("after"))
	if err != nil {
		return err
	}
	rows, err := c.opts.Reports.Sessions(ctx, rc.p.Tenant, f, gql.SessionPage{After: after, Limit: pageSize + 1})
	if err != nil {
		return err
	}
	total, err := c.opts.Reports.CountSessions(ctx, rc.p.Tenant, f)
	if err != nil {
		return err
	}
	d := sessionsPage{Query: sq, Statuses: sessionStatuses, Total: total}
	v := sq.values()
	d.CSV = Prefix + "sessions.csv?" + v.Encode()
	if after != nil {
		d.First = Prefix + "sessions?" + v.Encode()
	}
	if len(rows) > pageSize {
		rows = rows[:pageSize]
		v.Set("after", encodeSessionCursor(rows[len(rows)-1]))
		d.Next = Prefix + "sessions?" + v.Encode()
	}
	for _, s := range rows {
		name, err := c.opts.Opener.OpenRefString(ctx, rc.p.Tenant, s.CustomerNameRef)
		if err != nil {
			return err
		}
		d.Rows = append(d.Rows, sessionRow{Session: s, Customer: name})
	}
	c.render(w, r, rc, http.StatusOK, "sessions", "Sessions", d)
	return nil
}

func (c *Console) sessionsCSV(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	ctx := r.Context()
	_, f, err := c.sessionFilter(ctx, r, rc.p)
	if err != nil {
		return err
	}
	out := csvWriter(w, "sessions.csv")
	_ = out.Write([]string{"id", "created_at", "status", "queue", "channel", "group_id", "technician_id", "customer",
		"waiting_seconds", "pickup_seconds", "total_seconds", "transfers", "recorded", "closed_by"})
	var after *gql.SessionCursor
	for n := 0; n < csvMaxRows; {
		rows, err := c.opts.Reports.Sessions(ctx, rc.p.Tenant, f, gql.SessionPage{After: after, Limit: 500})
		if err != nil {
			return err
		}
		for _, s := range rows {
			name, err := c.opts.Opener.OpenRefString(ctx, rc.p.Tenant, s.CustomerNameRef)
			if err != nil {
				return err
			}
			_ = out.Write([]string{s.ID, s.CreatedAt.UTC().Format(time.RFC3339), s.Status, s.Queue, s.Channel, s.GroupID, s.TechnicianID,
				csvSafe(name), num(s.WaitingSeconds), num(s.PickupSeconds), num(s.TotalSeconds), strconv.Itoa(s.Transfers),
				strconv.FormatBool(s.Recorded), s.ClosedBy})
		}
		n += len(rows)
		if len(rows) < 500 {
			break
		}
		last := rows[len(rows)-1]
		after = &gql.SessionCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	out.Flush()
	return out.Error()
}

func csvWriter(w http.ResponseWriter, name string) *csv.Writer {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	return csv.NewWriter(w)
}

// csvSafe keeps a spreadsheet from reading a cell as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func num(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f, 'f', 3, 64)
}

// timelineRow is an event of the session page's timeline.
type timelineRow struct {
	service.TimelineEvent
	Fields   []kv
	Personal []kv
}

type kv struct{ Key, Value string }

// fields flattens a JSON object into sorted key/value pairs.
func fields(raw json.RawMessage) []kv {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	out := make([]kv, 0, len(m))
	for k, v := range m {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(v)
		}
		out = append(out, kv{k, s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

type chatRow struct {
	gql.ChatMessage
	Text string
}

type fileRow struct {
	gql.FileTransfer
	Name string
}

// consentRow is a consent with the actions that relied on it.
type consentRow struct {
	gql.Consent
	Actions []gql.Action
}

type sessionPage struct {
	Session    sessionRow
	Email      string
	Timeline   []timelineRow
	Chat       []chatRow
	Consents   []consentRow
	Actions    []gql.Action
	Files      []fileRow
	Recordings []gql.Recording
}

func (c *Console) session(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	ctx := r.Context()
	id := r.PathValue("id")
	// The service decides who may read the session (a technician only the
	// ones it held) and opens personal values for the roles allowed.
	tl, err := c.opts.Service.SessionTimeline(ctx, rc.p, id)
	if err != nil {
		return err
	}
	t := rc.p.Tenant
	ss, err := c.opts.Reports.SessionsByIDs(ctx, t, []string{id})
	if err != nil {
		return err
	}
	d := sessionPage{}
	if len(ss) > 0 {
		d.Session.Session = ss[0]
		if d.Session.Customer, err = c.opts.Opener.OpenRefString(ctx, t, ss[0].CustomerNameRef); err != nil {
			return err
		}
		if d.Email, err = c.opts.Opener.OpenRefString(ctx, t, ss[0].CustomerEmailRef); err != nil {
			return err
		}
	} else {
		d.Session.ID = id
	}
	for _, e := range tl {
		row := timelineRow{TimelineEvent: e, Fields: fields(e.Data)}
		for k, v := range e.Personal {
			var s string
			if json.Unmarshal(v, &s) != nil {
				s = string(v)
			}
			row.Personal = append(row.Personal, kv{k, s})
		}
		sort.Slice(row.Personal, func(i, j int) bool { return row.Personal[i].Key < row.Personal[j].Key })
		d.Timeline = append(d.Timeline, row)
	}
	ids := []string{id}
	page := gql.TimelinePage{Limit: 1000}
	chat, err := c.opts.Reports.ChatBySessions(ctx, t, ids, page)
	if err != nil {
		return err
	}
	for _, m := range chat {
		text, err := c.opts.Opener.OpenRefString(ctx, t, m.TextRef)
		if err != nil {
			return err
		}
		d.Chat = append(d.Chat, chatRow{ChatMessage: m, Text: text})
	}
	consents, err := c.opts.Reports.ConsentsBySessions(ctx, t, ids, page)
	if err != nil {
		return err
	}
	if d.Actions, err = c.opts.Reports.ActionsBySessions(ctx, t, ids, page); err != nil {
		return err
	}
	for _, k := range consents {
		row := consentRow{Consent: k}
		for _, a := range d.Actions {
			if a.ConsentEventID != "" && a.ConsentEventID == k.EventID {
				row.Actions = append(row.Actions, a)
			}
		}
		d.Consents = append(d.Consents, row)
	}
	files, err := c.opts.Reports.FileTransfersBySessions(ctx, t, ids, page)
	if err != nil {
		return err
	}
	for _, f := range files {
		name, err := c.opts.Opener.OpenRefString(ctx, t, f.NameRef)
		if err != nil {
			return err
		}
		d.Files = append(d.Files, fileRow{FileTransfer: f, Name: name})
	}
	if d.Recordings, err = c.opts.Reports.RecordingsBySessions(ctx, t, ids); err != nil {
		return err
	}
	c.render(w, r, rc, http.StatusOK, "session", fmt.Sprintf("Session %s", short(id)), d)
	return nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// recording plays a recording in the page: the same service call as GET
// /v1/recordings/{id}, with its Range handling, so that every view is
// audited (session.recording_viewed) whoever plays it.
func (c *Console) recording(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if c.opts.Recordings == nil {
		return domain.Errorf(domain.CodeNotFound, "recordings are not configured")
	}
	first, last, err := httpapi.ParseRange(r.Header.Get("Range"))
	if err != nil {
		return err
	}
	pb, err := c.opts.Recordings.Open(r.Context(), rc.p, r.PathValue("id"), first, last)
	if err != nil {
		if errors.Is(err, service.ErrRangeNotSatisfiable) {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return nil
		}
		return err
	}
	defer pb.Body.Close()
	h := w.Header()
	h.Set("Content-Type", pb.ContentType)
	h.Set("Accept-Ranges", "bytes")
	n := pb.Last - pb.First + 1
	if pb.Size == 0 {
		n = 0
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	status := http.StatusOK
	if r.Header.Get("Range") != "" {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", pb.First, pb.Last, pb.Size))
	}
	w.WriteHeader(status)
	if _, err := io.Copy(w, pb.Body); err != nil {
		c.log.Error("console: recording playback stopped", "recording", pb.RecordingID, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

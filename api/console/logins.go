package console

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	gql "github.com/vigilhq/vigil/api/graphql"
	"github.com/vigilhq/vigil/domain"
)

var loginOutcomes = []string{"succeeded", "failed", "locked_out", "unlocked", "logged_out"}

type loginsQuery struct{ From, To, Technician, Outcome string }

func (q loginsQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"from": q.From, "to": q.To, "technician": q.Technician, "outcome": q.Outcome} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

func loginFilter(r *http.Request) (loginsQuery, gql.LoginFilter, error) {
	q := r.URL.Query()
	lq := loginsQuery{From: q.Get("from"), To: q.Get("to"), Technician: strings.TrimSpace(q.Get("technician")), Outcome: q.Get("outcome")}
	f := gql.LoginFilter{TechnicianID: lq.Technician, Outcome: lq.Outcome}
	var err error
	if f.From, err = parseDay(lq.From, false); err != nil {
		return lq, f, err
	}
	if f.To, err = parseDay(lq.To, true); err != nil {
		return lq, f, err
	}
	if lq.Outcome != "" && !contains(loginOutcomes, lq.Outcome) {
		return lq, f, domain.Errorf(domain.CodeInvalid, "outcome %q: want one of %s", lq.Outcome, strings.Join(loginOutcomes, ", "))
	}
	return lq, f, nil
}

func encodeLogCursor(at time.Time, pos int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + strconv.FormatInt(pos, 10)))
}

func decodeLogCursor(v string) (*gql.LogCursor, error) {
	if v == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, domain.Errorf(domain.CodeInvalid, "bad cursor")
	}
	at, pos, ok := strings.Cut(string(raw), "|")
	t, err1 := time.Parse(time.RFC3339Nano, at)
	n, err2 := strconv.ParseInt(pos, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return nil, domain.Errorf(domain.CodeInvalid, "bad cursor")
	}
	return &gql.LogCursor{OccurredAt: t, Position: n}, nil
}

type loginRow struct {
	gql.Login
	IP string
}

type loginsPage struct {
	Query       loginsQuery
	Outcomes    []string
	Rows        []loginRow
	Total       int
	Next, First string
	CSV         string
}

func (c *Console) loginRows(ctx context.Context, tenant string, rows []gql.Login) ([]loginRow, error) {
	out := make([]loginRow, 0, len(rows))
	for _, l := range rows {
		ip, err := c.opts.Opener.OpenRefString(ctx, tenant, l.IPRef)
		if err != nil {
			return nil, err
		}
		out = append(out, loginRow{Login: l, IP: ip})
	}
	return out, nil
}

// logins lists technician logins, failures and lockouts (admins and
// auditors), newest last as the report orders them.
func (c *Console) logins(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	ctx := r.Context()
	lq, f, err := loginFilter(r)
	if err != nil {
		return err
	}
	after, err := decodeLogCursor(r.URL.Query().Get("after"))
	if err != nil {
		return err
	}
	rows, err := c.opts.Reports.Logins(ctx, rc.p.Tenant, f, gql.LogPage{After: after, Limit: pageSize + 1})
	if err != nil {
		return err
	}
	total, err := c.opts.Reports.CountLogins(ctx, rc.p.Tenant, f)
	if err != nil {
		return err
	}
	d := loginsPage{Query: lq, Outcomes: loginOutcomes, Total: total}
	v := lq.values()
	d.CSV = Prefix + "logins.csv?" + v.Encode()
	if after != nil {
		d.First = Prefix + "logins?" + v.Encode()
	}
	if len(rows) > pageSize {
		rows = rows[:pageSize]
		last := rows[len(rows)-1]
		v.Set("after", encodeLogCursor(last.OccurredAt, last.Position))
		d.Next = Prefix + "logins?" + v.Encode()
	}
	if d.Rows, err = c.loginRows(ctx, rc.p.Tenant, rows); err != nil {
		return err
	}
	c.render(w, r, rc, http.StatusOK, "logins", "Logins and lockouts", d)
	return nil
}

func (c *Console) loginsCSV(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	ctx := r.Context()
	_, f, err := loginFilter(r)
	if err != nil {
		return err
	}
	out := csvWriter(w, "logins.csv")
	_ = out.Write([]string{"occurred_at", "technician_id", "outcome", "reason", "ip", "event_id"})
	var after *gql.LogCursor
	for n := 0; n < csvMaxRows; {
		rows, err := c.opts.Reports.Logins(ctx, rc.p.Tenant, f, gql.LogPage{After: after, Limit: 500})
		if err != nil {
			return err
		}
		opened, err := c.loginRows(ctx, rc.p.Tenant, rows)
		if err != nil {
			return err
		}
		for _, l := range opened {
			_ = out.Write([]string{l.OccurredAt.UTC().Format(time.RFC3339), l.TechnicianID, l.Outcome, csvSafe(l.Reason), l.IP, l.EventID})
		}
		n += len(rows)
		if len(rows) < 500 {
			break
		}
		last := rows[len(rows)-1]
		after = &gql.LogCursor{OccurredAt: last.OccurredAt, Position: last.Position}
	}
	out.Flush()
	return out.Error()
}

type performancePage struct {
	From, To, Technician string
	Rows                 []gql.TechnicianDay
	CSV                  string
	// Lens is each technician's Rescue Lens use in the period, when the
	// reports store keeps it.
	Lens    []gql.LensUsage
	HasLens bool
}

// performanceRange reads the period of the performance report: the last
// 30 days by default.
func (c *Console) performanceRange(r *http.Request) (performancePage, time.Time, time.Time, error) {
	q := r.URL.Query()
	d := performancePage{From: q.Get("from"), To: q.Get("to"), Technician: strings.TrimSpace(q.Get("technician"))}
	now := c.opts.Service.Now()
	to, from := now, now.AddDate(0, 0, -30)
	var err error
	if d.From != "" {
		if from, err = parseDay(d.From, false); err != nil {
			return d, from, to, err
		}
	}
	if d.To != "" {
		if to, err = parseDay(d.To, false); err != nil {
			return d, from, to, err
		}
	}
	if d.From == "" {
		d.From = from.Format(time.DateOnly)
	}
	if d.To == "" {
		d.To = to.Format(time.DateOnly)
	}
	return d, from, to, nil
}

func (c *Console) performance(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	d, from, to, err := c.performanceRange(r)
	if err != nil {
		return err
	}
	if d.Rows, err = c.opts.Reports.TechnicianPerformance(r.Context(), rc.p.Tenant, from, to, d.Technician); err != nil {
		return err
	}
	if lr, ok := c.opts.Reports.(gql.LensReports); ok {
		d.HasLens = true
		if d.Lens, err = lr.LensUsage(r.Context(), rc.p.Tenant, from, to, d.Technician); err != nil {
			return err
		}
	}
	v := url.Values{"from": {d.From}, "to": {d.To}}
	if d.Technician != "" {
		v.Set("technician", d.Technician)
	}
	d.CSV = Prefix + "performance.csv?" + v.Encode()
	c.render(w, r, rc, http.StatusOK, "performance", "Technician performance", d)
	return nil
}

func (c *Console) performanceCSV(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	d, from, to, err := c.performanceRange(r)
	if err != nil {
		return err
	}
	rows, err := c.opts.Reports.TechnicianPerformance(r.Context(), rc.p.Tenant, from, to, d.Technician)
	if err != nil {
		return err
	}
	out := csvWriter(w, "performance.csv")
	_ = out.Write([]string{"day", "technician_id", "sessions", "avg_pickup_seconds", "avg_duration_seconds", "transfers"})
	for _, x := range rows {
		_ = out.Write([]string{x.Day.Format(time.DateOnly), x.TechnicianID, strconv.Itoa(x.Sessions), num(x.AvgPickupSeconds), num(x.AvgDurationSeconds), strconv.Itoa(x.Transfers)})
	}
	out.Flush()
	return out.Error()
}

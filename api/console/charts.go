package console

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"

	gql "github.com/vigilhq/vigil/api/graphql"
)

// Charts are SVG drawn on the server: no script, nothing inline for the
// Content-Security-Policy to allow (presentation attributes are not
// styles), and each chart carries its numbers as a table for screen
// readers and for copying.

// chartDays is the period the charts cover, ending today.
const chartDays = 14

type series struct {
	Name   string
	Color  string
	Values []float64
}

type chart struct {
	ID, Title, Unit string
	Labels          []string
	Series          []series
	SVG             template.HTML
}

// draw renders c as grouped vertical bars.
func (c *chart) draw() {
	const w, h, left, bottom, top = 640.0, 240.0, 48.0, 36.0, 12.0
	maxV := 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			maxV = math.Max(maxV, v)
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	step := niceStep(maxV / 4)
	maxV = math.Ceil(maxV/step) * step
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" role="img" aria-labelledby="%s-title"><title id="%s-title">%s</title>`,
		w, h, c.ID, c.ID, html.EscapeString(c.Title))
	plotH := h - bottom - top
	for v := 0.0; v <= maxV+step/2; v += step {
		y := top + plotH - plotH*v/maxV
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="#d9dde3"/><text x="%g" y="%.1f" font-size="10" text-anchor="end" fill="#5b6470">%s</text>`,
			left, w-4, y, y, left-4, y+3, trimFloat(v))
	}
	n := len(c.Labels)
	if n > 0 {
		slot := (w - left - 8) / float64(n)
		bw := slot * 0.8 / float64(max(1, len(c.Series)))
		for i, label := range c.Labels {
			x0 := left + 4 + slot*float64(i) + slot*0.1
			for j, s := range c.Series {
				v := s.Values[i]
				bh := plotH * v / maxV
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`,
					x0+bw*float64(j), top+plotH-bh, bw, bh, s.Color, html.EscapeString(s.Name), html.EscapeString(label), trimFloat(v))
			}
			if n <= 16 || i%2 == 0 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%g" font-size="10" text-anchor="middle" fill="#5b6470">%s</text>`, x0+slot*0.4, h-bottom+14, html.EscapeString(label))
			}
		}
	}
	for j, s := range c.Series {
		x := left + 4 + float64(j)*150
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="10" height="10" fill="%s"/><text x="%g" y="%g" font-size="11" fill="#1b1f24">%s</text>`,
			x, h-12, s.Color, x+14, h-3, html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	c.SVG = template.HTML(b.String()) // every text in it was escaped above
}

func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// charts draws the last chartDays days: sessions per day (from the
// technician performance rows), average waiting and pickup times (from the
// sessions report), consents granted against denied, lockouts and refused
// actions (counts per day).
func (c *Console) charts(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	ctx := r.Context()
	t := rc.p.Tenant
	today := c.opts.Service.Now().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, -(chartDays - 1))
	days := make([]time.Time, chartDays)
	labels := make([]string, chartDays)
	for i := range days {
		days[i] = first.AddDate(0, 0, i)
		labels[i] = days[i].Format("01-02")
	}
	perf, err := c.opts.Reports.TechnicianPerformance(ctx, t, first, today, "")
	if err != nil {
		return err
	}
	sessions := make([]float64, chartDays)
	for _, p := range perf {
		i := int(p.Day.Sub(first).Hours() / 24)
		if i < 0 || i >= chartDays {
			continue
		}
		sessions[i] += float64(p.Sessions)
	}
	times, err := c.opts.Reports.SessionTimes(ctx, t, first, today)
	if err != nil {
		return err
	}
	waiting, pickup := make([]float64, chartDays), make([]float64, chartDays)
	for _, d := range times {
		i := int(d.Day.Sub(first).Hours() / 24)
		if i < 0 || i >= chartDays {
			continue
		}
		if d.AvgWaitingSeconds != nil {
			waiting[i] = *d.AvgWaitingSeconds
		}
		if d.AvgPickupSeconds != nil {
			pickup[i] = *d.AvgPickupSeconds
		}
	}
	count := func(f func(from, to time.Time) (int, error)) ([]float64, error) {
		out := make([]float64, chartDays)
		for i, d := range days {
			n, err := f(d, d.AddDate(0, 0, 1))
			if err != nil {
				return nil, err
			}
			out[i] = float64(n)
		}
		return out, nil
	}
	consents := func(kind string) ([]float64, error) {
		return count(func(from, to time.Time) (int, error) {
			return c.opts.Reports.CountConsents(ctx, t, gql.LogFilter{From: from, To: to, Kind: kind})
		})
	}
	granted, err := consents("granted")
	if err != nil {
		return err
	}
	denied, err := consents("denied")
	if err != nil {
		return err
	}
	refused, err := consents("action_denied")
	if err != nil {
		return err
	}
	lockouts, err := count(func(from, to time.Time) (int, error) {
		return c.opts.Reports.CountLogins(ctx, t, gql.LoginFilter{From: from, To: to, Outcome: "locked_out"})
	})
	if err != nil {
		return err
	}
	charts := []*chart{
		{ID: "sessions-per-day", Title: "Sessions per day", Labels: labels, Series: []series{{Name: "sessions", Color: "#0b5cad", Values: sessions}}},
		{ID: "pickup", Title: "Average waiting and pickup times per day (seconds)", Labels: labels, Series: []series{
			{Name: "waiting (s)", Color: "#0b7f8a", Values: waiting}, {Name: "pickup (s)", Color: "#7a4fb5", Values: pickup}}},
		{ID: "consents", Title: "Consents granted and denied per day", Labels: labels, Series: []series{
			{Name: "granted", Color: "#1e7b34", Values: granted}, {Name: "denied", Color: "#b3261e", Values: denied}}},
		{ID: "refusals", Title: "Lockouts and refused actions per day", Labels: labels, Series: []series{
			{Name: "lockouts", Color: "#d97706", Values: lockouts}, {Name: "refused actions", Color: "#b3261e", Values: refused}}},
	}
	for _, ch := range charts {
		ch.draw()
	}
	c.render(w, r, rc, http.StatusOK, "charts", "Charts, last 14 days", charts)
	return nil
}

package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// navItem is a link of the navigation bar.
type navItem struct {
	Href, Label string
	Current     bool
}

// layout is what every page's template receives.
type layout struct {
	Title     string
	SignedIn  bool
	Role      string
	Who       string
	Tenant    string
	CSRF      string
	Nav       []navItem
	Page      any
	Flash     string
	ErrorText string
}

// nav returns the links p's role may follow: an auditor sees no admin
// page, a technician only its sessions.
func nav(p service.Principal, current string) []navItem {
	items := []navItem{{Href: Prefix + "sessions", Label: "Sessions"}}
	if p.Is(readers...) {
		items = append(items,
			navItem{Href: Prefix + "logins", Label: "Logins"},
			navItem{Href: Prefix + "performance", Label: "Performance"},
			navItem{Href: Prefix + "charts", Label: "Charts"},
			navItem{Href: Prefix + "audit", Label: "Audit"})
	}
	if p.Is(adminOnly...) {
		items = append(items,
			navItem{Href: Prefix + "admin", Label: "Admin Center"},
			navItem{Href: Prefix + "dpo", Label: "DPO desk"})
	}
	for i := range items {
		items[i].Current = strings.HasPrefix(current, items[i].Href)
	}
	return items
}

// render executes page with data inside the layout and writes it.
func (c *Console) render(w http.ResponseWriter, r *http.Request, rc *reqctx, status int, page, title string, data any) {
	t, ok := c.pages[page]
	if !ok {
		c.log.Error("console: no template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	l := layout{Title: title, Page: data}
	if rc != nil {
		l.SignedIn = true
		l.Role = string(rc.p.Role)
		l.Tenant = rc.p.Tenant
		l.CSRF = rc.csrf
		l.Nav = nav(rc.p, r.URL.Path)
		l.Who = string(rc.p.Role)
		if rc.p.TechnicianID != "" {
			l.Who = "technician " + rc.p.TechnicianID
		}
		l.Flash = r.URL.Query().Get("done")
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, l); err != nil {
		c.log.Error("console: render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail answers err as an error page (a sign-in page for an ended
// session).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, rc *reqctx, err error) {
	code := domain.ErrorCode(err)
	msg := domain.ErrorMessage(err)
	if code == domain.CodeInternal {
		c.log.Error("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	if code == domain.CodeUnauthenticated && rc == nil {
		c.showLogin(w, r, http.StatusUnauthorized, loginData{Next: Prefix, Error: msg})
		return
	}
	c.render(w, r, rc, statusOf(err), "error", "Error", map[string]string{"Code": code, "Message": msg})
}

var funcs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05")
		case *time.Time:
			if v == nil || v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05")
		}
		return ""
	},
	"secs": func(f *float64) string {
		if f == nil {
			return "—"
		}
		return fmt.Sprintf("%.1f s", *f)
	},
	"bytes": func(n int64) string {
		switch {
		case n >= 1<<30:
			return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
	"join":      strings.Join,
	"minutes":   func(ms int64) string { return fmt.Sprintf("%.1f", float64(ms)/60000) },
	"hasPrefix": strings.HasPrefix,
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			k, _ := kv[i].(string)
			m[k] = kv[i+1]
		}
		return m
	},
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12] + "…"
		}
		return s
	},
}

// Package console serves Vigil's web console under /console/: the reports,
// the auditor's workspace, the Admin Center and the DPO desk, as pages
// rendered on the server with html/template and a little hand-written
// JavaScript, all embedded in the binary.
//
// Every change a page makes goes through the same service command as the
// HTTP API (and so records the same event); every read goes through the
// same reporting port as GraphQL. A person signs in with an API key (admin
// or auditor) or as a technician (password and TOTP); the console keeps a
// cookie session in PostgreSQL (SessionStore) so that any node serves it,
// and re-authenticates the signed-in credential on every request, so that a
// revoked key or a disabled technician is out at once. Each POST carries a
// CSRF token; the Content-Security-Policy allows no inline script or style.
//
// It imports the core packages and the other api packages, never adapters;
// cmd/vigil wires the PostgreSQL stores in.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/vigilhq/vigil/api/console/sessionstore"
	gql "github.com/vigilhq/vigil/api/graphql"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// DefaultIdleTimeout is how long a console session lives without a request.
const DefaultIdleTimeout = 30 * time.Minute

// maxLifetime bounds a console session however active it is.
const maxLifetime = 12 * time.Hour

// CSP is the console's Content-Security-Policy: scripts, styles and media
// from the console itself only, nothing inline, no frames.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Session is a console sign-in as the SessionStore keeps it.
type Session = sessionstore.Session

// SessionStore keeps console sessions where every node reads them.
type SessionStore = sessionstore.Store

// Directory lists a tenant's API keys, technician ids and group ids for
// the Admin Center.
type Directory = sessionstore.Directory

// EventLog reads a stream's events opened (personal fields readable);
// *ledger.Ledger satisfies it.
type EventLog interface {
	Load(ctx context.Context, tenant, stream string) ([]domain.Event, error)
}

// Options wire the console. Service, Sessions, Reports, Opener and Index
// are required; a page whose service is nil says it is not configured.
type Options struct {
	Service    *service.Service
	Sessions   SessionStore
	Directory  Directory
	Reports    gql.Reports
	Opener     gql.Opener
	Index      gql.BlindIndexer
	Log        EventLog
	Audit      httpapi.AuditService
	GDPR       httpapi.GDPRService
	Recordings httpapi.RecordingsService
	Webhooks   httpapi.WebhooksService
	// VerifierKey is the deployment's checkpoint verifier key, shown to
	// auditors as a hint (they paste the one they trust).
	VerifierKey string
	// TrustedProxies are the proxies whose X-Forwarded-For is believed for
	// a technician's login address, as in the API.
	TrustedProxies []netip.Prefix
	// IdleTimeout ends a session without requests (default
	// DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Logger receives internal errors (default slog.Default()).
	Logger *slog.Logger
	// Timing, when set, is called with each page's name and server time
	// (the bench reads it).
	Timing func(page string, d time.Duration)
}

// Console is the console's handler. It is safe for concurrent use.
type Console struct {
	opts  Options
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New returns the console, or an error when a required option is missing
// or a template does not parse.
func New(opts Options) (*Console, error) {
	if opts.Service == nil || opts.Sessions == nil || opts.Reports == nil || opts.Opener == nil || opts.Index == nil {
		return nil, errors.New("console: Service, Sessions, Reports, Opener and Index are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	c := &Console{opts: opts, log: opts.Logger, pages: map[string]*template.Template{}}
	if err := c.parse(); err != nil {
		return nil, err
	}
	c.mux = http.NewServeMux()
	c.routes()
	return c, nil
}

func (c *Console) parse() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return err
		}
		c.pages[base] = t
	}
	return nil
}

// ServeHTTP sets the security headers every answer carries and serves r.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// Role sets: who may open which page.
var (
	anyone      = []service.Role{service.RoleAdmin, service.RoleAuditor, service.RoleTechnician}
	readers     = []service.Role{service.RoleAdmin, service.RoleAuditor}
	adminOnly   = []service.Role{service.RoleAdmin}
	signInRoles = map[service.Role]bool{service.RoleAdmin: true, service.RoleAuditor: true, service.RoleTechnician: true}
)

func (c *Console) routes() {
	m := c.mux
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	m.HandleFunc("GET "+Prefix+"login", c.loginPage)
	m.HandleFunc("POST "+Prefix+"login", c.loginSubmit)
	m.HandleFunc("GET "+Prefix+"sso/start", c.ssoStart)
	m.HandleFunc("GET "+Prefix+"sso", c.ssoLanding)
	m.HandleFunc("POST "+Prefix+"sso", c.ssoFinish)
	m.HandleFunc("POST "+Prefix+"logout", c.page("logout", anyone, c.logout))
	m.HandleFunc("GET "+Prefix+"{$}", c.page("home", anyone, c.home))
	m.HandleFunc("GET "+Prefix+"sessions", c.page("sessions", anyone, c.sessions))
	m.HandleFunc("GET "+Prefix+"sessions.csv", c.page("sessions.csv", anyone, c.sessionsCSV))
	m.HandleFunc("GET "+Prefix+"sessions/{id}", c.page("session", anyone, c.session))
	m.HandleFunc("GET "+Prefix+"recordings/{id}", c.page("recording", anyone, c.recording))
	m.HandleFunc("GET "+Prefix+"logins", c.page("logins", readers, c.logins))
	m.HandleFunc("GET "+Prefix+"logins.csv", c.page("logins.csv", readers, c.loginsCSV))
	m.HandleFunc("GET "+Prefix+"performance", c.page("performance", readers, c.performance))
	m.HandleFunc("GET "+Prefix+"performance.csv", c.page("performance.csv", readers, c.performanceCSV))
	m.HandleFunc("GET "+Prefix+"audit", c.page("audit", readers, c.audit))
	m.HandleFunc("GET "+Prefix+"audit/proof", c.page("audit.proof", readers, c.auditProof))
	m.HandleFunc("POST "+Prefix+"audit/consistency", c.page("audit.consistency", readers, c.auditConsistency))
	m.HandleFunc("POST "+Prefix+"audit/export", c.page("audit.export", readers, c.auditExport))
	m.HandleFunc("GET "+Prefix+"admin", c.page("admin", adminOnly, c.admin))
	m.HandleFunc("GET "+Prefix+"admin/groups", c.page("groups", adminOnly, c.groups))
	m.HandleFunc("POST "+Prefix+"admin/groups", c.page("groups.save", adminOnly, c.groupSave))
	m.HandleFunc("GET "+Prefix+"admin/technicians", c.page("technicians", adminOnly, c.technicians))
	m.HandleFunc("POST "+Prefix+"admin/technicians", c.page("technicians.create", adminOnly, c.technicianCreate))
	m.HandleFunc("POST "+Prefix+"admin/technicians/{id}/{action}", c.page("technicians.change", adminOnly, c.technicianChange))
	m.HandleFunc("GET "+Prefix+"admin/keys", c.page("keys", adminOnly, c.keys))
	m.HandleFunc("POST "+Prefix+"admin/keys", c.page("keys.create", adminOnly, c.keyCreate))
	m.HandleFunc("POST "+Prefix+"admin/keys/{id}/revoke", c.page("keys.revoke", adminOnly, c.keyRevoke))
	m.HandleFunc("GET "+Prefix+"admin/webhooks", c.page("webhooks", adminOnly, c.webhooks))
	m.HandleFunc("POST "+Prefix+"admin/webhooks", c.page("webhooks.create", adminOnly, c.webhookCreate))
	m.HandleFunc("POST "+Prefix+"admin/webhooks/{id}/replay", c.page("webhooks.replay", adminOnly, c.webhookReplay))
	m.HandleFunc("GET "+Prefix+"admin/tenant", c.page("tenant", adminOnly, c.tenant))
	m.HandleFunc("POST "+Prefix+"admin/tenant/retention", c.page("tenant.retention", adminOnly, c.tenantRetention))
	m.HandleFunc("GET "+Prefix+"dpo", c.page("dpo", adminOnly, c.dpo))
	m.HandleFunc("POST "+Prefix+"dpo/export", c.page("dpo.export", adminOnly, c.dpoExport))
	m.HandleFunc("POST "+Prefix+"dpo/erasures", c.page("dpo.erase", adminOnly, c.dpoErase))
	m.HandleFunc("POST "+Prefix+"dpo/erasures/{id}/revoke", c.page("dpo.revoke", adminOnly, c.dpoRevoke))
	m.HandleFunc("GET "+Prefix+"charts", c.page("charts", readers, c.charts))
	m.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, &domain.Error{Code: domain.CodeNotFound, Message: "no such page"})
	})
}

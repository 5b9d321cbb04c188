package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/sso"
)

// The SAML single sign-on endpoints (docs/sso.md). The per-tenant ones
// (metadata, login, acs) take no credential: the browser comes from the
// console or from the identity provider.

// ssoRequestCookie carries the id of the AuthnRequest a browser started,
// so that the response the IdP posts back is accepted only in the browser
// that asked for it (no login CSRF): any node can check it, nothing is kept
// on the server.
const ssoRequestCookie = "vigil_saml_request"

// ssoMetadataTimeout bounds fetching an IdP's metadata URL.
const ssoMetadataTimeout = 10 * time.Second

// ssoAPI serves the SSO endpoints: the API plus what only they need.
type ssoAPI struct {
	*api
	publicURL *url.URL
	ssoClient *http.Client
}

func (a *api) ssoRoutes(mux *http.ServeMux, publicURL *url.URL, client *http.Client) {
	if client == nil {
		client = &http.Client{Timeout: ssoMetadataTimeout}
	}
	s := &ssoAPI{api: a, publicURL: publicURL, ssoClient: client}
	s.routes(mux)
}

func (a *ssoAPI) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sso/saml", a.authed(a.configureSSO))
	mux.HandleFunc("GET /v1/sso/saml", a.authed(a.getSSO))
	mux.HandleFunc("GET /v1/sso/saml/{tenant}/metadata", a.unauthed(a.ssoMetadata))
	mux.HandleFunc("GET /v1/sso/saml/{tenant}/login", a.unauthed(a.ssoLogin))
	mux.HandleFunc("POST /v1/sso/saml/{tenant}/acs", a.unauthed(a.ssoACS))
	mux.HandleFunc("POST /v1/technicians/{id}/sso/disable", a.authed(a.disableSSO))
	mux.HandleFunc("POST /v1/technicians/{id}/sso/enable", a.authed(a.enableSSO))
	mux.HandleFunc("PUT /v1/technicians/{id}/sso", a.authed(a.setSSOID))
	mux.HandleFunc("POST /v1/technicians/{id}/require-password-change", a.authed(a.requirePasswordChange))
	mux.HandleFunc("POST /v1/auth/password", a.authed(a.changePassword))
}

// baseURL is Vigil's public URL: Options.PublicURL, or the request's own
// scheme and host (X-Forwarded-Proto is believed from trusted proxies).
func (a *ssoAPI) baseURL(r *http.Request) url.URL {
	if a.publicURL != nil {
		return *a.publicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else if a.trusted(peerIP(r)) && r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return url.URL{Scheme: scheme, Host: r.Host}
}

// peerIP is the address of the connection itself, whatever it forwards.
func peerIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, _ := netip.ParseAddr(host)
	return addr.Unmap()
}

// spInfo is what an admin gives the IdP: the SP's entity id, ACS URL and
// metadata, and the URL that starts a login.
type spInfo struct {
	EntityID    string `json:"entity_id"`
	ACSURL      string `json:"acs_url"`
	MetadataURL string `json:"metadata_url"`
	LoginURL    string `json:"login_url"`
}

func (a *ssoAPI) spInfo(r *http.Request, tenant string) spInfo {
	base := a.baseURL(r)
	at := func(p string) string {
		u := base
		u.Path = strings.TrimSuffix(base.Path, "/") + p
		return u.String()
	}
	return spInfo{EntityID: at(sso.MetadataPath(tenant)), ACSURL: at(sso.ACSPath(tenant)),
		MetadataURL: at(sso.MetadataPath(tenant)), LoginURL: at(sso.LoginPath(tenant))}
}

func (a *ssoAPI) configureSSO(w http.ResponseWriter, r *http.Request) error {
	var b ssoConfigBody
	if err := decode(r, &b); err != nil {
		return err
	}
	p := principal(r)
	if p.Role != service.RoleAdmin {
		return &domain.Error{Code: domain.CodeForbidden, Message: "this needs an admin API key", Err: domain.ErrForbidden}
	}
	raw := []byte(b.MetadataXML)
	switch {
	case b.MetadataXML != "" && b.MetadataURL != "":
		return domain.Errorf(domain.CodeInvalid, "give metadata_xml or metadata_url, not both")
	case b.MetadataURL != "":
		var err error
		if raw, err = a.fetchMetadata(r.Context(), b.MetadataURL); err != nil {
			return err
		}
	case b.MetadataXML == "":
		return domain.Errorf(domain.CodeInvalid, "metadata_xml or metadata_url is required")
	}
	idp, err := sso.ParseMetadata(raw)
	if err != nil {
		return err
	}
	enabled := b.Enabled == nil || *b.Enabled
	v, err := a.svc.ConfigureSSO(r.Context(), p, domain.SSOConfigured{
		Protocol: "saml", Enabled: enabled, IdPEntityID: idp.EntityID, MetadataURL: b.MetadataURL,
		Metadata: string(raw), MetadataSHA256: idp.SHA256, IDAttribute: b.IDAttribute, JITGroupID: b.JITGroupID,
		AllowIdPInitiated: b.AllowIdPInitiated,
	}, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"sso": v, "sp": a.spInfo(r, p.Tenant), "idp_certificates": idp.Certificates})
	return nil
}

// fetchMetadata reads an IdP's metadata URL with Options.SSOMetadataClient.
func (a *ssoAPI) fetchMetadata(ctx context.Context, raw string) ([]byte, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, domain.Errorf(domain.CodeInvalid, "metadata_url is not an http(s) URL")
	}
	ctx, cancel := context.WithTimeout(ctx, ssoMetadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, domain.Errorf(domain.CodeInvalid, "metadata_url: %v", err)
	}
	resp, err := a.ssoClient.Do(req)
	if err != nil {
		return nil, domain.Errorf(domain.CodeInvalid, "metadata_url could not be fetched: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, domain.Errorf(domain.CodeInvalid, "metadata_url answered %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, sso.MaxMetadata+1))
	if err != nil {
		return nil, domain.Errorf(domain.CodeInvalid, "metadata_url: %v", err)
	}
	return body, nil
}

func (a *ssoAPI) getSSO(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	v, err := a.svc.SSOConfigView(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"sso": v, "sp": a.spInfo(r, p.Tenant)})
	return nil
}

// tenantSP builds the service provider of the path's tenant from the
// configuration in the log (read again on every request, on every node).
func (a *ssoAPI) tenantSP(r *http.Request) (string, *sso.SP, error) {
	tenant, err := pathID(r, "tenant")
	if err != nil {
		return "", nil, err
	}
	cfg, ok, err := a.svc.SSOConfig(r.Context(), tenant)
	if err != nil {
		return "", nil, err
	}
	if !ok || !cfg.Enabled {
		return "", nil, &domain.Error{Code: domain.CodeNotFound, Message: "single sign-on is not configured for this tenant", Err: domain.ErrNotFound}
	}
	sp, err := sso.New(sso.Settings{BaseURL: a.baseURL(r), Tenant: tenant, Config: cfg, Now: a.svc.Now()})
	if err != nil {
		return "", nil, err
	}
	return tenant, sp, nil
}

func (a *ssoAPI) ssoMetadata(w http.ResponseWriter, r *http.Request) error {
	_, sp, err := a.tenantSP(r)
	if err != nil {
		return err
	}
	md, err := sp.Metadata()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	_, _ = w.Write(md)
	return nil
}

// ssoLogin starts an SP-initiated login: it remembers the request in a
// cookie for the ACS path and sends the browser to the IdP (HTTP-Redirect
// binding). return_to, a path of this site, is where the ACS sends the
// browser back with the token in the fragment.
func (a *ssoAPI) ssoLogin(w http.ResponseWriter, r *http.Request) error {
	tenant, sp, err := a.tenantSP(r)
	if err != nil {
		return err
	}
	relay := r.URL.Query().Get("return_to")
	if relay != "" && !sso.SafeReturn(relay) {
		return domain.Errorf(domain.CodeInvalid, "return_to must be a path of this site (starting with one /)")
	}
	to, id, err := sp.Start(relay)
	if err != nil {
		return err
	}
	base := a.baseURL(r)
	secure := base.Scheme == "https"
	c := &http.Cookie{Name: ssoRequestCookie, Value: id, Path: cookiePath(base, tenant), MaxAge: 600, HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteLaxMode}
	if secure {
		// The IdP posts back from its own site: only SameSite=None lets
		// the cookie come along with that POST.
		c.SameSite = http.SameSiteNoneMode
	}
	http.SetCookie(w, c)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to.String(), http.StatusFound)
	return nil
}

// cookiePath is the ACS path under the public URL's own path prefix.
func cookiePath(base url.URL, tenant string) string {
	return strings.TrimSuffix(base.Path, "/") + sso.ACSPath(tenant)
}

// ssoACS is the assertion consumer service (HTTP-POST binding).
func (a *ssoAPI) ssoACS(w http.ResponseWriter, r *http.Request) error {
	tenant, sp, err := a.tenantSP(r)
	if err != nil {
		return err
	}
	done, err := a.svc.ReserveSSOAttempt(r.Context(), a.clientIP(r))
	if err != nil {
		return err
	}
	failed := true
	defer func() { done(failed) }()
	if err := r.ParseForm(); err != nil {
		return domain.Errorf(domain.CodeInvalid, "the SAML response form does not parse")
	}
	relay := r.PostForm.Get("RelayState")
	if !sso.SafeReturn(relay) {
		relay = ""
	}
	var requestID string
	if c, err := r.Cookie(ssoRequestCookie); err == nil {
		requestID = c.Value
	}
	http.SetCookie(w, &http.Cookie{Name: ssoRequestCookie, Value: "", Path: cookiePath(a.baseURL(r), tenant), MaxAge: -1, HttpOnly: true})
	current, _ := url.Parse(sp.ACSURL())
	login, err := sp.Validate(r.PostForm.Get("SAMLResponse"), requestID, *current)
	if err != nil {
		var ref *sso.Refusal
		if !errors.As(err, &ref) {
			return err
		}
		a.log.Info("SAML response refused", "tenant", tenant, "reason", ref.Reason, "detail", ref.Err)
		a.svc.RecordSSOFailure(r.Context(), tenant, ref.Reason, "")
		return a.ssoAnswer(w, r, relay, service.LoginResult{}, &domain.Error{Code: domain.CodeUnauthenticated,
			Message: fmt.Sprintf("single sign-on refused: %s", ref.Reason), Err: domain.ErrUnauthenticated})
	}
	res, err := a.svc.SSOLogin(r.Context(), service.SSOLoginRequest{Tenant: tenant, SSOID: login.SSOID, AssertionID: login.AssertionID,
		ExpiresAt: login.ExpiresAt, IdPInitiated: login.IdPInitiated, IP: a.clientIP(r)})
	failed = err != nil
	return a.ssoAnswer(w, r, relay, res, err)
}

// ssoAnswer hands the login's outcome over: to the return_to path the
// login started with, in the URL fragment (never sent to a server, kept out
// of logs and Referer headers), or as the JSON of POST /v1/auth/login when
// there is none.
func (a *ssoAPI) ssoAnswer(w http.ResponseWriter, r *http.Request, relay string, res service.LoginResult, err error) error {
	if relay == "" {
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, loginAnswer(res))
		return nil
	}
	v := url.Values{}
	if err != nil {
		code := domain.ErrorCode(err)
		if code == domain.CodeInternal {
			a.log.Error("SSO login failed", "err", err)
		}
		v.Set("error", code)
		v.Set("message", domain.ErrorMessage(err))
		if code == domain.CodeInternal {
			v.Set("message", "internal error")
		}
	} else {
		v.Set("token", res.Token)
		v.Set("expires_at", res.ExpiresAt.Format(time.RFC3339))
		v.Set("technician_id", res.TechnicianID)
		v.Set("tenant", res.Tenant)
		v.Set("scope", res.Scope)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, relay+"#"+v.Encode(), http.StatusSeeOther)
	return nil
}

func loginAnswer(res service.LoginResult) map[string]any {
	return map[string]any{
		"token": res.Token, "expires_at": res.ExpiresAt.Format(time.RFC3339), "technician_id": res.TechnicianID,
		"tenant": res.Tenant, "scope": res.Scope,
	}
}

func (a *ssoAPI) technicianAction(w http.ResponseWriter, r *http.Request,
	do func(ctx context.Context, p service.Principal, id, reason string, eventID [16]byte) (service.TechnicianView, error)) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	reason, err := optionalReason(r)
	if err != nil {
		return err
	}
	t, err := do(r.Context(), principal(r), id, reason, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (a *ssoAPI) disableSSO(w http.ResponseWriter, r *http.Request) error {
	return a.technicianAction(w, r, a.svc.DisableSSO)
}

func (a *ssoAPI) enableSSO(w http.ResponseWriter, r *http.Request) error {
	return a.technicianAction(w, r, a.svc.EnableSSO)
}

func (a *ssoAPI) setSSOID(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var b ssoIDBody
	if err := decode(r, &b); err != nil {
		return err
	}
	t, err := a.svc.SetTechnicianSSOID(r.Context(), principal(r), id, b.SSOID, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (a *ssoAPI) requirePasswordChange(w http.ResponseWriter, r *http.Request) error {
	return a.technicianAction(w, r, a.svc.RequirePasswordChange)
}

func (a *ssoAPI) changePassword(w http.ResponseWriter, r *http.Request) error {
	var b passwordBody
	if err := decode(r, &b); err != nil {
		return err
	}
	err := a.svc.ChangePassword(r.Context(), principal(r), service.PasswordChange{
		Current: b.CurrentPassword, New: b.NewPassword, TOTP: b.TOTP, IP: a.clientIP(r)})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

package console

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// Cookie names. The __Host- prefix makes the browser refuse them unless
// they are Secure, host-only and for the path /.
const (
	sessionCookie = "__Host-vigil-console"
	loginCookie   = "__Host-vigil-login"
)

// touchEvery is how often a session's last use is written at most.
const touchEvery = 15 * time.Second

// reqctx is what a signed-in request carries.
type reqctx struct {
	p    service.Principal
	sess Session
	csrf string
	page string
}

// secrets derives, from the cookie's 32 random bytes, the id hash the
// store keys the session by, the key its credential is sealed under and
// the CSRF token of its forms.
func secrets(raw []byte) (idHash, key []byte, csrf string) {
	h := sha256.Sum256(append([]byte("vigil-console-id\x00"), raw[:16]...))
	k := sha256.Sum256(append([]byte("vigil-console-key\x00"), raw...))
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("csrf"))
	return h[:], k[:], base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func seal(key []byte, plain, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plain, aad), nil
}

func unseal(key []byte, sealed, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("sealed credential too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], aad)
}

func cookieValue(r *http.Request, name string) []byte {
	ck, err := r.Cookie(name)
	if err != nil {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(raw) != 32 {
		return nil
	}
	return raw
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// errSignIn is the answer to a request without a live session.
var errSignIn = &domain.Error{Code: domain.CodeUnauthenticated, Message: "sign in first", Err: domain.ErrUnauthenticated}

// signedIn resolves r's session: the cookie, the stored row, and the
// credential, authenticated again by the service.
func (c *Console) signedIn(r *http.Request) (*reqctx, error) {
	raw := cookieValue(r, sessionCookie)
	if raw == nil {
		return nil, errSignIn
	}
	idHash, key, csrf := secrets(raw)
	ctx := r.Context()
	s, err := c.opts.Sessions.ConsoleSession(ctx, idHash)
	if errors.Is(err, domain.ErrNotFound) {
		return nil, errSignIn
	}
	if err != nil {
		return nil, err
	}
	now := c.opts.Service.Now()
	if !now.Before(s.ExpiresAt) || now.Sub(s.CreatedAt) > maxLifetime {
		_ = c.opts.Sessions.DeleteConsoleSession(ctx, idHash)
		return nil, &domain.Error{Code: domain.CodeUnauthenticated, Message: "the console session ended after inactivity; sign in again", Err: domain.ErrUnauthenticated}
	}
	cred, err := unseal(key, s.Credential, idHash)
	if err != nil {
		return nil, errSignIn
	}
	p, err := c.opts.Service.Authenticate(ctx, string(cred))
	if err != nil {
		if domain.ErrorCode(err) == domain.CodeUnauthenticated {
			_ = c.opts.Sessions.DeleteConsoleSession(ctx, idHash)
		}
		return nil, err
	}
	if now.Sub(s.LastSeenAt) > touchEvery {
		if err := c.opts.Sessions.TouchConsoleSession(ctx, idHash, now, now.Add(c.opts.IdleTimeout)); err != nil {
			return nil, err
		}
	}
	return &reqctx{p: p, sess: s, csrf: csrf}, nil
}

// sameOrigin refuses a state-changing request sent from another origin
// (a second line behind the CSRF token and SameSite=Strict).
func sameOrigin(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" && site != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		// A browser that says nothing of the origin (an old one, or a
		// "null" origin) must at least have said same-origin above.
		return o == "" || site == "same-origin"
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// page wraps a handler with the session, the role check, the CSRF check of
// a POST and the page timing.
func (c *Console) page(name string, roles []service.Role, h func(http.ResponseWriter, *http.Request, *reqctx) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rc, err := c.signedIn(r)
		if err != nil {
			if domain.ErrorCode(err) == domain.CodeUnauthenticated && r.Method == http.MethodGet {
				http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, err)
			return
		}
		rc.page = name
		if !rc.p.Is(roles...) {
			c.fail(w, r, rc, &domain.Error{Code: domain.CodeForbidden, Message: "your role (" + string(rc.p.Role) + ") cannot open this page", Err: domain.ErrForbidden})
			return
		}
		if r.Method == http.MethodPost {
			if err := c.checkCSRF(r, rc.csrf); err != nil {
				c.fail(w, r, rc, err)
				return
			}
		}
		if err := h(w, r, rc); err != nil {
			c.fail(w, r, rc, err)
		}
		if c.opts.Timing != nil {
			c.opts.Timing(name, time.Since(start))
		}
	}
}

var errCSRF = &domain.Error{Code: domain.CodeForbidden, Message: "the form's security token is missing or stale: reload the page and try again", Err: domain.ErrForbidden}

func (c *Console) checkCSRF(r *http.Request, want string) error {
	if !sameOrigin(r) {
		return errCSRF
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		if err := r.ParseForm(); err != nil {
			return domain.Errorf(domain.CodeInvalid, "the form could not be read")
		}
		got = r.PostFormValue("csrf")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errCSRF
	}
	return nil
}

type loginData struct {
	Next, Error, Email, Tenant, Form string
	NeedTOTP                         bool
	LoginCSRF                        string
}

// loginPage shows the two sign-in forms with a fresh double-submit token.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.showLogin(w, r, http.StatusOK, loginData{Next: safeNext(r.URL.Query().Get("next"))})
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	tok := base64.RawURLEncoding.EncodeToString(raw)
	setCookie(w, loginCookie, tok, 600)
	d.LoginCSRF = tok
	c.render(w, r, nil, status, "login", "Sign in", d)
}

// safeNext keeps a redirect target inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}

func (c *Console) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, domain.Errorf(domain.CodeInvalid, "the form could not be read"))
		return
	}
	d := loginData{Next: safeNext(r.PostFormValue("next")), Email: r.PostFormValue("email"), Tenant: r.PostFormValue("tenant"), Form: r.PostFormValue("form")}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		d.Error = errCSRF.Message
		c.showLogin(w, r, http.StatusForbidden, d)
		return
	}
	ctx := r.Context()
	var cred string
	switch d.Form {
	case "key":
		cred = strings.TrimSpace(r.PostFormValue("api_key"))
		p, err := c.opts.Service.Authenticate(ctx, cred)
		if err == nil && !signInRoles[p.Role] {
			err = domain.Errorf(domain.CodeForbidden, "a key of role %s cannot sign in to the console: use an admin or auditor key", p.Role)
		}
		if err != nil {
			d.Error = domain.ErrorMessage(err)
			c.showLogin(w, r, statusOf(err), d)
			return
		}
	case "technician":
		res, err := c.opts.Service.Login(ctx, service.LoginRequest{
			Email: d.Email, Password: r.PostFormValue("password"), TOTP: strings.TrimSpace(r.PostFormValue("totp")),
			Tenant: strings.TrimSpace(d.Tenant), IP: httpapi.ClientIP(r, c.opts.TrustedProxies),
		})
		if err != nil {
			d.Error = domain.ErrorMessage(err)
			// The service answers a missing or wrong code as a wrong
			// credential; the form then asks for the code.
			d.NeedTOTP = domain.ErrorCode(err) == domain.CodeSecondFactor || strings.Contains(d.Error, "second-factor") ||
				r.PostFormValue("totp") != ""
			c.showLogin(w, r, statusOf(err), d)
			return
		}
		if res.Scope != service.ScopeFull {
			d.Error = "this account must enrol a second factor before it can sign in"
			c.showLogin(w, r, http.StatusForbidden, d)
			return
		}
		cred = res.Token
	default:
		d.Error = "choose a way to sign in"
		c.showLogin(w, r, http.StatusBadRequest, d)
		return
	}
	if err := c.startSession(w, r, cred); err != nil {
		c.fail(w, r, nil, err)
		return
	}
	setCookie(w, loginCookie, "", -1)
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

// startSession stores a new console session for cred and sets its cookie.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, cred string) error {
	ctx := r.Context()
	p, err := c.opts.Service.Authenticate(ctx, cred)
	if err != nil {
		return err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	idHash, key, _ := secrets(raw)
	sealed, err := seal(key, []byte(cred), idHash)
	if err != nil {
		return err
	}
	now := c.opts.Service.Now()
	if err := c.opts.Sessions.CreateConsoleSession(ctx, Session{IDHash: idHash, Tenant: p.Tenant, Role: string(p.Role), TechnicianID: p.TechnicianID,
		Credential: sealed, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(c.opts.IdleTimeout)}); err != nil {
		return err
	}
	setCookie(w, sessionCookie, base64.RawURLEncoding.EncodeToString(raw), 0)
	// Sign-ins are rare: each sweeps the sessions that expired, on
	// whichever node it lands.
	if _, err := c.opts.Sessions.PurgeConsoleSessions(ctx, now); err != nil {
		c.log.Warn("console: purge expired sessions", "err", err)
	}
	return nil
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	ctx := context.WithoutCancel(r.Context())
	if rc.p.Role == service.RoleTechnician {
		if err := c.opts.Service.Logout(ctx, rc.p); err != nil {
			return err
		}
	}
	if err := c.opts.Sessions.DeleteConsoleSession(ctx, rc.sess.IDHash); err != nil {
		return err
	}
	setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
	return nil
}

// statusOf is the page's HTTP status for err: the API's for its code.
func statusOf(err error) int { return httpapi.StatusOf(domain.ErrorCode(err)) }

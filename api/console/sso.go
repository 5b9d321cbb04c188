package console

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// SSO sign-in (docs/sso.md, "Logging in from the console"): the console
// sends the browser to the tenant's SAML login with return_to=/console/sso;
// the ACS comes back there with the technician's token in the URL
// fragment, which never reaches a server; static/sso.js reads it, removes
// it from the address bar and posts it here with the sign-in form's
// double-submit token; the console then keeps it as it keeps a password
// login's token.

// ssoStart sends the browser to the tenant's identity provider.
func (c *Console) ssoStart(w http.ResponseWriter, r *http.Request) {
	tenant := strings.TrimSpace(r.URL.Query().Get("tenant"))
	if tenant == "" || !service.ValidID(tenant) {
		c.showLogin(w, r, http.StatusBadRequest, loginData{Next: Prefix, Error: "name your organisation's tenant id to sign in with SSO", Form: "sso"})
		return
	}
	http.Redirect(w, r, "/v1/sso/saml/"+url.PathEscape(tenant)+"/login?return_to="+url.QueryEscape(Prefix+"sso"), http.StatusSeeOther)
}

// ssoLanding is the page the ACS returns to.
func (c *Console) ssoLanding(w http.ResponseWriter, r *http.Request) {
	c.showLogin(w, r, http.StatusOK, loginData{Next: Prefix, Form: "sso-landing"})
}

// ssoFinish starts a console session for the token the ACS issued.
func (c *Console) ssoFinish(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, domain.Errorf(domain.CodeInvalid, "the form could not be read"))
		return
	}
	d := loginData{Next: Prefix, Form: "sso"}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		d.Error = errCSRF.Message
		c.showLogin(w, r, http.StatusForbidden, d)
		return
	}
	if msg := r.PostFormValue("error"); msg != "" {
		d.Error = "single sign-on refused: " + msg
		c.showLogin(w, r, http.StatusUnauthorized, d)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	p, err := c.opts.Service.Authenticate(r.Context(), token)
	if err == nil && (p.Role != service.RoleTechnician || p.Scope != service.ScopeFull) {
		err = domain.Errorf(domain.CodeForbidden, "single sign-on gives technician sessions only")
	}
	if err == nil {
		err = c.startSession(w, r, token)
	}
	if err != nil {
		d.Error = domain.ErrorMessage(err)
		c.showLogin(w, r, statusOf(err), d)
		return
	}
	setCookie(w, loginCookie, "", -1)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

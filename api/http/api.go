package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// DefaultMaxBody is the request body limit (1 MiB).
const DefaultMaxBody = 1 << 20

// statusOf maps an error code to its HTTP status. Only this package maps
// codes to statuses.
func statusOf(code string) int {
	switch code {
	case domain.CodeInvalid, domain.CodeAddressRefused:
		return http.StatusBadRequest
	case domain.CodeUnauthenticated:
		return http.StatusUnauthorized
	case domain.CodeForbidden, domain.CodePermissionDenied, domain.CodeIPNotAllowed, domain.CodeDisabled,
		domain.CodePasswordChange, domain.CodeSecondFactor:
		return http.StatusForbidden
	case domain.CodeNotFound:
		return http.StatusNotFound
	case domain.CodeConflict, domain.CodeConsentRequired, domain.CodeSessionClosed, domain.CodeRecordingRequired:
		return http.StatusConflict
	case domain.CodeSubjectErased:
		return http.StatusGone
	case codeTooLarge:
		return http.StatusRequestEntityTooLarge
	case domain.CodeWeakPassword:
		return http.StatusUnprocessableEntity
	case domain.CodeLockedOut:
		return http.StatusLocked
	case domain.CodeRateLimited:
		return http.StatusTooManyRequests
	case codeRequestTimeout:
		return http.StatusRequestTimeout
	case codeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

const codeTooLarge = "too_large"

// retryAfterUnavailable is the Retry-After, in seconds, of an answer of
// code unavailable (a database outage or restart).
const retryAfterUnavailable = "2"

type errorBody struct {
	Error struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details,omitempty"`
	} `json:"error"`
}

// writeError answers err with its status and {"error": {code, message}}.
// Anything unexpected is "internal error" to the caller and logged here.
func (a *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var body errorBody
	code := domain.ErrorCode(err)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		code = codeTooLarge
	} else if code == domain.CodeInternal && bodyTimedOut(err) {
		code = codeRequestTimeout
	}
	body.Error.Code = code
	switch code {
	case domain.CodeInternal:
		body.Error.Message = "internal error"
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case codeTooLarge:
		body.Error.Message = "the request body is larger than the limit"
	case codeRequestTimeout:
		body.Error.Message = "the request body did not arrive in time"
	default:
		body.Error.Message = domain.ErrorMessage(err)
	}
	var weak *service.WeakPasswordError
	if errors.As(err, &weak) {
		body.Error.Details = map[string]any{"strength": weak.Strength}
	}
	var limited *service.RateLimitedError
	if errors.As(err, &limited) {
		w.Header().Set("Retry-After", limited.RetryAfterSeconds())
	}
	if code == domain.CodeUnavailable && w.Header().Get("Retry-After") == "" {
		// The database is out of reach (domain.ErrUnavailable): nothing
		// went wrong with the request, so say when to try it again.
		w.Header().Set("Retry-After", retryAfterUnavailable)
	}
	writeJSON(w, statusOf(code), body)
}

type api struct {
	svc        *service.Service
	log        *slog.Logger
	proxies    []netip.Prefix
	maxBody    int64
	audit      AuditService
	gdpr       GDPRService
	recordings RecordingsService
	webhooks   WebhooksService
	gateways   GatewaysService
	limits     Limits
}

type ctxKey int

const (
	principalKey ctxKey = iota
	eventIDKey
)

func principal(r *http.Request) service.Principal {
	p, _ := r.Context().Value(principalKey).(service.Principal)
	return p
}

// eventID returns the id derived from the request's Idempotency-Key, or
// zero.
func eventID(r *http.Request) [16]byte {
	id, _ := r.Context().Value(eventIDKey).([16]byte)
	return id
}

// authed wraps h with bearer authentication.
func (a *api) authed(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return a.authedWith(false, h)
}

// authedCommand wraps h, which does nothing but one SessionCommand, with
// bearer authentication that SessionCommand confirms in its first read
// (service.AuthenticateDeferred): one round trip fewer per command.
func (a *api) authedCommand(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return a.authedWith(true, h)
}

func (a *api) authedWith(deferred bool, h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		bearer, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || bearer == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
			a.writeError(w, r, &domain.Error{Code: domain.CodeUnauthenticated, Message: "missing bearer credential"})
			return
		}
		var (
			p   service.Principal
			err error
		)
		if deferred {
			var ctx context.Context
			ctx, p, err = a.svc.AuthenticateDeferred(r.Context(), strings.TrimSpace(bearer))
			r = r.WithContext(ctx)
		} else {
			p, err = a.svc.Authenticate(r.Context(), strings.TrimSpace(bearer))
		}
		if err != nil {
			if domain.ErrorCode(err) == domain.CodeUnauthenticated {
				w.Header().Set("WWW-Authenticate", `Bearer realm="vigil", error="invalid_token"`)
			}
			a.writeError(w, r, err)
			return
		}
		authenticated(r)
		r = r.WithContext(context.WithValue(r.Context(), principalKey, p))
		a.idempotent(w, r, h)
	}
}

// unauthed wraps h for the endpoints without credentials (login).
func (a *api) unauthed(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	}
}

// recorder keeps a handler's answer so that it can be stored for an
// Idempotency-Key.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// idempotent runs h, honouring an Idempotency-Key on POST requests: the
// first answer is stored and returned again for a repeat with the same
// body; a repeat with another body is a conflict.
func (a *api) idempotent(w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request) error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || (r.Method != http.MethodPost && r.Method != http.MethodPatch) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
		return
	}
	if len(key) > 200 || strings.IndexFunc(key, func(c rune) bool { return c < 0x20 || c > 0x7e }) >= 0 {
		a.writeError(w, r, domain.Errorf(domain.CodeInvalid, "Idempotency-Key must be 1 to 200 printable ASCII characters"))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.New()
	sum.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
	sum.Write(body)
	hash := sum.Sum(nil)

	p := principal(r)
	k := service.IdempotencyKey{Tenant: p.Tenant, Principal: p.CredentialID, Key: key}
	store := a.svc.Idempotency()
	stored, claimed, err := store.Claim(r.Context(), k, hash, a.svc.Now())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if !claimed {
		// A credential authenticated from memory is confirmed before an
		// answer is replayed to it.
		if err := a.svc.ConfirmDeferred(r.Context()); err != nil {
			a.writeError(w, r, err)
			return
		}
		switch {
		case !bytes.Equal(stored.RequestHash, hash):
			a.writeError(w, r, &domain.Error{Code: domain.CodeConflict, Message: "this Idempotency-Key was used with another request", Err: domain.ErrConflict})
		case stored.Status == 0:
			a.writeError(w, r, &domain.Error{Code: domain.CodeConflict, Message: "a request with this Idempotency-Key is still running", Err: domain.ErrConflict})
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(stored.Status)
			_, _ = w.Write(stored.Body)
		}
		return
	}
	rec := &recorder{header: w.Header()}
	r = r.WithContext(context.WithValue(r.Context(), eventIDKey, service.EventIDFromKey(k)))
	if err := h(rec, r); err != nil {
		a.writeError(rec, r, err)
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	ctx := context.WithoutCancel(r.Context())
	if rec.status >= 500 || rec.status == http.StatusUnauthorized {
		// Nothing is stored for a failure of ours: a retry runs again, and
		// the ledger's event-id idempotency keeps it from appending twice.
		// Nor for a credential found no longer valid (a deferred one,
		// confirmed by the handler): the key was never the caller's.
		a.settleKey(ctx, "release idempotency key", func() error { return store.Release(ctx, k) })
	} else {
		body := bytes.Clone(rec.body.Bytes())
		a.settleKey(ctx, "store idempotent answer", func() error { return store.Complete(ctx, k, rec.status, body) })
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(rec.body.Bytes())
}

// settleKey runs fn, which releases or completes a claimed
// Idempotency-Key. When the database is what just failed (a failover),
// it keeps trying in the background for a while: a key left claimed would
// answer every retry 409 "still running" until it expires.
func (a *api) settleKey(ctx context.Context, what string, fn func() error) {
	err := fn()
	if err == nil {
		return
	}
	go func() {
		for range 480 { // two minutes
			time.Sleep(250 * time.Millisecond)
			if err = fn(); err == nil {
				return
			}
		}
		a.log.Warn(what, "err", err)
	}()
}

// decode reads the body as one strict JSON value into v.
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return domain.Errorf(domain.CodeInvalid, "empty request body: want a JSON object")
	}
	return service.DecodeStrict(body, v)
}

// clientIP is the connection's address, or the nearest untrusted address of
// X-Forwarded-For when the connection comes from a trusted proxy.
func (a *api) clientIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	addr = addr.Unmap()
	if !a.trusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		hop = hop.Unmap()
		addr = hop
		if !a.trusted(hop) {
			break
		}
	}
	return addr
}

func (a *api) trusted(addr netip.Addr) bool {
	for _, p := range a.proxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func (a *api) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/groups", a.authed(a.createGroup))
	mux.HandleFunc("PATCH /v1/groups/{id}", a.authed(a.updateGroup))
	mux.HandleFunc("GET /v1/groups/{id}", a.authed(a.getGroup))
	mux.HandleFunc("POST /v1/technicians", a.authed(a.createTechnician))
	mux.HandleFunc("POST /v1/technicians/{id}/unlock", a.authed(a.unlockTechnician))
	mux.HandleFunc("POST /v1/technicians/{id}/disable", a.authed(a.disableTechnician))
	mux.HandleFunc("POST /v1/auth/login", a.unauthed(a.login))
	mux.HandleFunc("POST /v1/auth/totp/enroll", a.authed(a.enrollTOTP))
	mux.HandleFunc("POST /v1/auth/logout", a.authed(a.logout))
	mux.HandleFunc("POST /v1/sessions", a.authed(a.createSession))
	mux.HandleFunc("POST /v1/sessions/{id}/commands", a.authedCommand(a.sessionCommand))
	mux.HandleFunc("GET /v1/sessions/{id}/events", a.authed(a.sessionEvents))
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		a.writeError(w, r, &domain.Error{Code: domain.CodeNotFound, Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
}

func (b groupBody) change() (service.GroupChange, error) {
	c := service.GroupChange{Name: b.Name, Permissions: b.Permissions, IPAllowlist: b.IPAllowlist}
	if b.Policy != nil {
		// Start from the defaults, so that a policy naming some settings
		// keeps sensible values for the others.
		p := domain.DefaultGroupPolicy()
		if err := service.DecodeStrict(*b.Policy, &p); err != nil {
			return c, err
		}
		c.Policy = &p
	}
	return c, nil
}

func (a *api) createGroup(w http.ResponseWriter, r *http.Request) error {
	var b groupBody
	if err := decode(r, &b); err != nil {
		return err
	}
	c, err := b.change()
	if err != nil {
		return err
	}
	g, err := a.svc.CreateGroup(r.Context(), principal(r), c, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, g)
	return nil
}

func (a *api) updateGroup(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var b groupBody
	if err := decode(r, &b); err != nil {
		return err
	}
	c, err := b.change()
	if err != nil {
		return err
	}
	g, err := a.svc.UpdateGroup(r.Context(), principal(r), id, c, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *api) getGroup(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	g, err := a.svc.Group(r.Context(), principal(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *api) createTechnician(w http.ResponseWriter, r *http.Request) error {
	var b technicianBody
	if err := decode(r, &b); err != nil {
		return err
	}
	t, err := a.svc.CreateTechnician(r.Context(), principal(r), service.NewTechnician{
		Email: b.Email, Name: b.Name, GroupID: b.GroupID, Password: b.Password, MustChangePassword: b.MustChangePassword,
	}, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func optionalReason(r *http.Request) (string, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "", nil
	}
	var b reasonBody
	if err := service.DecodeStrict(body, &b); err != nil {
		return "", err
	}
	return b.Reason, nil
}

func (a *api) unlockTechnician(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if _, err := optionalReason(r); err != nil {
		return err
	}
	t, err := a.svc.UnlockTechnician(r.Context(), principal(r), id, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (a *api) disableTechnician(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	reason, err := optionalReason(r)
	if err != nil {
		return err
	}
	t, err := a.svc.DisableTechnician(r.Context(), principal(r), id, reason, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (a *api) login(w http.ResponseWriter, r *http.Request) error {
	var b loginBody
	if err := decode(r, &b); err != nil {
		return err
	}
	res, err := a.svc.Login(r.Context(), service.LoginRequest{
		Email: b.Email, Password: b.Password, TOTP: b.TOTP, NewPassword: b.NewPassword, Tenant: b.Tenant, IP: a.clientIP(r),
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token": res.Token, "expires_at": res.ExpiresAt.Format(time.RFC3339), "technician_id": res.TechnicianID,
		"tenant": res.Tenant, "scope": res.Scope,
	})
	return nil
}

func (a *api) enrollTOTP(w http.ResponseWriter, r *http.Request) error {
	var b totpBody
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := service.DecodeStrict(body, &b); err != nil {
			return err
		}
	}
	res, err := a.svc.EnrollTOTP(r.Context(), principal(r), b.Code)
	if err != nil {
		return err
	}
	if res.Enrolled {
		writeJSON(w, http.StatusOK, map[string]any{"enrolled": true})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"secret": res.Secret, "otpauth_url": res.OTPAuthURL})
	return nil
}

func (a *api) logout(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.Logout(r.Context(), principal(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) createSession(w http.ResponseWriter, r *http.Request) error {
	var b sessionBody
	if err := decode(r, &b); err != nil {
		return err
	}
	s, err := a.svc.CreateSession(r.Context(), principal(r), service.NewSession{
		Queue: b.Queue, Channel: b.Channel, GroupID: b.GroupID, TechnicianID: b.TechnicianID,
		CustomerName: b.Customer.Name, CustomerEmail: b.Customer.Email, CustomFields: b.CustomFields, TrackingID: b.TrackingID,
	}, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s)
	return nil
}

type appended struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Version  int64           `json:"version"`
	Position int64           `json:"position"`
	Data     json.RawMessage `json:"data"`
}

func (a *api) sessionCommand(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	cmd, err := service.DecodeCommand(body)
	if err != nil {
		return err
	}
	evs, err := a.svc.SessionCommand(r.Context(), principal(r), id, cmd, eventID(r))
	if err != nil {
		return err
	}
	writeAppended(w, evs)
	return nil
}

func (a *api) sessionEvents(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	evs, err := a.svc.SessionTimeline(r.Context(), principal(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
	return nil
}

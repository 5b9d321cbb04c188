package httpapi

import (
	"net/http"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// relayRoutes registers the endpoints a relay running alone (vigil relay)
// asks the backend through, with a relay API key: authorizing a side and
// listing which of its sessions closed. The relay's events travel on the
// bus, not here. Answers never carry the technician's token, and no
// Idempotency-Key is honoured: these are reads.
func (a *api) relayRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/relay/authorize", withoutIdempotency(a.authed(a.relayAuthorize)))
	mux.HandleFunc("POST /v1/relay/closed", withoutIdempotency(a.authed(a.relayClosed)))
}

func (a *api) relayAuthorize(w http.ResponseWriter, r *http.Request) error {
	var b relayAuthorizeBody
	if err := decode(r, &b); err != nil {
		return err
	}
	rel := a.svc.Relay(nil)
	var (
		g   service.RelayGrant
		err error
	)
	switch b.Side {
	case string(domain.RelaySideCustomer):
		g, err = rel.AuthorizeCustomer(r.Context(), principal(r), b.Session)
	case string(domain.RelaySideTechnician):
		if !principal(r).Is(service.RoleRelay) {
			return &domain.Error{Code: domain.CodeForbidden, Message: "relay calls need a relay key", Err: domain.ErrForbidden}
		}
		g, err = rel.AuthorizeTechnician(r.Context(), principal(r), b.Session, b.Token)
	default:
		return domain.Errorf(domain.CodeInvalid, "side %q: want customer or technician", b.Side)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *api) relayClosed(w http.ResponseWriter, r *http.Request) error {
	var b relayClosedBody
	if err := decode(r, &b); err != nil {
		return err
	}
	if len(b.Sessions) > 10000 {
		return domain.Errorf(domain.CodeInvalid, "at most 10000 sessions per call")
	}
	closed, err := a.svc.Relay(nil).ClosedSessions(r.Context(), principal(r), b.Sessions)
	if err != nil {
		return err
	}
	if closed == nil {
		closed = []service.RelaySession{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"closed": closed})
	return nil
}

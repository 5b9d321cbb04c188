package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// GatewaysService is the gateway registry (service.Gateways).
type GatewaysService interface {
	Heartbeat(ctx context.Context, p service.Principal, hb service.GatewayHeartbeat) error
	List(ctx context.Context, guid string) ([]service.Gateway, error)
}

var _ GatewaysService = (*service.Gateways)(nil)

// gatewayHeartbeatBody is a relay node's registration and heartbeat.
type gatewayHeartbeatBody = service.GatewayHeartbeat

// gatewayRoutes registers the registry's endpoints: a relay's heartbeat
// (a relay key) and the list an applet downloads before choosing a
// gateway, authenticated by its session GUID ("Authorization: Session
// <guid>", the only secret the applet holds).
func (a *api) gatewayRoutes(mux *http.ServeMux) {
	if a.gateways == nil {
		return
	}
	mux.HandleFunc("POST /v1/gateways/heartbeat", withoutIdempotency(a.authed(a.gatewayHeartbeat)))
	mux.HandleFunc("GET /v1/gateways", a.gatewayList)
}

func (a *api) gatewayHeartbeat(w http.ResponseWriter, r *http.Request) error {
	var b gatewayHeartbeatBody
	if err := decode(r, &b); err != nil {
		return err
	}
	if err := a.gateways.Heartbeat(r.Context(), principal(r), b); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) gatewayList(w http.ResponseWriter, r *http.Request) {
	guid, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Session ")
	guid = strings.TrimSpace(guid)
	if !ok || guid == "" {
		w.Header().Set("WWW-Authenticate", `Session realm="vigil"`)
		a.writeError(w, r, &domain.Error{Code: domain.CodeUnauthenticated, Message: "missing session credential (Authorization: Session <guid>)"})
		return
	}
	if err := service.CheckID("session", guid); err != nil {
		a.writeError(w, r, err)
		return
	}
	gws, err := a.gateways.List(r.Context(), guid)
	if err != nil {
		if domain.ErrorCode(err) == domain.CodeNotFound {
			// An unknown GUID is a bad credential: never say which exist.
			err = &domain.Error{Code: domain.CodeUnauthenticated, Message: "unknown session", Err: domain.ErrUnauthenticated}
		}
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"gateways": gws})
}

package httpapi_test

import (
	"context"
	"net/http/httptest"
	"testing"

	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/domain/service"
)

// TestGatewayAndLensEndpoints: a relay key heartbeats, the applet lists
// the gateways with its session GUID (anything else is unauthenticated),
// and only a media key reports Lens.
func TestGatewayAndLensEndpoints(t *testing.T) {
	e := newEnv(t)
	locate := service.SessionLocatorFunc(func(context.Context, string) (string, error) { return e.tenant, nil })
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, Gateways: e.svc.Gateways(e.store, locate, 0)}))
	t.Cleanup(srv.Close)
	e.srv = srv
	_, sid, _ := e.session(nil, nil)
	_, relayKey, err := e.svc.CreateAPIKey(context.Background(), e.tenant, service.RoleRelay, "relay")
	if err != nil {
		t.Fatal(err)
	}
	_, mediaKey, err := e.svc.CreateAPIKey(context.Background(), e.tenant, service.RoleMedia, "lens")
	if err != nil {
		t.Fatal(err)
	}

	hb := map[string]any{"id": "gw-1", "address": "gw1.example.com:443", "udp_address": "gw1.example.com:3478", "capacity": 100, "load": 3}
	e.want(e.do("POST", "/v1/gateways/heartbeat", relayKey, hb), 204, "")
	e.want(e.do("POST", "/v1/gateways/heartbeat", e.admin, hb), 403, "forbidden")
	e.want(e.do("POST", "/v1/gateways/heartbeat", relayKey, map[string]any{"id": "gw-1", "address": "x:1", "capacity": 1, "color": "red"}), 400, "invalid")

	e.want(e.do("GET", "/v1/gateways", "", nil), 401, "unauthenticated")
	e.want(e.do("GET", "/v1/gateways", "", nil, hdr{"Authorization": "Session 0123456789abcdef0123456789abcdef"}), 401, "unauthenticated")
	e.want(e.do("GET", "/v1/gateways", "", nil, hdr{"Authorization": "Session ../etc"}), 400, "invalid")
	list := e.want(e.do("GET", "/v1/gateways", "", nil, hdr{"Authorization": "Session " + sid}), 200, "")
	gws, _ := list.body["gateways"].([]any)
	if len(gws) != 1 || gws[0].(map[string]any)["id"] != "gw-1" || gws[0].(map[string]any)["udp_address"] != "gw1.example.com:3478" {
		t.Errorf("gateways: %s", list.raw)
	}

	lens := func(cred string, body map[string]any) resp {
		return e.do("POST", "/v1/sessions/"+sid+"/lens", cred, body)
	}
	e.want(lens(mediaKey, map[string]any{"type": "conference_created", "conference_id": "c1"}), 200, "")
	e.want(lens(e.ingest, map[string]any{"type": "conference_created", "conference_id": "c2"}), 403, "forbidden")
	e.want(lens(mediaKey, map[string]any{"type": "participant_joined", "conference_id": "c1", "participant": "lens_app"}), 200, "")
	e.want(lens(mediaKey, map[string]any{"type": "participant_joined", "conference_id": "c1", "participant": "ghost"}), 400, "invalid")
	// The harness's group grants no lens_camera.
	e.want(lens(mediaKey, map[string]any{"type": "stream_started", "conference_id": "c1"}), 403, "permission_denied")
	if last := lastEvent(e.events("session-" + sid)); last.Type != "session.action_denied" {
		t.Errorf("a refused camera appended %s, want session.action_denied", last.Type)
	}
}

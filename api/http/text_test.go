package httpapi_test

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/localfs"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/webhooks"
	"golang.org/x/mod/sumdb/note"
)

// edgeEnv is the webhook env serving every endpoint: webhooks, GDPR and
// recordings too, so that each edge is tried through the real handler.
type edgeEnv struct {
	*whEnv
	tech, sid, grp string // a technician's token, a session it holds, its group
	other          string // another tenant's group
}

func newEdgeEnv(t *testing.T) *edgeEnv {
	t.Helper()
	w := newWebhookEnv(t)
	blobs, err := localfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	recs := service.NewRecordings(w.svc, service.RecordingsConfig{Blobs: blobs, Keys: w.ledger.Sealer(), Index: w.store})
	skey, _, _ := note.GenerateKey(rand.Reader, "vigil.test")
	signer, _ := note.NewSigner(skey)
	gdpr := compliance.NewGDPR(compliance.GDPRConfig{Pool: w.cfg.Pool, Ledger: w.ledger, Credentials: w.store, Signer: signer})
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: w.svc, Webhooks: webhooks.NewService(w.cfg), GDPR: gdpr, Recordings: recs}))
	t.Cleanup(srv.Close)
	w.srv = srv
	e := &edgeEnv{whEnv: w}
	e.grp = e.group(nil, nil)
	e.technician(e.grp, "edge@example.com")
	e.tech = e.token("edge@example.com")
	e.sid = e.want(e.do("POST", "/v1/sessions", e.tech, map[string]any{"queue": "shared", "channel": "web"}), 201, "").str("id")
	e.want(e.command(e.ingest, e.sid, map[string]any{"type": "connect_customer", "platform": "windows"}), 200, "")
	e.want(e.command(e.tech, e.sid, map[string]any{"type": "pick_up"}), 200, "")
	// A group of the other tenant.
	g := e.want(e.do("POST", "/v1/groups", e.otherAdmin, map[string]any{"name": "Theirs"}), 201, "")
	e.other = g.str("id")
	return e
}

// TestEdgesRefuseBadText sends every kind of text the API must refuse at
// its edge (issue 13, items 3, 8 and 9): each answers 400 invalid in the
// JSON error form, and nothing is appended to the log.
func TestEdgesRefuseBadText(t *testing.T) {
	e := newEdgeEnv(t)
	nul := "a\u0000b"
	cmds := "/v1/sessions/" + e.sid + "/commands"
	long := strings.Repeat("a", 500<<10)
	type tc struct {
		name, method, path, cred string
		body                     any // string: sent as is
		header                   hdr
	}
	cases := []tc{
		// NUL in text (item 3).
		{"session channel NUL", "POST", "/v1/sessions", e.tech, map[string]any{"queue": "shared", "channel": nul}, nil},
		{"session tracking_id NUL", "POST", "/v1/sessions", e.tech, map[string]any{"queue": "shared", "tracking_id": nul}, nil},
		{"session custom field NUL", "POST", "/v1/sessions", e.tech, map[string]any{"queue": "shared", "custom_fields": map[string]string{"cfield0": nul}}, nil},
		{"session custom field name NUL", "POST", "/v1/sessions", e.tech, map[string]any{"queue": "shared", "custom_fields": map[string]string{nul: "v"}}, nil},
		{"session customer name NUL", "POST", "/v1/sessions", e.tech, map[string]any{"queue": "shared", "customer": map[string]string{"name": nul}}, nil},
		{"session customer e-mail NUL", "POST", "/v1/sessions", e.tech, map[string]any{"queue": "shared", "customer": map[string]string{"email": "a\u0000@example.com"}}, nil},
		{"session group_id NUL", "POST", "/v1/sessions", e.ingest, map[string]any{"queue": "shared", "group_id": nul}, nil},
		{"session channel newline", "POST", "/v1/sessions", e.tech, map[string]any{"queue": "shared", "channel": "a\nb"}, nil},
		{"session channel C1", "POST", "/v1/sessions", e.tech, map[string]any{"queue": "shared", "channel": "a\u009bb"}, nil},
		{"chat NUL", "POST", cmds, e.tech, map[string]any{"type": "chat", "from": "technician", "text": nul}, nil},
		{"chat escape sequence", "POST", cmds, e.tech, map[string]any{"type": "chat", "from": "technician", "text": "\u001b[2J"}, nil},
		{"chat too long", "POST", cmds, e.tech, map[string]any{"type": "chat", "from": "technician", "text": strings.Repeat("x", 10001)}, nil},
		{"note NUL", "POST", cmds, e.tech, map[string]any{"type": "note", "text": nul}, nil},
		{"set_custom_fields NUL", "POST", cmds, e.tech, map[string]any{"type": "set_custom_fields", "custom_fields": map[string]string{"cfield1": nul}}, nil},
		{"recording_id NUL", "POST", cmds, e.tech, map[string]any{"type": "start_recording", "recording_id": nul}, nil},
		{"close reason NUL", "POST", cmds, e.tech, map[string]any{"type": "close", "reason": nul}, nil},
		{"send_file name NUL", "POST", cmds, e.tech, map[string]any{"type": "send_file", "name": nul, "size": 1, "md5": strings.Repeat("a", 32), "sha256": strings.Repeat("b", 64)}, nil},
		{"group name NUL", "POST", "/v1/groups", e.admin, map[string]any{"name": nul}, nil},
		{"technician name NUL", "POST", "/v1/technicians", e.admin, map[string]any{"email": "n@example.com", "name": nul, "group_id": e.grp, "password": goodPassword}, nil},
		{"login e-mail NUL", "POST", "/v1/auth/login", "", map[string]any{"email": nul, "password": "x"}, nil},
		{"login tenant NUL", "POST", "/v1/auth/login", "", map[string]any{"email": "edge@example.com", "password": "x", "tenant": "\u0000"}, nil},
		{"disable reason NUL", "POST", "/v1/technicians/nobody/disable", e.admin, map[string]any{"reason": nul}, nil},
		{"erasure reason NUL", "POST", "/v1/gdpr/erasures", e.admin, map[string]any{"subject": "session:" + e.sid, "reason": nul}, nil},
		{"export subject NUL", "POST", "/v1/gdpr/exports", e.admin, map[string]any{"subject": "session:" + nul}, nil},
		// NUL in ids of bodies (item 8).
		{"to_technician NUL", "POST", cmds, e.tech, map[string]any{"type": "transfer", "to_technician": nul}, nil},
		{"webhook description NUL", "POST", "/v1/webhooks", e.admin, map[string]any{"url": "https://example.com/hook", "description": nul}, nil},
		{"webhook group_id NUL", "POST", "/v1/webhooks", e.admin, map[string]any{"url": "https://example.com/hook", "group_id": nul}, nil},
		// Path ids (item 8).
		{"group %00", "GET", "/v1/groups/%00", e.admin, nil, nil},
		{"group %ff%fe patch", "PATCH", "/v1/groups/%ff%fe", e.admin, map[string]any{"name": "x"}, nil},
		{"technician %00 unlock", "POST", "/v1/technicians/%00/unlock", e.admin, nil, nil},
		{"technician %ff disable", "POST", "/v1/technicians/%ff/disable", e.admin, nil, nil},
		{"session %00 events", "GET", "/v1/sessions/%00/events", e.admin, nil, nil},
		{"session %ff%fe command", "POST", "/v1/sessions/%ff%fe/commands", e.tech, map[string]any{"type": "pick_up"}, nil},
		{"session %00 recording", "POST", "/v1/sessions/%00/recordings?recording_id=r", e.ingest, "frames", hdr{"Content-Type": "video/webm"}},
		{"recording %ff%fe", "GET", "/v1/recordings/%ff%fe", e.admin, nil, nil},
		{"recording ..%2f..", "GET", "/v1/recordings/..%2f..%2fetc%2fpasswd", e.admin, nil, nil},
		{"webhook %00", "GET", "/v1/webhooks/%00", e.admin, nil, nil},
		{"webhook %00 delete", "DELETE", "/v1/webhooks/%00", e.admin, nil, nil},
		{"erasure %ff", "GET", "/v1/gdpr/erasures/%ff", e.admin, nil, nil},
		{"erasure revoke reason NUL", "DELETE", "/v1/gdpr/erasures/x?reason=a%00b", e.admin, nil, nil},
		// Loose input (item 9).
		{"webhook missing group", "POST", "/v1/webhooks", e.admin, map[string]any{"url": "https://example.com/hook", "group_id": "nosuchgroup"}, nil},
		{"webhook other tenant's group", "POST", "/v1/webhooks", e.admin, map[string]any{"url": "https://example.com/hook", "group_id": e.other}, nil},
		{"webhook port 65536", "POST", "/v1/webhooks", e.admin, map[string]any{"url": "https://example.com:65536/h"}, nil},
		{"webhook port 99999999999999999999", "POST", "/v1/webhooks", e.admin, map[string]any{"url": "https://example.com:99999999999999999999/h"}, nil},
		{"webhook port 0", "POST", "/v1/webhooks", e.admin, map[string]any{"url": "https://example.com:0/h"}, nil},
		{"webhook IPv6 port 65536", "POST", "/v1/webhooks", e.admin, map[string]any{"url": "https://[2001:db8::1]:65536/h"}, nil},
		{"start_recording ../../etc/passwd", "POST", cmds, e.tech, map[string]any{"type": "start_recording", "recording_id": "../../etc/passwd"}, nil},
		{"start_recording 500 KB id", "POST", cmds, e.tech, map[string]any{"type": "start_recording", "recording_id": long}, nil},
		{"upload ../../etc/passwd", "POST", "/v1/sessions/" + e.sid + "/recordings?recording_id=..%2f..%2fetc%2fpasswd", e.ingest, "frames", hdr{"Content-Type": "video/webm"}},
		{"upload invalid Content-Type", "POST", "/v1/sessions/" + e.sid + "/recordings?recording_id=r1", e.ingest, "frames", hdr{"Content-Type": "video/\xff"}},
		{"invalid UTF-8 group name", "POST", "/v1/groups", e.admin, "{\"name\": \"\xff\xfe\"}", nil},
		{"invalid UTF-8 chat", "POST", cmds, e.tech, "{\"type\": \"chat\", \"from\": \"technician\", \"text\": \"\xff\"}", nil},
		{"invalid UTF-8 note", "POST", cmds, e.tech, "{\"type\": \"note\", \"text\": \"\xc3\x28\"}", nil},
		{"encoded surrogate channel", "POST", "/v1/sessions", e.tech, "{\"queue\": \"shared\", \"channel\": \"\xed\xa0\x80\"}", nil},
		{"invalid UTF-8 webhook description", "POST", "/v1/webhooks", e.admin, "{\"url\": \"https://example.com/h\", \"description\": \"\xff\"}", nil},
		{"invalid UTF-8 login", "POST", "/v1/auth/login", "", "{\"email\": \"\xff@example.com\", \"password\": \"\xfe\"}", nil},
		{"lone surrogate escape note", "POST", cmds, e.tech, `{"type": "note", "text": "a\ud800b"}`, nil},
		{"lone surrogate escape channel", "POST", "/v1/sessions", e.tech, `{"queue": "shared", "channel": "\udfff"}`, nil},
		{"replacement character escape", "POST", cmds, e.tech, `{"type": "note", "text": "\ufffd"}`, nil},
		{"null session", "POST", "/v1/sessions", e.tech, "null", nil},
		{"null group", "POST", "/v1/groups", e.admin, "null", nil},
		{"null technician", "POST", "/v1/technicians", e.admin, "null", nil},
		{"null command", "POST", cmds, e.tech, "null", nil},
		{"null webhook", "POST", "/v1/webhooks", e.admin, "null", nil},
		{"null webhook change", "PATCH", "/v1/webhooks/00000000-0000-0000-0000-000000000000", e.admin, "null", nil},
		{"null erasure", "POST", "/v1/gdpr/erasures", e.admin, "null", nil},
		{"null export", "POST", "/v1/gdpr/exports", e.admin, "null", nil},
		{"null login", "POST", "/v1/auth/login", "", "null", nil},
		{"null unlock reason", "POST", "/v1/technicians/x/unlock", e.admin, "null", nil},
		{"null totp", "POST", "/v1/auth/totp/enroll", e.tech, " null ", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			before := e.head()
			r := e.do(c.method, c.path, c.cred, c.body, c.header)
			if r.status != 400 || r.code() != "invalid" {
				t.Fatalf("got %d %.300s, want 400 invalid", r.status, r.raw)
			}
			if msg, _ := r.body["error"].(map[string]any)["message"].(string); msg == "" || strings.ContainsRune(msg, 0) {
				t.Errorf("error without a clean message: %.300s", r.raw)
			}
			if after := e.head(); after != before {
				t.Errorf("a refused request appended %d events", after-before)
			}
		})
	}
	e.t = t

	// Good text still passes: line feeds and tabs in free text, an
	// existing group of the tenant in a webhook.
	e.want(e.command(e.tech, e.sid, map[string]any{"type": "note", "text": "two\nlines\tand a tab, 日本語 🙂"}), 200, "")
	e.want(e.do("POST", "/v1/webhooks", e.admin, map[string]any{"url": "https://example.com:8443/hook", "group_id": e.grp}), 201, "")
}

// TestSessionChannelNUL is issue 13's reproduction: the NUL that stopped
// the reporting and subjects projections for every tenant is refused.
func TestSessionChannelNUL(t *testing.T) {
	e := newEnv(t)
	g := e.group(nil, nil)
	e.technician(g, "nul@example.com")
	tok := e.token("nul@example.com")
	before := e.head()
	r := e.do("POST", "/v1/sessions", tok, `{"queue":"shared","channel":"a\u0000b"}`)
	e.want(r, 400, "invalid")
	if e.head() != before {
		t.Error("the refused session was appended")
	}
}

// TestWrongRoleIsForbidden: the GDPR and webhook endpoints answer a role
// they do not serve with 403 forbidden, as docs/api.md says.
func TestWrongRoleIsForbidden(t *testing.T) {
	e := newEdgeEnv(t)
	for _, c := range []struct{ method, path, cred string }{
		{"POST", "/v1/webhooks", e.ingest}, {"GET", "/v1/webhooks", e.tech},
		{"POST", "/v1/gdpr/exports", e.ingest}, {"POST", "/v1/gdpr/erasures", e.integration},
		{"GET", "/v1/gdpr/erasures/00000000-0000-0000-0000-000000000000", e.tech},
	} {
		var body any
		if c.method == "POST" {
			body = map[string]any{"url": "https://example.com/h"}
			if strings.HasPrefix(c.path, "/v1/gdpr") {
				body = map[string]any{"subject": "session:" + e.sid}
			}
		}
		e.want(e.do(c.method, c.path, c.cred, body), 403, "forbidden")
	}
}

// TestServerErrorsAreJSON: the answers net/http's server writes before any
// handler (a NUL in a header) take the JSON error form through
// JSONErrorListener, and an ordinary answer passes untouched.
func TestServerErrorsAreJSON(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewUnstartedServer(httpapi.New(httpapi.Options{Service: e.svc}))
	srv.Listener = httpapi.JSONErrorListener(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	raw := func(req string) (*http.Response, []byte) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The server may answer and close before it read everything.
		go func() { _, _ = io.WriteString(c, req) }()
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, b
	}
	for _, c := range []struct {
		name, req string
		status    int
		code      string
	}{
		{"NUL in Authorization", "GET /v1/groups/x HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer \x00" + e.admin + "\r\n\r\n", 400, "invalid"},
		{"NUL in another header", "GET /readyz HTTP/1.1\r\nHost: vigil\r\nX-Trace: a\x00b\r\n\r\n", 400, "invalid"},
		{"bad header name", "GET /readyz HTTP/1.1\r\nHost: vigil\r\nX Trace: a\r\n\r\n", 400, "invalid"},
		{"no Host", "GET /readyz HTTP/1.1\r\n\r\n", 400, "invalid"},
		{"unsupported transfer encoding", "POST /v1/groups HTTP/1.1\r\nHost: vigil\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "invalid"},
		{"headers too large", "GET /readyz HTTP/1.1\r\nHost: vigil\r\nX-Big: " + strings.Repeat("a", 1<<20+8192) + "\r\n\r\n", 431, "too_large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, b := raw(c.req)
			if res.StatusCode != c.status || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %s %q, want %d in JSON", res.StatusCode, res.Header.Get("Content-Type"), b, c.status)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(b, &body); err != nil || body.Error.Code != c.code || body.Error.Message == "" {
				t.Fatalf("body %q (%v), want the JSON error form with code %s", b, err, c.code)
			}
		})
	}
	// Ordinary answers, errors included, pass as the handler wrote them.
	res, b := raw("GET /v1/groups/x HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n")
	if res.StatusCode != 401 || !strings.Contains(string(b), `"unauthenticated"`) {
		t.Errorf("ordinary answer changed: %d %s", res.StatusCode, b)
	}
	res, b = raw("GET /healthz HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n")
	if res.StatusCode != 200 || !strings.Contains(string(b), `"ok"`) {
		t.Errorf("health answer changed: %d %s", res.StatusCode, b)
	}
}

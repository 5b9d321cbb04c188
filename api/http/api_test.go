package httpapi_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

func TestGroupsAndTechnicians(t *testing.T) {
	e := newEnv(t)
	g := e.group(nil, map[string]any{"store_chat": false, "lockout_threshold": 3}, "10.0.0.0/8")
	got := e.want(e.do("GET", "/v1/groups/"+g, e.admin, nil), 200, "")
	policy := got.body["policy"].(map[string]any)
	if policy["store_chat"] != false || policy["lockout_threshold"] != float64(3) || policy["lockout_duration_s"] != float64(900) {
		t.Errorf("policy %v: want the overrides on top of the defaults", policy)
	}
	if diff := cmp.Diff([]any{"10.0.0.0/8"}, got.body["ip_allowlist"]); diff != "" {
		t.Errorf("allowlist: %s", diff)
	}
	patched := e.want(e.do("PATCH", "/v1/groups/"+g, e.admin, map[string]any{"ip_allowlist": []string{}, "permissions": map[string]bool{"reboot": true}}), 200, "")
	if perms := patched.body["permissions"].(map[string]any); perms["reboot"] != true || perms["remote_control"] != false {
		t.Errorf("patched permissions %v", perms)
	}
	if types := types(e.events(domain.GroupStream(g))); !cmp.Equal(types, []string{"group.created", "group.ip_allowlist_changed", "group.permissions_changed", "group.ip_allowlist_changed"}) {
		t.Errorf("group events %v", types)
	}

	id := e.technician(g, "Ada@Example.com")
	evs := e.events(domain.TechnicianStream(id))
	if len(evs) != 1 || evs[0].Type != "technician.created" {
		t.Fatalf("technician events %v", types(evs))
	}
	// The name and e-mail are sealed: never in the public data.
	if strings.Contains(string(evs[0].Data), "ada") || strings.Contains(string(evs[0].Data), "Tech") {
		t.Errorf("personal data in public fields: %s", evs[0].Data)
	}

	cases := []struct {
		name   string
		cred   string
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{"DuplicateEmail", e.admin, "POST", "/v1/technicians", map[string]any{"email": "ada@example.com", "name": "Other", "group_id": g, "password": goodPassword}, 409, "conflict"},
		{"WeakPassword", e.admin, "POST", "/v1/technicians", map[string]any{"email": "b@example.com", "name": "B", "group_id": g, "password": "short"}, 422, "weak_password"},
		{"UnknownGroup", e.admin, "POST", "/v1/technicians", map[string]any{"email": "c@example.com", "name": "C", "group_id": "nope", "password": goodPassword}, 404, "not_found"},
		{"BadEmail", e.admin, "POST", "/v1/technicians", map[string]any{"email": "not-an-address", "name": "C", "group_id": g, "password": goodPassword}, 400, "invalid"},
		{"MissingField", e.admin, "POST", "/v1/technicians", map[string]any{"email": "d@example.com", "group_id": g, "password": goodPassword}, 400, "invalid"},
		{"UnknownField", e.admin, "POST", "/v1/groups", map[string]any{"name": "x", "colour": "red"}, 400, "invalid"},
		{"WrongType", e.admin, "POST", "/v1/groups", map[string]any{"name": 7}, 400, "invalid"},
		{"MalformedJSON", e.admin, "POST", "/v1/groups", `{"name": "x"`, 400, "invalid"},
		{"TrailingJSON", e.admin, "POST", "/v1/groups", `{"name": "x"} {}`, 400, "invalid"},
		{"EmptyBody", e.admin, "POST", "/v1/groups", "", 400, "invalid"},
		{"BadPolicy", e.admin, "POST", "/v1/groups", map[string]any{"name": "x", "policy": map[string]any{"lockout_threshold": 0}}, 400, "invalid"},
		{"BadCIDR", e.admin, "POST", "/v1/groups", map[string]any{"name": "x", "ip_allowlist": []string{"10.0.0.300/8"}}, 400, "invalid"},
		{"UnknownPolicyField", e.admin, "POST", "/v1/groups", map[string]any{"name": "x", "policy": map[string]any{"chat": true}}, 400, "invalid"},
		{"IngestIsNotAdmin", e.ingest, "POST", "/v1/groups", map[string]any{"name": "x"}, 403, "forbidden"},
		{"NoCredential", "", "POST", "/v1/groups", map[string]any{"name": "x"}, 401, "unauthenticated"},
		{"GarbageCredential", "vk_nope", "GET", "/v1/groups/" + g, nil, 401, "unauthenticated"},
		{"UnknownEndpoint", e.admin, "GET", "/v1/frobnicate", nil, 404, "not_found"},
		{"UnknownGroupGet", e.admin, "GET", "/v1/groups/nope", nil, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.head()
			e.want(e.do(c.method, c.path, c.cred, c.body), c.status, c.code)
			if after := e.head(); after != before {
				t.Errorf("a refused request appended %d events", after-before)
			}
		})
	}
	weak := e.do("POST", "/v1/technicians", e.admin, map[string]any{"email": "w@example.com", "name": "W", "group_id": g, "password": "aaaaaaaaaaaa"})
	if d, _ := weak.body["error"].(map[string]any)["details"].(map[string]any); d == nil || d["strength"] == nil {
		t.Errorf("weak password answer without a strength score: %s", weak.raw)
	}
}

func TestLoginLockoutAndUnlock(t *testing.T) {
	e := newEnv(t)
	g := e.group(nil, nil)
	id := e.technician(g, "lock@example.com")
	tok := e.want(e.login("lock@example.com", goodPassword), 200, "")
	if tok.str("token") == "" || tok.str("scope") != "full" || tok.str("technician_id") != id {
		t.Fatalf("login answer %s", tok.raw)
	}
	e.want(e.login("nobody@example.com", goodPassword), 401, "unauthenticated")
	for i := 0; i < 5; i++ {
		e.want(e.login("lock@example.com", "Wrong-Password-123"), 401, "unauthenticated")
	}
	// Locked now: even the right password is refused.
	e.want(e.login("lock@example.com", goodPassword), 423, "locked_out")
	evs := types(e.events(domain.TechnicianStream(id)))
	want := []string{"technician.created", "technician.login_succeeded",
		"technician.login_failed", "technician.login_failed", "technician.login_failed", "technician.login_failed", "technician.login_failed",
		"technician.locked_out", "technician.login_failed"}
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	// The password never reaches the log.
	for _, ev := range e.events(domain.TechnicianStream(id)) {
		if strings.Contains(string(ev.Data), "Wrong-Password") || strings.Contains(string(ev.Data), goodPassword) {
			t.Fatalf("password in the log: %s", ev.Data)
		}
	}
	e.want(e.do("POST", "/v1/technicians/"+id+"/unlock", e.admin, nil), 200, "")
	e.want(e.login("lock@example.com", goodPassword), 200, "")

	// A lockout also ends by itself after the group's duration.
	for i := 0; i < 5; i++ {
		e.want(e.login("lock@example.com", "Wrong-Password-123"), 401, "")
	}
	e.want(e.login("lock@example.com", goodPassword), 423, "locked_out")
	e.clock.Advance(16 * time.Minute)
	e.want(e.login("lock@example.com", goodPassword), 200, "")

	// Disabled: refused, and its tokens end.
	tk := e.token("lock@example.com")
	e.want(e.do("POST", "/v1/technicians/"+id+"/disable", e.admin, map[string]any{"reason": "left"}), 200, "")
	e.want(e.login("lock@example.com", goodPassword), 403, "disabled")
	e.want(e.do("POST", "/v1/sessions", tk, map[string]any{"queue": "shared"}), 401, "unauthenticated")
}

func TestIPAllowlistAndTrustedProxies(t *testing.T) {
	e := newEnv(t, func(o *envOptions) { o.proxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	g := e.group(nil, nil, "10.0.0.0/8")
	id := e.technician(g, "ip@example.com")
	// The test client connects from 127.0.0.1, a trusted proxy, with no
	// forwarded address: 127.0.0.1 is outside the allowlist.
	e.want(e.login("ip@example.com", goodPassword), 403, "ip_not_allowed")
	ok := e.do("POST", "/v1/auth/login", "", map[string]any{"email": "ip@example.com", "password": goodPassword}, hdr{"X-Forwarded-For": "10.1.2.3"})
	e.want(ok, 200, "")
	spoof := e.do("POST", "/v1/auth/login", "", map[string]any{"email": "ip@example.com", "password": goodPassword}, hdr{"X-Forwarded-For": "10.1.2.3, 192.0.2.7"})
	e.want(spoof, 403, "ip_not_allowed") // the nearest untrusted hop counts
	evs := e.events(domain.TechnicianStream(id))
	last := evs[len(evs)-1]
	if last.Type != "technician.login_failed" || !strings.Contains(string(last.Data), "ip_not_allowed") {
		t.Errorf("last event %s %s", last.Type, last.Data)
	}

	// Without trusted proxies, X-Forwarded-For is ignored.
	e2 := newEnv(t)
	g2 := e2.group(nil, nil, "10.0.0.0/8")
	e2.technician(g2, "ip@example.com")
	e2.want(e2.do("POST", "/v1/auth/login", "", map[string]any{"email": "ip@example.com", "password": goodPassword}, hdr{"X-Forwarded-For": "10.1.2.3"}), 403, "ip_not_allowed")
}

func TestTOTPEnrolmentAndEnforcement(t *testing.T) {
	e := newEnv(t)
	g := e.group(nil, map[string]any{"require_second_factor": true})
	id := e.technician(g, "totp@example.com")
	first := e.want(e.login("totp@example.com", goodPassword), 200, "")
	if first.str("scope") != "totp_enroll" {
		t.Fatalf("scope %q before enrolment", first.str("scope"))
	}
	tok := first.str("token")
	// The enrolment-only token can do nothing else.
	e.want(e.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}), 403, "forbidden")
	e.want(e.do("POST", "/v1/auth/totp/enroll", tok, map[string]any{"code": "123456"}), 409, "conflict")
	enr := e.want(e.do("POST", "/v1/auth/totp/enroll", tok, nil), 200, "")
	secret := enr.str("secret")
	if secret == "" || !strings.HasPrefix(enr.str("otpauth_url"), "otpauth://totp/") {
		t.Fatalf("enrolment answer %s", enr.raw)
	}
	e.want(e.do("POST", "/v1/auth/totp/enroll", tok, map[string]any{"code": "000000"}), 401, "unauthenticated")
	code := func() string {
		c, err := totp.GenerateCodeCustom(secret, e.clock.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	e.want(e.do("POST", "/v1/auth/totp/enroll", tok, map[string]any{"code": code()}), 200, "")
	// The same token now has full scope.
	e.want(e.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}), 201, "")

	e.want(e.login("totp@example.com", goodPassword), 401, "unauthenticated")
	e.want(e.login("totp@example.com", goodPassword, map[string]any{"totp": "999999"}), 401, "unauthenticated")
	// The code that confirmed the enrolment is used up: the next step's.
	e.clock.Advance(30 * time.Second)
	full := e.want(e.login("totp@example.com", goodPassword, map[string]any{"totp": code()}), 200, "")
	if full.str("scope") != "full" {
		t.Errorf("scope %q after enrolment", full.str("scope"))
	}
	evs := types(e.events(domain.TechnicianStream(id)))
	if !contains(evs, "technician.two_factor_enrolled") || count(evs, "technician.login_failed") != 2 {
		t.Errorf("events %v", evs)
	}
	// The secret is not in the log.
	for _, ev := range e.events(domain.TechnicianStream(id)) {
		if strings.Contains(string(ev.Data), secret) {
			t.Fatal("TOTP secret in the log")
		}
	}
}

func contains(s []string, v string) bool { return count(s, v) > 0 }

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestForcedPasswordChangeAndTokenExpiry(t *testing.T) {
	e := newEnv(t)
	g := e.group(nil, map[string]any{"console_inactivity_timeout_s": 600})
	id := e.technician(g, "pw@example.com", map[string]any{"must_change_password": true})
	e.want(e.login("pw@example.com", goodPassword), 403, "password_change_required")
	e.want(e.login("pw@example.com", goodPassword, map[string]any{"new_password": "weak"}), 422, "weak_password")
	next := "Another-Good-Passw0rd"
	tok := e.want(e.login("pw@example.com", goodPassword, map[string]any{"new_password": next}), 200, "").str("token")
	e.want(e.login("pw@example.com", goodPassword), 401, "unauthenticated")
	e.want(e.login("pw@example.com", next), 200, "")
	if !contains(types(e.events(domain.TechnicianStream(id))), "technician.password_changed") {
		t.Error("no password_changed event")
	}

	// The token slides with use and expires after 10 minutes without.
	e.clock.Advance(9 * time.Minute)
	e.want(e.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}), 201, "")
	e.clock.Advance(9 * time.Minute)
	e.want(e.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}), 201, "")
	e.clock.Advance(11 * time.Minute)
	e.want(e.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}), 401, "unauthenticated")
	res, err := e.svc.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.TechniciansLogged < 1 {
		t.Errorf("scheduler logged out %d technicians", res.TechniciansLogged)
	}
	evs := e.events(domain.TechnicianStream(id))
	last := evs[len(evs)-1]
	if last.Type != "technician.logged_out" || !strings.Contains(string(last.Data), "inactivity") {
		t.Errorf("last event %s %s", last.Type, last.Data)
	}
	// Logging out explicitly ends a token.
	tok2 := e.token2("pw@example.com", next)
	e.want(e.do("POST", "/v1/auth/logout", tok2, nil), 204, "")
	e.want(e.do("POST", "/v1/auth/logout", tok2, nil), 401, "unauthenticated")
}

func (e *env) token2(email, pw string) string {
	e.t.Helper()
	return e.want(e.login(email, pw), 200, "").str("token")
}

// session sets up a session picked up by a technician of a group with
// perms and policy, and returns the technician's token and the session id.
func (e *env) session(perms map[string]bool, policy map[string]any) (tok, sid, gid string) {
	e.t.Helper()
	gid = e.group(perms, policy)
	email := "t" + strings.ToLower(gid[:6]) + "@example.com"
	e.technician(gid, email)
	tok = e.token(email)
	created := e.want(e.do("POST", "/v1/sessions", tok, map[string]any{
		"queue": "shared", "channel": "web", "customer": map[string]any{"name": "Grace Hopper", "email": "grace@example.com"},
		"custom_fields": map[string]string{"cfield0": "ticket 4711"}, "tracking_id": "T-4711",
	}), 201, "")
	sid = created.str("id")
	if len(sid) != 32 || len(created.str("pin")) != 6 {
		e.t.Fatalf("session answer %s", created.raw)
	}
	e.want(e.command(e.ingest, sid, map[string]any{"type": "connect_customer", "platform": "windows", "ip": "192.0.2.10"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "pick_up"}), 200, "")
	return tok, sid, gid
}

func lastEvent(evs []domain.Event) domain.Event { return evs[len(evs)-1] }

func TestSessionRulesAreEnforcedAndAudited(t *testing.T) {
	e := newEnv(t)
	perms := map[string]bool{}
	for k, v := range allPermissions {
		perms[k] = v
	}
	perms["file_transfer"] = false
	tok, sid, _ := e.session(perms, map[string]any{"one_time_prompt_allowed": true})
	stream := domain.SessionStream(sid)

	// No consent yet: refused, and the refusal is in the log.
	e.want(e.command(tok, sid, map[string]any{"type": "start", "action": "remote_control"}), 409, "consent_required")
	denied := lastEvent(e.events(stream))
	if denied.Type != "session.action_denied" || !strings.Contains(string(denied.Data), "consent_required") {
		t.Fatalf("last event %s %s", denied.Type, denied.Data)
	}
	// No permission: refused and audited the same way.
	e.want(e.command(tok, sid, map[string]any{"type": "send_file", "name": "a.txt", "size": 3, "md5": strings.Repeat("a", 32), "sha256": strings.Repeat("b", 64)}), 403, "permission_denied")
	if ev := lastEvent(e.events(stream)); ev.Type != "session.action_denied" || !strings.Contains(string(ev.Data), "permission_denied") {
		t.Fatalf("last event %s %s", ev.Type, ev.Data)
	}
	// The technician cannot grant consent; the customer (ingest key) can.
	e.want(e.command(tok, sid, map[string]any{"type": "request_consent", "action": "remote_control"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "grant_consent", "action": "remote_control"}), 403, "forbidden")
	granted := e.want(e.command(e.ingest, sid, map[string]any{"type": "grant_consent", "action": "remote_control"}), 200, "")
	grantID := granted.body["events"].([]any)[0].(map[string]any)["id"].(string)
	started := e.want(e.command(tok, sid, map[string]any{"type": "start", "action": "remote_control"}), 200, "")
	data := started.body["events"].([]any)[0].(map[string]any)["data"].(map[string]any)
	if data["consent_event_id"] != grantID {
		t.Errorf("remote control relied on %v, want the grant %s", data["consent_event_id"], grantID)
	}
	e.want(e.command(tok, sid, map[string]any{"type": "end", "action": "remote_control"}), 200, "")

	// Consent denied: the action stays refused.
	e.want(e.command(tok, sid, map[string]any{"type": "request_consent", "action": "reboot"}), 200, "")
	e.want(e.command(e.ingest, sid, map[string]any{"type": "deny_consent", "action": "reboot"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "reboot"}), 409, "consent_required")

	// The one-time prompt covers every action afterwards.
	e.want(e.command(tok, sid, map[string]any{"type": "request_consent", "action": "all"}), 200, "")
	all := e.want(e.command(e.ingest, sid, map[string]any{"type": "grant_consent", "action": "all"}), 200, "")
	allID := all.body["events"].([]any)[0].(map[string]any)["id"].(string)
	info := e.want(e.command(tok, sid, map[string]any{"type": "view_system_info"}), 200, "")
	if info.body["events"].([]any)[0].(map[string]any)["data"].(map[string]any)["consent_event_id"] != allID {
		t.Errorf("system info did not rely on the one-time prompt: %s", info.raw)
	}
	e.want(e.command(tok, sid, map[string]any{"type": "send_url", "url": "https://example.com/help"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "deploy_script", "name": "fix.ps1", "sha256": strings.Repeat("c", 64)}), 200, "")

	// Chat both ways and a note need no consent.
	e.want(e.command(tok, sid, map[string]any{"type": "chat", "from": "technician", "text": "hello"}), 200, "")
	e.want(e.command(e.ingest, sid, map[string]any{"type": "chat", "from": "customer", "text": "my password is hunter2"}), 200, "")
	e.want(e.command(e.ingest, sid, map[string]any{"type": "chat", "from": "technician", "text": "spoof"}), 400, "invalid")
	e.want(e.command(tok, sid, map[string]any{"type": "note", "text": "customer was patient"}), 200, "")

	// Another technician may neither act on the session nor read it: to
	// him it does not exist, and his attempt appends nothing.
	g2 := e.group(nil, nil)
	e.technician(g2, "other@example.com")
	other := e.token("other@example.com")
	n := len(e.events(stream))
	e.want(e.command(other, sid, map[string]any{"type": "view_system_info"}), 404, "not_found")
	if len(e.events(stream)) != n {
		t.Errorf("the command of a technician who cannot see the session appended %v", types(e.events(stream)[n:]))
	}
	e.want(e.do("GET", "/v1/sessions/"+sid+"/events", other, nil), 404, "not_found")

	// Closing by the customer revokes consents; afterwards commands fail.
	e.want(e.command(e.ingest, sid, map[string]any{"type": "close", "reason": "done"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "view_system_info"}), 409, "session_closed")
	e.want(e.command(e.ingest, sid, map[string]any{"type": "chat", "from": "customer", "text": "hi"}), 409, "session_closed")

	// Every privileged action names a consent given before it.
	consents := map[string]bool{}
	for _, ev := range e.events(stream) {
		if ev.Type == "session.consent_granted" {
			consents[ev.ID.String()] = true
		}
		var d struct {
			ConsentEventID string `json:"consent_event_id"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		if d.ConsentEventID != "" && d.ConsentEventID != "00000000-0000-0000-0000-000000000000" && !consents[d.ConsentEventID] {
			t.Errorf("%s relies on consent %s not granted before it", ev.Type, d.ConsentEventID)
		}
	}

	// The timeline: admin reads personal fields; the customer's chat text is
	// sealed in the log and opened for the admin.
	tl := e.want(e.do("GET", "/v1/sessions/"+sid+"/events", e.admin, nil), 200, "")
	raw := string(tl.raw)
	for _, want := range []string{"my password is hunter2", "grace@example.com", "ticket 4711", "192.0.2.10"} {
		if !strings.Contains(raw, want) {
			t.Errorf("admin timeline lacks %q", want)
		}
	}
	// An integration key reads it sealed.
	_, integ, err := e.svc.CreateAPIKey(context.Background(), e.tenant, "integration", "crm")
	if err != nil {
		t.Fatal(err)
	}
	sealed := e.want(e.do("GET", "/v1/sessions/"+sid+"/events", integ, nil), 200, "")
	if strings.Contains(string(sealed.raw), "hunter2") || !strings.Contains(string(sealed.raw), "[sealed]") {
		t.Errorf("integration timeline shows personal data")
	}
	// The public data in the log holds none of it.
	for _, ev := range e.events(stream) {
		for _, secret := range []string{"hunter2", "grace@", "Grace Hopper", "192.0.2.10", "ticket 4711", "fix.ps1", "example.com/help"} {
			if strings.Contains(string(ev.Data), secret) {
				t.Errorf("%s carries %q in its public data", ev.Type, secret)
			}
		}
	}
}

func TestForcedRecordingAndTransfer(t *testing.T) {
	e := newEnv(t)
	tok, sid, gid := e.session(nil, map[string]any{"forced_recording": true})
	e.want(e.command(tok, sid, map[string]any{"type": "request_consent", "action": "remote_control"}), 200, "")
	e.want(e.command(e.ingest, sid, map[string]any{"type": "grant_consent", "action": "remote_control"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "start", "action": "remote_control"}), 409, "recording_required")
	e.want(e.command(tok, sid, map[string]any{"type": "start_recording", "recording_id": "rec-1"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "start", "action": "remote_control"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "stop_recording", "recording_id": "rec-1"}), 200, "")

	// Transfer to a colleague: consents end; the colleague acts next.
	colleague := e.technician(gid, "colleague@example.com")
	ctok := e.token("colleague@example.com")
	e.want(e.command(tok, sid, map[string]any{"type": "transfer", "to_technician": colleague}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "note", "text": "gone"}), 403, "forbidden")
	e.want(e.command(ctok, sid, map[string]any{"type": "start_recording"}), 200, "")
	e.want(e.command(ctok, sid, map[string]any{"type": "start", "action": "desktop_view"}), 409, "consent_required")
	e.want(e.do("GET", "/v1/sessions/"+sid+"/events", ctok, nil), 200, "")
	e.want(e.command(ctok, sid, map[string]any{"type": "close"}), 200, "")
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	_, sid, gid := e.session(nil, nil)
	other, otherAdmin, err := e.svc.CreateTenant(context.Background(), "Globex", "eu")
	if err != nil {
		t.Fatal(err)
	}
	_, otherIngest, err := e.svc.CreateAPIKey(context.Background(), other.ID, "ingest", "")
	if err != nil {
		t.Fatal(err)
	}
	e.want(e.do("GET", "/v1/sessions/"+sid+"/events", otherAdmin, nil), 404, "not_found")
	e.want(e.command(otherIngest, sid, map[string]any{"type": "chat", "from": "customer", "text": "hi"}), 404, "not_found")
	e.want(e.do("GET", "/v1/groups/"+gid, otherAdmin, nil), 404, "not_found")
	e.want(e.do("POST", "/v1/technicians", otherAdmin, map[string]any{"email": "x@example.com", "name": "X", "group_id": gid, "password": goodPassword}), 404, "not_found")
	// The same e-mail may exist in two tenants; login then names the tenant.
	g2 := e.want(e.do("POST", "/v1/groups", otherAdmin, map[string]any{"name": "G"}), 201, "").str("id")
	e.technician(gid, "shared@example.com")
	e.want(e.do("POST", "/v1/technicians", otherAdmin, map[string]any{"email": "shared@example.com", "name": "S", "group_id": g2, "password": goodPassword}), 201, "")
	e.want(e.login("shared@example.com", goodPassword), 400, "invalid")
	e.want(e.login("shared@example.com", goodPassword, map[string]any{"tenant": other.ID}), 200, "")
}

// TestDeferredCredentialRefusedAtOnce (issue 15): the session command
// route authenticates a credential it has seen from memory and confirms it
// in the command's first read. An API key revoked and a token ended behind
// the server's back (as by another node, straight in the database) are
// refused on the next command, and an answer stored for an
// Idempotency-Key is not replayed to them.
func TestDeferredCredentialRefusedAtOnce(t *testing.T) {
	e := newEnv(t)
	tok, sid, _ := e.session(nil, nil)
	ctx := context.Background()
	k, key, err := e.svc.CreateAPIKey(ctx, e.tenant, service.RoleIngest, "second applet")
	if err != nil {
		t.Fatal(err)
	}
	chat := map[string]any{"type": "chat", "from": "customer", "text": "hello"}
	e.want(e.command(key, sid, chat, hdr{"Idempotency-Key": "chat-1"}), 200, "")
	e.want(e.command(key, sid, chat, hdr{"Idempotency-Key": "chat-1"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "note", "text": "n"}, hdr{"Idempotency-Key": "note-1"}), 200, "")
	if err := e.store.RevokeAPIKey(ctx, k.ID, e.svc.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.EndTechnicianTokens(ctx, e.tenant, principalOf(t, e, tok).TechnicianID, e.svc.Now()); err != nil {
		t.Fatal(err)
	}
	head := e.head()
	e.want(e.command(key, sid, chat, hdr{"Idempotency-Key": "chat-1"}), 401, "unauthenticated")
	e.want(e.command(key, sid, chat, hdr{"Idempotency-Key": "chat-2"}), 401, "unauthenticated")
	e.want(e.command(key, sid, chat), 401, "unauthenticated")
	e.want(e.command(tok, sid, map[string]any{"type": "note", "text": "n"}, hdr{"Idempotency-Key": "note-1"}), 401, "unauthenticated")
	e.want(e.command(tok, sid, map[string]any{"type": "note", "text": "again"}), 401, "unauthenticated")
	if e.head() != head {
		t.Errorf("%d events appended for refused credentials", e.head()-head)
	}
}

// principalOf authenticates cred through the service.
func principalOf(t *testing.T, e *env, cred string) service.Principal {
	t.Helper()
	p, err := e.svc.Authenticate(context.Background(), cred)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRegionIsEnforced(t *testing.T) {
	e := newEnv(t)
	if _, _, err := e.svc.CreateTenant(context.Background(), "Initech", "us"); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Fatalf("tenant of another region: %v", err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	tok, sid, _ := e.session(nil, nil)
	body := map[string]any{"type": "note", "text": "once"}
	first := e.want(e.command(tok, sid, body, hdr{"Idempotency-Key": "note-1"}), 200, "")
	before := e.head()
	again := e.want(e.command(tok, sid, body, hdr{"Idempotency-Key": "note-1"}), 200, "")
	if string(again.raw) != string(first.raw) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("repeat answered %s, first %s", again.raw, first.raw)
	}
	if e.head() != before {
		t.Error("a repeated request appended events")
	}
	e.want(e.command(tok, sid, map[string]any{"type": "note", "text": "other"}, hdr{"Idempotency-Key": "note-1"}), 409, "conflict")
	// A refused request's answer is kept too, and not re-run.
	refused := e.want(e.command(tok, sid, map[string]any{"type": "reboot"}, hdr{"Idempotency-Key": "reboot-1"}), 409, "consent_required")
	n := e.head()
	again = e.want(e.command(tok, sid, map[string]any{"type": "reboot"}, hdr{"Idempotency-Key": "reboot-1"}), 409, "consent_required")
	if e.head() != n || string(again.raw) != string(refused.raw) {
		t.Error("a repeated refusal was run again")
	}
	// Session creation with a key creates one session.
	c1 := e.want(e.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}, hdr{"Idempotency-Key": "s-1"}), 201, "")
	c2 := e.want(e.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}, hdr{"Idempotency-Key": "s-1"}), 201, "")
	if c1.str("id") != c2.str("id") {
		t.Error("a repeated creation made a second session")
	}
	e.want(e.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}, hdr{"Idempotency-Key": strings.Repeat("k", 201)}), 400, "invalid")
}

func TestBadInputAppendsNothing(t *testing.T) {
	e := newEnv(t)
	tok, sid, _ := e.session(nil, nil)
	cases := []struct {
		name   string
		cred   string
		path   string
		body   any
		status int
		code   string
	}{
		{"Malformed", tok, "/v1/sessions/" + sid + "/commands", `{"type": "note", "text": `, 400, "invalid"},
		{"NoType", tok, "/v1/sessions/" + sid + "/commands", map[string]any{"text": "x"}, 400, "invalid"},
		{"UnknownType", tok, "/v1/sessions/" + sid + "/commands", map[string]any{"type": "format_disk"}, 400, "invalid"},
		{"FieldOfAnotherCommand", tok, "/v1/sessions/" + sid + "/commands", map[string]any{"type": "note", "text": "x", "url": "y"}, 400, "invalid"},
		{"WrongFieldType", tok, "/v1/sessions/" + sid + "/commands", map[string]any{"type": "send_file", "name": "a", "size": "big", "md5": "x", "sha256": "y"}, 400, "invalid"},
		{"BadHash", tok, "/v1/sessions/" + sid + "/commands", map[string]any{"type": "send_file", "name": "a", "size": 1, "md5": "zz", "sha256": "yy"}, 400, "invalid"},
		{"UnknownAction", tok, "/v1/sessions/" + sid + "/commands", map[string]any{"type": "start", "action": "teleport"}, 400, "invalid"},
		{"UnknownSession", tok, "/v1/sessions/" + strings.Repeat("0", 32) + "/commands", map[string]any{"type": "note", "text": "x"}, 404, "not_found"},
		{"MalformedSession", tok, "/v1/sessions/nope/commands", map[string]any{"type": "note", "text": "x"}, 404, "not_found"},
		{"CustomerCommandByTechnician", tok, "/v1/sessions/" + sid + "/commands", map[string]any{"type": "connect_customer", "platform": "mac"}, 403, "forbidden"},
		{"TechnicianCommandByIngest", e.ingest, "/v1/sessions/" + sid + "/commands", map[string]any{"type": "pick_up"}, 403, "forbidden"},
		{"AdminSendsCommand", e.admin, "/v1/sessions/" + sid + "/commands", map[string]any{"type": "note", "text": "x"}, 403, "forbidden"},
		{"BadCustomField", tok, "/v1/sessions", map[string]any{"queue": "shared", "custom_fields": map[string]string{"cfield9": "x"}}, 400, "invalid"},
		{"LongCustomField", tok, "/v1/sessions", map[string]any{"queue": "shared", "custom_fields": map[string]string{"cfield1": strings.Repeat("x", 65)}}, 400, "invalid"},
		{"BadQueue", tok, "/v1/sessions", map[string]any{"queue": "vip"}, 400, "invalid"},
		{"IngestWithoutGroup", e.ingest, "/v1/sessions", map[string]any{"queue": "shared"}, 400, "invalid"},
		{"Oversize", tok, "/v1/sessions/" + sid + "/commands", `{"type": "note", "text": "` + strings.Repeat("x", 2<<20) + `"}`, 413, "too_large"},
		{"ExpiredLooking", "vt_aaaaaaaaaaaaaaaa_" + strings.Repeat("a", 52), "/v1/sessions", map[string]any{"queue": "shared"}, 401, "unauthenticated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.head()
			e.want(e.do("POST", c.path, c.cred, c.body), c.status, c.code)
			if e.head() != before {
				t.Errorf("bad input appended %d events", e.head()-before)
			}
		})
	}
}

func TestIdleSessionsCloseAfterTimeout(t *testing.T) {
	e := newEnv(t)
	tok, sid, _ := e.session(nil, map[string]any{"session_inactivity_timeout_s": 120})
	e.clock.Advance(60 * time.Second)
	if res, err := e.svc.Tick(context.Background()); err != nil || res.SessionsClosed != 0 {
		t.Fatalf("tick before the timeout: %+v %v", res, err)
	}
	e.want(e.command(tok, sid, map[string]any{"type": "note", "text": "still here"}), 200, "")
	e.clock.Advance(100 * time.Second) // 100 s after the note: not idle yet
	if res, _ := e.svc.Tick(context.Background()); res.SessionsClosed != 0 {
		t.Fatal("closed a session that was active 100 s ago")
	}
	e.clock.Advance(30 * time.Second)
	// A restarted process (a new service over the same database) finds
	// the session from the scheduler's stored state.
	restarted := service.New(service.Config{Log: e.ledger, Identity: e.store, Idempotency: e.store, Activity: e.store, Crypto: e.ledger.Sealer(), Region: "eu", Now: e.clock.Now})
	res, err := restarted.Tick(context.Background())
	if err != nil || res.SessionsClosed != 1 {
		t.Fatalf("tick after the timeout: %+v %v", res, err)
	}
	last := lastEvent(e.events(domain.SessionStream(sid)))
	if last.Type != "session.closed" || !strings.Contains(string(last.Data), "inactivity") {
		t.Errorf("last event %s %s", last.Type, last.Data)
	}
	e.want(e.command(tok, sid, map[string]any{"type": "note", "text": "late"}), 409, "session_closed")
	if res, _ := e.svc.Tick(context.Background()); res.SessionsClosed != 0 {
		t.Error("closed twice")
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// node is one `vigil serve` process, reached over HTTP.
type node struct {
	t    *testing.T
	name string
	url  string
}

// call sends body as JSON with cred as bearer and fails the test unless
// the answer has status and, for an error, code. It returns the decoded
// answer.
func (n node) call(method, path, cred string, body any, status int, code string) map[string]any {
	n.t.Helper()
	j, err := json.Marshal(body)
	if err != nil {
		n.t.Fatal(err)
	}
	req, err := http.NewRequest(method, n.url+path, bytes.NewReader(j))
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("node %s: %s %s: %v", n.name, method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	got, _ := out["error"].(map[string]any)
	if res.StatusCode != status || (code != "" && got["code"] != code) {
		n.t.Fatalf("node %s: %s %s: got %d %s, want %d %s", n.name, method, path, res.StatusCode, raw, status, code)
	}
	return out
}

func (n node) command(cred, session string, body map[string]any, status int, code string) {
	n.t.Helper()
	n.call("POST", "/v1/sessions/"+session+"/commands", cred, body, status, code)
}

// TestTwoServeProcessesRefuseAtOnce (issue 15): two `vigil serve`
// processes on one database, each with its own ledger writer and caches.
// After node B has served a technician, its group, a session and an API
// key (so its caches are warm), a group permission removed through node A,
// the technician disabled through node A and the API key revoked (with
// `vigil apikey revoke`, the only way to revoke one) are each refused by
// node B on the very next request, with no wait in between.
func TestTwoServeProcessesRefuseAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	vars := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error", "VIGIL_RELAY_ADDR": "127.0.0.1:0"}
	env := envFunc(vars)
	tenant, ingest := tenantWithIngest(t, env)
	admin := tenant["admin_key"]

	start := func(name string) node {
		v := map[string]string{"VIGIL_HTTP_ADDR": freeAddr(t)}
		for k, x := range vars {
			v[k] = x
		}
		serveProcess(t, v)
		return node{t: t, name: name, url: "http://" + v["VIGIL_HTTP_ADDR"]}
	}
	a, b := start("A"), start("B")

	perms := map[string]bool{"system_info": true, "remote_control": true, "file_transfer": true}
	gid, _ := a.call("POST", "/v1/groups", admin, map[string]any{"name": "Level 1", "permissions": perms}, 201, "")["id"].(string)
	const pw = "Correct-Horse-9-Battery"
	tech, _ := a.call("POST", "/v1/technicians", admin, map[string]any{"email": "ada@example.com", "name": "Ada", "group_id": gid, "password": pw}, 201, "")["id"].(string)
	tok, _ := b.call("POST", "/v1/auth/login", "", map[string]any{"email": "ada@example.com", "password": pw}, 200, "")["token"].(string)
	sid, _ := a.call("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}, 201, "")["id"].(string)
	if gid == "" || tech == "" || tok == "" || sid == "" {
		t.Fatalf("set-up: group %q technician %q token %q session %q", gid, tech, tok, sid)
	}

	b.command(ingest["key"], sid, map[string]any{"type": "connect_customer", "platform": "windows"}, 200, "")
	b.command(tok, sid, map[string]any{"type": "pick_up"}, 200, "")
	b.command(tok, sid, map[string]any{"type": "request_consent", "action": "system_info"}, 200, "")
	b.command(ingest["key"], sid, map[string]any{"type": "grant_consent", "action": "system_info"}, 200, "")
	// B has now served the token, the technician, its group, the session
	// and the ingest key: every cache on its command path is warm.
	b.command(tok, sid, map[string]any{"type": "view_system_info"}, 200, "")

	// A permission removed on A: refused by B on the next request.
	perms["system_info"] = false
	a.call("PATCH", "/v1/groups/"+gid, admin, map[string]any{"permissions": perms}, 200, "")
	b.command(tok, sid, map[string]any{"type": "view_system_info"}, 403, "permission_denied")

	// The technician disabled on A: B refuses the token on the next request.
	b.command(tok, sid, map[string]any{"type": "note", "text": "still here"}, 200, "")
	a.call("POST", "/v1/technicians/"+tech+"/disable", admin, map[string]any{"reason": "left"}, 200, "")
	b.command(tok, sid, map[string]any{"type": "note", "text": "after disable"}, 401, "unauthenticated")

	// An API key revoked: refused by B (which used it a moment ago) and by A.
	var out bytes.Buffer
	ctx := context.Background()
	if err := run(ctx, []string{"apikey", "create", "--tenant", tenant["tenant"], "--role", "ingest", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var key map[string]string
	_ = json.Unmarshal(out.Bytes(), &key)
	b.command(key["key"], sid, map[string]any{"type": "chat", "from": "customer", "text": "hello"}, 200, "")
	a.command(key["key"], sid, map[string]any{"type": "chat", "from": "customer", "text": "hello A"}, 200, "")
	if err := run(ctx, []string{"apikey", "revoke", "--id", key["id"]}, env, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	b.command(key["key"], sid, map[string]any{"type": "chat", "from": "customer", "text": "again"}, 401, "unauthenticated")
	a.command(key["key"], sid, map[string]any{"type": "chat", "from": "customer", "text": "again A"}, 401, "unauthenticated")

	// Both nodes appended to one log: it verifies.
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet"}, env, &out, io.Discard); err != nil {
		t.Fatalf("verify after two nodes: %v\n%s", err, out.String())
	}
}

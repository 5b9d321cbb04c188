package httpapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	httpapi "github.com/vigilhq/vigil/api/http"
)

// limitedServer serves e's service with lim and the http.Server timeouts
// serve sets, over a real listener.
func limitedServer(t *testing.T, e *env, lim httpapi.Limits, readTimeout time.Duration, recs httpapi.RecordingsService) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(httpapi.New(httpapi.Options{Service: e.svc, Recordings: recs, Limits: lim}))
	srv.Config.ReadHeaderTimeout = 5 * time.Second
	srv.Config.ReadTimeout = readTimeout
	srv.Config.WriteTimeout = lim.WriteTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// slowRequest opens a connection and sends a request's headers and the
// first byte of a body of 1000 bytes, then nothing: it holds the request
// open until the server gives up on it or the connection is closed.
func slowRequest(t *testing.T, addr, method, path, bearer string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	auth := ""
	if bearer != "" {
		auth = "Authorization: Bearer " + bearer + "\r\n"
	}
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: vigil\r\n%sContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", method, path, auth); err != nil {
		t.Fatal(err)
	}
	return c
}

// answer reads the response on c, or fails when there is none within a
// generous bound.
func answer(t *testing.T, c net.Conn, method string) (*http.Response, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func errorCode(t *testing.T, b []byte) string {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("not the JSON error form: %s", b)
	}
	return body.Error.Code
}

func post(t *testing.T, addr, path, bearer, body string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header
}

func TestUnauthenticatedRequestsAreCapped(t *testing.T) {
	e := newEnv(t)
	addr := limitedServer(t, e, httpapi.Limits{MaxUnauthenticated: 2}, time.Minute, nil)
	login := `{"email": "nobody@example.com", "password": "x"}`

	a := slowRequest(t, addr, "POST", "/v1/auth/login", "")
	slowRequest(t, addr, "POST", "/v1/auth/login", "")
	// Both slots are taken as soon as the two logins are in their
	// handlers; from then on a third is refused at once.
	var status int
	var body []byte
	var h http.Header
	eventuallyWithin(t, "a third login refused", time.Minute, func() bool {
		status, body, h = post(t, addr, "/v1/auth/login", "", login)
		return status == http.StatusServiceUnavailable
	})
	if code := errorCode(t, body); code != "unavailable" || h.Get("Retry-After") == "" {
		t.Errorf("refusal: %s, Retry-After %q", body, h.Get("Retry-After"))
	}
	// A request without a credential shares the logins' slots.
	if status, body, _ := post(t, addr, "/v1/groups", "", `{"name": "g"}`); status != http.StatusServiceUnavailable {
		t.Errorf("request without a credential while full: %d %s", status, body)
	}
	// A request with a bearer credential waits for its check in a pool of
	// its own (PendingAuthFactor times larger): logins filling theirs do
	// not shed a busy node's ordinary traffic.
	if status, body, _ := post(t, addr, "/v1/groups", e.admin, `{"name": "g"}`); status != http.StatusCreated {
		t.Errorf("authenticated request while logins are full: %d %s", status, body)
	}
	// Probes never count.
	for _, p := range []string{"/healthz", "/readyz"} {
		res, err := http.Get("http://" + addr + p)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("%s while full: %v %v", p, res, err)
		}
		res.Body.Close()
	}
	// A slow login that goes away gives its slot back.
	a.Close()
	eventuallyWithin(t, "a login answered once a slot is free", time.Minute, func() bool {
		status, body, _ = post(t, addr, "/v1/auth/login", "", login)
		return status != http.StatusServiceUnavailable
	})
	if status != http.StatusUnauthorized {
		t.Errorf("login with a free slot: %d %s", status, body)
	}
}

func TestAuthenticatedRequestsLeaveTheCap(t *testing.T) {
	e := newEnv(t)
	addr := limitedServer(t, e, httpapi.Limits{MaxUnauthenticated: 1}, time.Minute, nil)
	// A command whose body trickles holds no unauthenticated slot once its
	// key is accepted, and so does a GraphQL-like read of a body.
	slowRequest(t, addr, "POST", "/v1/groups", e.admin)
	var status int
	var body []byte
	eventuallyWithin(t, "a login answered beside a slow authenticated request", time.Minute, func() bool {
		status, body, _ = post(t, addr, "/v1/auth/login", "", `{"email": "nobody@example.com", "password": "x"}`)
		return status != http.StatusServiceUnavailable
	})
	if status != http.StatusUnauthorized {
		t.Errorf("login: %d %s", status, body)
	}
}

func TestTrickledBodyIsCut(t *testing.T) {
	e := newEnv(t)
	addr := limitedServer(t, e, httpapi.Limits{MaxUnauthenticated: 8}, time.Second, nil)
	for _, c := range []struct{ path, bearer string }{
		{"/v1/auth/login", ""},
		{"/v1/groups", e.admin},
	} {
		t.Run(strings.TrimPrefix(c.path, "/v1/"), func(t *testing.T) {
			conn := slowRequest(t, addr, "POST", c.path, c.bearer)
			res, b := answer(t, conn, "POST")
			if res.StatusCode != http.StatusRequestTimeout || errorCode(t, b) != "request_timeout" {
				t.Errorf("trickled body: %d %s", res.StatusCode, b)
			}
			// And the connection is closed.
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			if n, err := conn.Read(make([]byte, 1)); err == nil {
				t.Errorf("connection still open (read %d bytes)", n)
			}
		})
	}
	// The server goes on answering.
	if status, _, _ := post(t, addr, "/v1/groups", e.admin, `{"name": "after"}`); status != http.StatusCreated {
		t.Errorf("after the slow clients: %d", status)
	}
}

// pacedReader hands out chunks with a pause before each but the first.
type pacedReader struct {
	chunks [][]byte
	pause  time.Duration
	n      int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.n == len(p.chunks) {
		return 0, io.EOF
	}
	if p.n > 0 {
		time.Sleep(p.pause)
	}
	n := copy(b, p.chunks[p.n])
	p.chunks[p.n] = p.chunks[p.n][n:]
	if len(p.chunks[p.n]) == 0 {
		p.n++
	}
	return n, nil
}

func TestRecordingUploadMinimumRate(t *testing.T) {
	e := newRecEnv(t)
	lim := httpapi.Limits{MaxUnauthenticated: 8, RecordingMinRate: 1 << 10, RecordingRateWindow: time.Second}
	addr := limitedServer(t, e.env, lim, time.Second, e.recs)
	start := func(id string) {
		e.want(e.command(e.tech, e.sid, map[string]any{"type": "start_recording", "recording_id": id}), 200, "")
	}
	upload := func(id string, body io.Reader) (int, []byte) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/sessions/"+e.sid+"/recordings?recording_id="+id, body)
		req.Header.Set("Authorization", "Bearer "+e.tech)
		req.Header.Set("Content-Type", "video/webm")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}

	// Faster than the minimum rate (4 KiB every half second against
	// 1 KiB/s) and longer than the server's 1 s ReadTimeout: stored.
	start("fast")
	chunks := make([][]byte, 5)
	for i := range chunks {
		chunks[i] = bytes.Repeat([]byte{byte('a' + i)}, 4<<10)
	}
	if status, b := upload("fast", &pacedReader{chunks: chunks, pause: 500 * time.Millisecond}); status != http.StatusCreated {
		t.Fatalf("upload above the minimum rate: %d %s", status, b)
	}

	// A stall after the first bytes: cut with request_timeout, and nothing
	// is recorded as stored.
	start("stalled")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/sessions/%s/recordings?recording_id=stalled HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: video/webm\r\nContent-Length: 100000\r\n\r\n%s", e.sid, e.tech, bytes.Repeat([]byte("x"), 512))
	res, b := answer(t, c, "POST")
	if res.StatusCode != http.StatusRequestTimeout || errorCode(t, b) != "request_timeout" {
		t.Errorf("stalled upload: %d %s", res.StatusCode, b)
	}
	for _, ev := range e.events("session-" + e.sid) {
		if ev.Type == "session.recording_stored" && strings.Contains(string(ev.Data), `"stalled"`) {
			t.Error("a cut upload was recorded as stored")
		}
	}
}

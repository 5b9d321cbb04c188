package httpapi

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// JSONErrorListener wraps ln so that the few answers net/http's server
// writes itself, before any handler runs (a NUL or another invalid byte in
// a header, a malformed request line, headers past the size limit, an
// unsupported transfer encoding), take the API's JSON error form instead of
// Go's plain text: {"error": {"code": "invalid", "message": "..."}} with the
// same status.
//
// It works on the bytes the server writes to the connection, so it applies
// to plain HTTP only: under TLS the server writes to a *tls.Conn, which
// must stay the connection it sees (docs/api.md names this exception). The
// returned listener is safe for concurrent use as ln is.
func JSONErrorListener(ln net.Listener) net.Listener { return jsonErrorListener{ln} }

type jsonErrorListener struct{ net.Listener }

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c}, nil
}

type jsonErrorConn struct {
	net.Conn
	// wrote is set by a Write and cleared by a Read: net/http writes its
	// own answer right after reading a request it cannot parse, so a write
	// that follows another write (a response body, whatever its bytes) is
	// never taken for one.
	wrote atomic.Bool
}

func (c *jsonErrorConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.wrote.Store(false)
	}
	return n, err
}

// serverErrorHeaders is what net/http's server writes after the status line
// of an answer of its own (net/http/server.go, conn.serve): no Date header,
// which every answer through a ResponseWriter carries.
const serverErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// Write passes p through unless p is one whole answer of net/http's own,
// which it rewrites in the JSON form. Such an answer is written in one
// call, on a connection that is closed after it.
func (c *jsonErrorConn) Write(p []byte) (int, error) {
	if c.wrote.Swap(true) {
		return c.Conn.Write(p)
	}
	if out, ok := rewriteServerError(p); ok {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// rewriteServerError returns the JSON form of p when p is an answer
// net/http's server wrote itself.
func rewriteServerError(p []byte) ([]byte, bool) {
	const proto = "HTTP/1.1 "
	if !bytes.HasPrefix(p, []byte(proto)) {
		return nil, false
	}
	i := bytes.Index(p, []byte(serverErrorHeaders))
	if i < 0 {
		return nil, false
	}
	statusLine := string(p[len(proto):i])
	if strings.Contains(statusLine, "\r\n") || len(statusLine) < 3 {
		return nil, false
	}
	status, err := strconv.Atoi(statusLine[:3])
	if err != nil || status < 400 || status > 599 {
		return nil, false
	}
	// The body repeats the status line, "400 Bad Request: invalid header
	// value" or "400 Bad Request"; the detail after the colon is one of
	// net/http's fixed texts, never the request's bytes.
	text := http.StatusText(status)
	detail := string(p[i+len(serverErrorHeaders):])
	if _, d, ok := strings.Cut(detail, ": "); ok {
		text = d
	} else if !strings.HasPrefix(detail, strconv.Itoa(status)) && detail != "" {
		text = detail
	}
	if text == "" {
		text = "refused"
	}
	code := "invalid"
	if status == http.StatusRequestHeaderFieldsTooLarge {
		code = codeTooLarge
	}
	var body errorBody
	body.Error.Code = code
	body.Error.Message = "malformed HTTP request: " + strings.ToLower(text[:1]) + text[1:]
	j, _ := json.Marshal(body)
	var b bytes.Buffer
	b.WriteString(proto + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b.WriteString("Content-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(j)+1) + "\r\n\r\n")
	b.Write(j)
	b.WriteByte('\n')
	return b.Bytes(), true
}

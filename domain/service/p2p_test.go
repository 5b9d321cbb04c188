package service_test

import (
	"testing"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// TestP2PReports: the applet and the console report the P2P attempt; bad
// steps and values are refused, and nothing follows the close.
func TestP2PReports(t *testing.T) {
	w := newWorld(t)
	group := w.group(nil)
	w.technician(group, "p2p@example.com")
	tech := w.logIn("p2p@example.com")
	sess, err := w.svc.CreateSession(w.ctx, w.ingest, service.NewSession{Queue: domain.QueueShared, GroupID: group}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	w.must(w.ingest, sess.ID, `{"type":"connect_customer","platform":"linux"}`)
	w.must(tech, sess.ID, `{"type":"pick_up"}`)
	w.must(w.ingest, sess.ID, `{"type":"p2p","step":"tcp_listening","port":50123}`)
	w.must(w.ingest, sess.ID, `{"type":"p2p","step":"tcp_timeout","elapsed_ms":10000}`)
	w.must(w.ingest, sess.ID, `{"type":"p2p","step":"udp_rendezvous","gateway_id":"gw-1","outcome":"ok"}`)
	w.must(tech, sess.ID, `{"type":"p2p","step":"udp_rendezvous","gateway_id":"gw-1","outcome":"ok"}`)
	w.must(tech, sess.ID, `{"type":"p2p","step":"established","transport":"udp","elapsed_ms":10420}`)
	for _, bad := range []string{
		`{"type":"p2p","step":"established","transport":"carrier-pigeon","elapsed_ms":1}`,
		`{"type":"p2p","step":"tcp_listening","port":70000}`,
		`{"type":"p2p","step":"udp_rendezvous"}`,
		`{"type":"p2p","step":"failed"}`,
		`{"type":"p2p","step":"teleport"}`,
	} {
		if _, err := w.command(tech, sess.ID, bad); domain.ErrorCode(err) != domain.CodeInvalid {
			t.Errorf("%s: %v, want invalid", bad, err)
		}
	}
	var got []string
	for _, e := range w.stream(domain.SessionStream(sess.ID)) {
		got = append(got, e.Type+" "+string(e.Actor.Kind))
	}
	want := []string{"session.peer_tcp_listening customer", "session.peer_tcp_timeout customer", "session.peer_udp_rendezvous customer",
		"session.peer_udp_rendezvous technician", "session.peer_channel_established technician"}
	if len(got) < len(want) || !equal(got[len(got)-len(want):], want) {
		t.Errorf("stream ends with %v, want %v", got, want)
	}
	w.must(w.ingest, sess.ID, `{"type":"close"}`)
	if _, err := w.command(tech, sess.ID, `{"type":"p2p","step":"failed","reason":"late","elapsed_ms":1}`); domain.ErrorCode(err) != domain.CodeSessionClosed {
		t.Errorf("p2p after close: %v, want session_closed", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

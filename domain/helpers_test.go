package domain_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigilhq/vigil/domain"
)

const tenant = "acme"

var t0 = time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func byTech(id string, when time.Time) domain.Cmd {
	return domain.Cmd{Actor: domain.Actor{Kind: domain.ActorTechnician, ID: id}, At: when}
}

func byCustomer(when time.Time) domain.Cmd {
	return domain.Cmd{Actor: domain.Actor{Kind: domain.ActorCustomer, ID: "applet"}, At: when}
}

func bySystem(when time.Time) domain.Cmd {
	return domain.Cmd{Actor: domain.Actor{Kind: domain.ActorSystem}, At: when}
}

func byAdmin(when time.Time) domain.Cmd {
	return domain.Cmd{Actor: domain.Actor{Kind: domain.ActorAdmin, ID: "admin-1"}, At: when}
}

// ok returns a function that fails the test if err is not nil and
// otherwise returns events, for use as ok(t)(command(...)).
func ok(t testing.TB) func(events []domain.Event, err error) []domain.Event {
	t.Helper()
	return func(events []domain.Event, err error) []domain.Event {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return events
	}
}

// wantErr checks err's code and sentinel.
func wantErr(t testing.TB, err error, code string, sentinel error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if got := domain.ErrorCode(err); got != code {
		t.Fatalf("error code %q (%v), want %q", got, err, code)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("error %v does not match sentinel %v", err, sentinel)
	}
}

// types returns the event types of events.
func types(events []domain.Event) []string {
	out := []string{}
	for _, e := range events {
		out = append(out, e.Type)
	}
	return out
}

func wantTypes(t testing.TB, events []domain.Event, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if diff := cmp.Diff(want, types(events)); diff != "" {
		t.Fatalf("event types (-want +got):\n%s", diff)
	}
}

// payload decodes the single event of events.
func payload[P domain.Payload](t testing.TB, events []domain.Event) P {
	t.Helper()
	if len(events) != 1 {
		t.Fatalf("%d events %v, want 1", len(events), types(events))
	}
	p, err := domain.Decode(events[0])
	if err != nil {
		t.Fatal(err)
	}
	v, isP := any(p).(*P)
	if !isP {
		t.Fatalf("payload is %T, want %T", p, *new(P))
	}
	return *v
}

func newGroup(t testing.TB, id string, perms domain.PermissionSet, policy domain.GroupPolicy) *domain.Group {
	t.Helper()
	g := domain.NewGroup(tenant, id)
	ok(t)(g.Create(byAdmin(t0), "Group "+id, perms, policy))
	g.ClearChanges()
	return g
}

func newTech(t testing.TB, id, groupID string) *domain.Technician {
	t.Helper()
	tc := domain.NewTechnician(tenant, id)
	ok(t)(tc.Create(byAdmin(t0), groupID, "Name of "+id, id+"@example.com"))
	tc.ClearChanges()
	return tc
}

// world is a group, two of its technicians and a session picked up by the
// first.
type world struct {
	group *domain.Group
	tech  *domain.Technician
	other *domain.Technician
	s     *domain.Session
}

const guid = "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b"

func newWorld(t testing.TB, perms domain.PermissionSet, policy domain.GroupPolicy) *world {
	t.Helper()
	w := &world{group: newGroup(t, "support", perms, policy)}
	w.tech = newTech(t, "alice", "support")
	w.other = newTech(t, "bob", "support")
	w.s = domain.NewSession(tenant, guid)
	ok(t)(w.s.Create(bySystem(t0), domain.SessionCreated{PIN: "123456", Queue: domain.QueueShared, GroupID: "support"}))
	ok(t)(w.s.ConnectCustomer(byCustomer(at(time.Second)), "windows", "1.0", mustAddr("192.0.2.7"), w.group))
	ok(t)(w.s.PickUp(byTech("alice", at(2*time.Second)), w.tech))
	w.s.ClearChanges()
	return w
}

// consent asks for and grants consent to a in w.s, returning the grant's id.
func (w *world) consent(t testing.TB, a domain.Action, when time.Time) domain.Event {
	t.Helper()
	ok(t)(w.s.RequestConsent(byTech(w.s.TechnicianID(), when), w.techHolding(), w.group, a))
	evs := ok(t)(w.s.GrantConsent(byCustomer(when), a))
	return evs[0]
}

func (w *world) techHolding() *domain.Technician {
	if w.s.TechnicianID() == w.other.ID() {
		return w.other
	}
	return w.tech
}

// actionSamples returns one valid payload per privileged action.
func actionSamples() []domain.ActionPayload {
	md5 := strings.Repeat("0a", 16)
	sha := strings.Repeat("b1", 32)
	return []domain.ActionPayload{
		domain.RemoteControlStarted{},
		domain.DesktopViewStarted{},
		domain.FileSent{Name: "setup.exe", Size: 10, MD5: md5, SHA256: sha},
		domain.FileReceived{Name: "log.txt", Size: 0, MD5: md5, SHA256: sha},
		domain.FileManagerOpened{},
		domain.RebootRequested{SafeMode: true},
		domain.Reconnected{},
		domain.SystemInfoViewed{},
		domain.ScriptDeployed{ScriptName: "fix-printer.ps1", SHA256: sha},
		domain.URLSent{URL: "https://example.com/help"},
		domain.ClipboardSyncStarted{},
		domain.CredentialsRequested{},
		domain.PrivateSessionStarted{},
		domain.ScreenSharedWithCustomer{},
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

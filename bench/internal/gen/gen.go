// Package gen writes realistic support sessions through the ledger, for
// the benchmarks.
package gen

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// Session returns the events of one realistic support session of tenant:
// 18 events, with sealed customer data, chat, files and consents; i varies
// the technician, the times and the customer.
func Session(tenant string, i int) ([]domain.Event, error) {
	guid := strings.ReplaceAll(uuid.NewString(), "-", "")
	stream := domain.SessionStream(guid)
	tech := fmt.Sprintf("tech-%d", i%50)
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * 37 * time.Second)
	customer := domain.Actor{Kind: domain.ActorCustomer, ID: "applet"}
	techActor := domain.Actor{Kind: domain.ActorTechnician, ID: tech}
	grant := domain.NewEventID()
	var out []domain.Event
	add := func(a domain.Actor, p domain.Payload, id uuid.UUID) error {
		at = at.Add(7 * time.Second)
		e, err := domain.NewEvent(domain.Meta{Tenant: tenant, Stream: stream, Actor: a, OccurredAt: at, ID: id}, p)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	}
	md5, sha := strings.Repeat("a", 32), strings.Repeat("b", 64)
	steps := []struct {
		a  domain.Actor
		p  domain.Payload
		id uuid.UUID
	}{
		{techActor, domain.SessionCreated{GUID: guid, PIN: "123456", Queue: "shared", Channel: "web", GroupID: "g1",
			CustomerName: "Grace Hopper", CustomerEmail: fmt.Sprintf("grace%d@example.com", i), CustomFields: map[string]string{"cfield0": "ticket"}}, uuid.Nil},
		{customer, domain.CustomerConnected{Platform: "windows", IP: "192.0.2.1"}, uuid.Nil},
		{techActor, domain.SessionPickedUp{TechnicianID: tech, GroupID: "g1"}, uuid.Nil},
		{techActor, domain.ConsentRequested{TechnicianID: tech, Action: domain.ActionOneTimePrompt}, uuid.Nil},
		{customer, domain.ConsentGranted{Action: domain.ActionOneTimePrompt}, grant},
		{techActor, domain.RemoteControlStarted{TechnicianID: tech, ConsentEventID: grant}, uuid.Nil},
		{techActor, domain.ChatMessage{From: "technician", SenderID: tech, Text: "hello, I am taking control"}, uuid.Nil},
		{customer, domain.ChatMessage{From: "customer", Text: "ok, go ahead"}, uuid.Nil},
		{techActor, domain.FileSent{TechnicianID: tech, ConsentEventID: grant, Name: "fix.exe", Size: 1 << 20, MD5: md5, SHA256: sha}, uuid.Nil},
		{techActor, domain.FileReceived{TechnicianID: tech, ConsentEventID: grant, Name: "log.txt", Size: 4096, MD5: md5, SHA256: sha}, uuid.Nil},
		{techActor, domain.SystemInfoViewed{TechnicianID: tech, ConsentEventID: grant}, uuid.Nil},
		{techActor, domain.ChatMessage{From: "technician", SenderID: tech, Text: "rebooting now"}, uuid.Nil},
		{techActor, domain.RebootRequested{TechnicianID: tech, ConsentEventID: grant}, uuid.Nil},
		{techActor, domain.Reconnected{TechnicianID: tech, ConsentEventID: grant}, uuid.Nil},
		{techActor, domain.RemoteControlEnded{}, uuid.Nil},
		{techActor, domain.NoteAdded{TechnicianID: tech, Text: "driver updated"}, uuid.Nil},
		{customer, domain.ChatMessage{From: "customer", Text: "thank you!"}, uuid.Nil},
		{techActor, domain.SessionClosed{ClosedBy: domain.ClosedByTechnician, Reason: "fixed"}, uuid.Nil},
	}
	for _, s := range steps {
		if err := add(s.a, s.p, s.id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// WriteSessions appends whole sessions from callers goroutines until at
// least total events are written, and returns how many were.
func WriteSessions(ctx context.Context, l *ledger.Ledger, total, tenants, callers int) (int64, error) {
	var written, next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for written.Load() < int64(total) {
				i := int(next.Add(1))
				evs, err := Session(fmt.Sprintf("tenant-%d", i%tenants), i)
				if err != nil {
					errs <- err
					return
				}
				if _, err := l.Append(ctx, evs[0].Stream, ledger.NoStream, evs...); err != nil {
					errs <- err
					return
				}
				n := written.Add(int64(len(evs)))
				if n/100000 != (n-int64(len(evs)))/100000 {
					fmt.Fprintf(os.Stderr, "  %d events\n", n)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return written.Load(), <-errs
}

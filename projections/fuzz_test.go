package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// fuzzStream is the stream an event of type name belongs on.
func fuzzStream(name, tenant, guid string) string {
	switch {
	case strings.HasPrefix(name, "session."):
		return domain.SessionStream(guid)
	case strings.HasPrefix(name, "technician."):
		return domain.TechnicianStream("t1")
	case strings.HasPrefix(name, "group."):
		return domain.GroupStream("g1")
	}
	return domain.TenantStream(tenant)
}

// FuzzApply appends events of every registered type (and of no registered
// type) with arbitrary public data to the log, as any writer might have, and
// runs the reporting and subject projections over them against PostgreSQL:
// whatever the log holds, every event is applied or quarantined and the
// projections reach the head; they never stall (issue 13, 3b).
func FuzzApply(f *testing.F) {
	types := domain.Catalogue.Types()
	for i, name := range types {
		p, _ := domain.Catalogue.New(name)
		data, _, err := domain.Catalogue.Encode(reflect.ValueOf(p).Elem().Interface().(domain.Payload))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(i), []byte(data))
	}
	idx := func(name string) uint16 {
		for i, n := range types {
			if n == name {
				return uint16(i)
			}
		}
		f.Fatalf("no event type %s", name)
		return 0
	}
	created := idx("session.created")
	f.Add(created, []byte(`{"guid":"x","pin":"1","queue":"shared","group_id":"g\u0000","channel":"a\u0000b","tracking_id":"\ud800"}`))
	f.Add(created, []byte(`{"queue":5}`))
	f.Add(created, []byte(`"not an object"`))
	f.Add(created, []byte(`null`))
	f.Add(idx("session.customer_connected"), []byte(`{"platform":"win\u0000dows"}`))
	f.Add(idx("session.recording_started"), []byte(`{"recording_id":"r\u0000","technician_id":"\u0000"}`))
	f.Add(idx("session.recording_stored"), []byte(`{"recording_id":"r","object":"o\u0000","size":-1,"md5":"\u0000","duration_ms":9223372036854775807}`))
	f.Add(idx("technician.login_failed"), []byte(`{"reason":"bad\u0000password"}`))
	f.Add(idx("compliance.subject_erased"), []byte(`{"subject":"session:\u0000"}`))
	f.Add(uint16(len(types)), []byte(`{"to":"mars"}`)) // a type this version does not know

	w := newWorld(f)
	ctx := context.Background()
	guid := fmt.Sprintf("%032x", 1)
	created1, err := domain.NewEvent(domain.Meta{Tenant: w.tenant, Stream: domain.SessionStream(guid), Actor: domain.Actor{Kind: domain.ActorSystem}},
		&domain.SessionCreated{GUID: guid, PIN: "1", Queue: "shared", GroupID: "g1", CustomerEmail: "ann@example.com"})
	w.must(err)
	w.appendRaw(created1) // the session the fuzzed session events land on
	r := newRunner(w, 100)
	w.must(r.CatchUp(ctx))

	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		name := "session.unknown_to_this_version"
		if int(typ) < len(types) {
			name = types[typ]
		}
		if !json.Valid(data) {
			t.Skip("not JSON: the log's data column refuses it")
		}
		e := domain.Event{Tenant: w.tenant, Stream: fuzzStream(name, w.tenant, guid), Type: name, Schema: 1,
			Actor: domain.Actor{Kind: domain.ActorSystem}, Data: data}
		if _, err := w.ledger.Append(ctx, e.Stream, ledger.AnyVersion, e); err != nil {
			t.Skipf("the log refuses the event: %v", err) // not JSON PostgreSQL holds: no projection sees it
		}
		if err := r.CatchUp(ctx); err != nil {
			t.Fatalf("%s %s: the projections stall: %v", name, data, err)
		}
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Lag != 0 {
				t.Fatalf("%s %s: %s lags %d events behind the head", name, data, s.Name, s.Lag)
			}
		}
	})
}

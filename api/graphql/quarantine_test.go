package gql_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/projections"
)

// An event the projector sets aside shows in projectionStatus: how many,
// and why the latest was (issue 13, 3b).
func TestProjectionStatusShowsTheQuarantine(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	guid := fmt.Sprintf("%032x", 7)
	bad := domain.Event{Tenant: e.other, Stream: domain.SessionStream(guid), Type: "session.created", Schema: 1,
		Actor: domain.Actor{Kind: domain.ActorSystem}, Data: json.RawMessage(`"not an object"`)}
	if _, err := e.ledger.Append(ctx, bad.Stream, ledger.AnyVersion, bad); err != nil {
		t.Fatal(err)
	}
	r := projections.NewRunner(e.pool, e.store, projections.Options{}, projections.NewReporting(e.sealer))
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	d := e.ok(e.keys["auditor"], `{ projectionStatus { name lag quarantined lastError } }`, nil)
	st := get(d, "projectionStatus", 0)
	if get(st, "name") != "reporting" || get(st, "lag") != float64(0) || get(st, "quarantined") != float64(1) {
		t.Errorf("projection status = %v, want reporting with 1 quarantined and no lag", st)
	}
	// The reason names the kind of problem, never the event's values: the
	// status is not scoped to a tenant, and this event is another's.
	if msg, _ := get(st, "lastError").(string); !strings.HasSuffix(msg, "(session.created): the payload does not decode") {
		t.Errorf("lastError = %q, want the position, the type and the reason", msg)
	}
}

package gql_test

import (
	"context"
	"testing"

	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/projections"
)

// TestThroughTheProjector reads what the real projector wrote from events
// appended through the service: the reporting tables and this API agree on
// the sealed references, the custom fields and the e-mail blind index.
func TestThroughTheProjector(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tech, err := e.svc.Authenticate(ctx, e.keys["tech"])
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.svc.CreateSession(ctx, tech, service.NewSession{Queue: "private", CustomerName: "Ann Lee",
		CustomerEmail: "Ann.Lee@Example.com", CustomFields: map[string]string{"cfield0": "T-9"}}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	r := projections.NewRunner(e.pool, e.store, projections.Options{}, projections.NewReporting(e.sealer))
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	q := `query($f: SessionFilter) {
		sessions(filter: $f) { totalCount edges { node { id ownerId customerName customerEmail customFields } } }
		projectionStatus { name lag }
	}`
	d := e.ok(e.keys["admin"], q, map[string]any{"f": map[string]any{"customerEmail": "ann.lee@example.com"}})
	node := get(d, "sessions", "edges", 0, "node")
	if get(node, "id") != s.ID || get(node, "ownerId") != e.techID || get(node, "customerName") != "Ann Lee" ||
		get(node, "customerEmail") != "Ann.Lee@Example.com" || get(node, "customFields") != `{"cfield0":"T-9"}` {
		t.Errorf("session = %v", node)
	}
	if get(d, "projectionStatus", 0, "name") != "reporting" || get(d, "projectionStatus", 0, "lag") != float64(0) {
		t.Errorf("projection status = %v", d["projectionStatus"])
	}
	d = e.ok(e.keys["tech"], `{ sessions { totalCount } }`, nil)
	if get(d, "sessions", "totalCount") != float64(1) {
		t.Errorf("technician's sessions = %v", d)
	}
	d = e.ok(e.keys["tech2"], `{ sessions { totalCount } }`, nil)
	if get(d, "sessions", "totalCount") != float64(0) {
		t.Errorf("another technician's sessions = %v", d)
	}
}

package httpapi_test

import (
	"testing"

	"github.com/vigilhq/vigil/domain"
)

// TestChangeRetention: an admin sets the tenant's retention periods, which
// are an event on the tenant's stream; the same periods again record
// nothing; bad or missing periods are 400, a technician is 403.
func TestChangeRetention(t *testing.T) {
	e := newEnv(t)
	r := e.want(e.do("PUT", "/v1/tenant/retention", e.admin, map[string]any{"online_days": 90, "archive_days": 365}), 200, "")
	got, _ := r.body["retention"].(map[string]any)
	if got["online_days"] != float64(90) || got["archive_days"] != float64(365) {
		t.Fatalf("answer %s", r.raw)
	}
	e.want(e.do("PUT", "/v1/tenant/retention", e.admin, map[string]any{"online_days": 90, "archive_days": 365}), 200, "")
	var changes []domain.TenantRetentionChanged
	for _, ev := range e.events(domain.TenantStream(e.tenant)) {
		if ev.Type == "tenant.retention_changed" {
			p, err := domain.Catalogue.Decode(ev)
			if err != nil {
				t.Fatal(err)
			}
			switch p := p.(type) {
			case domain.TenantRetentionChanged:
				changes = append(changes, p)
			case *domain.TenantRetentionChanged:
				changes = append(changes, *p)
			}
		}
	}
	if len(changes) != 1 || changes[0].Retention != (domain.Retention{OnlineDays: 90, ArchiveDays: 365}) || changes[0].Previous != domain.DefaultRetention {
		t.Fatalf("retention events: %+v", changes)
	}
	e.want(e.do("PUT", "/v1/tenant/retention", e.admin, map[string]any{"online_days": 0, "archive_days": 1}), 400, "invalid")
	e.want(e.do("PUT", "/v1/tenant/retention", e.admin, map[string]any{"online_days": 10}), 400, "invalid")
	g := e.group(nil, nil)
	e.technician(g, "ada@example.com")
	e.want(e.do("PUT", "/v1/tenant/retention", e.token("ada@example.com"), map[string]any{"online_days": 10, "archive_days": 0}), 403, "")
}

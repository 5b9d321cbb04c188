package domain_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vigilhq/vigil/domain"
)

// TestTenantRetentionChanged: an admin's new periods are an event that the
// aggregate then holds; the same periods again record nothing; bad periods
// and an unknown tenant are refused.
func TestTenantRetentionChanged(t *testing.T) {
	tn := domain.NewTenant("acme")
	_, err := tn.ChangeRetention(byAdmin(t0), domain.Retention{OnlineDays: 30})
	wantErr(t, err, domain.CodeNotFound, domain.ErrNotFound)
	ok(t)(tn.Create(byAdmin(t0), "Acme", "eu", domain.DefaultRetention))

	for _, bad := range []domain.Retention{{}, {OnlineDays: 1, ArchiveDays: -1}} {
		_, err := tn.ChangeRetention(byAdmin(t0), bad)
		wantErr(t, err, domain.CodeInvalid, nil)
	}
	want := domain.Retention{OnlineDays: 365, ArchiveDays: 0}
	evs := ok(t)(tn.ChangeRetention(byAdmin(t0), want))
	if diff := cmp.Diff(domain.TenantRetentionChanged{Retention: want, Previous: domain.DefaultRetention}, payload[domain.TenantRetentionChanged](t, evs)); diff != "" {
		t.Errorf("retention_changed (-want +got):\n%s", diff)
	}
	if tn.Retention() != want {
		t.Errorf("retention %+v, want %+v", tn.Retention(), want)
	}
	if evs := ok(t)(tn.ChangeRetention(byAdmin(t0), want)); len(evs) != 0 {
		t.Errorf("the same periods again recorded %d events", len(evs))
	}
}

package service

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain"
)

func TestStreamCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	c := newStreamCache(100)
	for i := 0; i < 100; i++ {
		c.entry(fmt.Sprint(i))
	}
	c.entry("0") // used again: now the most recent
	c.entry("new")
	if len(c.entries) != 91 {
		t.Fatalf("%d entries after eviction, want 91 (100 - 10 + 1)", len(c.entries))
	}
	for _, k := range []string{"0", "new", "99", "50"} {
		if _, ok := c.entries[k]; !ok {
			t.Errorf("entry %s evicted", k)
		}
	}
	for i := 1; i <= 10; i++ {
		if _, ok := c.entries[fmt.Sprint(i)]; ok {
			t.Errorf("entry %d kept, though among the least recently used", i)
		}
	}
}

// TestCredCacheIsBounded: the credentials remembered for
// AuthenticateDeferred stay under their bound, the least recently used
// going first.
func TestCredCacheIsBounded(t *testing.T) {
	c := newCredCache(100)
	for i := 0; i < 100; i++ {
		c.put(TokenPrefix, fmt.Sprint(i), cachedCred{token: Token{ID: fmt.Sprint(i)}})
	}
	if _, ok := c.get(TokenPrefix, "0"); !ok { // used again: now the most recent
		t.Fatal("entry 0 missing")
	}
	c.put(TokenPrefix, "new", cachedCred{})
	if len(c.entries) != 91 {
		t.Fatalf("%d entries after eviction, want 91 (100 - 10 + 1)", len(c.entries))
	}
	for _, k := range []string{"0", "new", "99"} {
		if _, ok := c.get(TokenPrefix, k); !ok {
			t.Errorf("entry %s evicted", k)
		}
	}
	for i := 1; i <= 10; i++ {
		if _, ok := c.get(TokenPrefix, fmt.Sprint(i)); ok {
			t.Errorf("entry %d kept, though among the least recently used", i)
		}
	}
}

// memLog is a Log over streams in memory, counting what ReadSealed reads.
type memLog struct {
	Log
	streams map[string][]domain.Event
	reads   []int64 // the after of each ReadSealed
}

func (m *memLog) ReadSealed(ctx context.Context, tenant, stream string, after int64) ([]domain.Event, error) {
	m.reads = append(m.reads, after)
	var out []domain.Event
	for _, e := range m.streams[tenant+"/"+stream] {
		if e.Version > after {
			out = append(out, e)
		}
	}
	return out, nil
}

// TestTechnicianSnapshot: a technician's state comes from its snapshot
// plus the events stored since, equals a full replay, and the cache keeps
// no events of the stream (it grows with every login).
func TestTechnicianSnapshot(t *testing.T) {
	ctx := context.Background()
	m := &memLog{streams: map[string][]domain.Event{}}
	s := &Service{log: m, cache: newStreamCache(100)}
	key := "acme/" + domain.TechnicianStream("t1")
	at := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	cmd := func() domain.Cmd {
		at = at.Add(time.Minute)
		return domain.Cmd{Actor: domain.Actor{Kind: domain.ActorTechnician, ID: "t1"}, At: at}
	}
	policy := domain.DefaultGroupPolicy()
	store := func(f func(*domain.Technician) ([]domain.Event, error)) {
		t.Helper()
		a := domain.NewTechnician("acme", "t1")
		if err := a.Load(m.streams[key]); err != nil {
			t.Fatal(err)
		}
		evs, err := f(a)
		if err != nil {
			t.Fatal(err)
		}
		m.streams[key] = append(m.streams[key], evs...)
	}
	replay := func() *domain.Technician {
		a := domain.NewTechnician("acme", "t1")
		if err := a.Load(m.streams[key]); err != nil {
			t.Fatal(err)
		}
		return a
	}
	same := func(got, want *domain.Technician) {
		t.Helper()
		if got.Version() != want.Version() || got.StoredVersion() != want.StoredVersion() || got.Exists() != want.Exists() ||
			got.Failures() != want.Failures() || !got.LockedUntil().Equal(want.LockedUntil()) || got.LoggedIn() != want.LoggedIn() ||
			got.Disabled() != want.Disabled() || got.GroupID() != want.GroupID() {
			t.Fatalf("snapshot state v%d failures %d locked %v logged in %v, replay v%d failures %d locked %v logged in %v",
				got.Version(), got.Failures(), got.LockedUntil(), got.LoggedIn(), want.Version(), want.Failures(), want.LockedUntil(), want.LoggedIn())
		}
	}
	store(func(a *domain.Technician) ([]domain.Event, error) {
		return a.Create(cmd(), "g1", "Ada", "ada@example.com")
	})
	for i := range 40 {
		if i%7 == 3 {
			store(func(a *domain.Technician) ([]domain.Event, error) {
				return a.RecordLoginFailure(cmd(), domain.LoginBadPassword, netip.Addr{}, policy)
			})
		} else {
			store(func(a *domain.Technician) ([]domain.Event, error) {
				return a.RecordLoginSuccess(cmd(), netip.Addr{}, false)
			})
		}
		got, err := s.technician(ctx, "acme", "t1")
		if err != nil {
			t.Fatal(err)
		}
		same(got, replay())
	}
	// Each load read from where the previous one ended.
	for i := 1; i < len(m.reads); i++ {
		if m.reads[i] <= m.reads[i-1] {
			t.Fatalf("load %d read after version %d, the previous after %d: not incremental (%v)", i, m.reads[i], m.reads[i-1], m.reads)
		}
	}
	// A caller's changes do not leak into the snapshot.
	a, err := s.technician(ctx, "acme", "t1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Disable(cmd(), "test"); err != nil {
		t.Fatal(err)
	}
	b, err := s.technician(ctx, "acme", "t1")
	if err != nil {
		t.Fatal(err)
	}
	if b.Disabled() || len(b.Changes()) != 0 {
		t.Fatal("an unstored change reached the snapshot")
	}
	same(b, replay())
	if e := s.cache.entries["acme\x00"+domain.TechnicianStream("t1")]; e == nil || e.events != nil || e.tech == nil {
		t.Fatalf("cache entry %+v: want a snapshot and no events", e)
	}
}

// BenchmarkTechnicianLoad compares loading a technician with 10,000 stored
// events from its snapshot (plus one new event) with replaying them all.
func BenchmarkTechnicianLoad(b *testing.B) {
	ctx := context.Background()
	m := &memLog{streams: map[string][]domain.Event{}}
	key := "acme/" + domain.TechnicianStream("t1")
	at := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	a := domain.NewTechnician("acme", "t1")
	cmd := func() domain.Cmd {
		at = at.Add(time.Minute)
		return domain.Cmd{Actor: domain.Actor{Kind: domain.ActorTechnician, ID: "t1"}, At: at}
	}
	evs, _ := a.Create(cmd(), "g1", "Ada", "ada@example.com")
	for range 9999 {
		more, err := a.RecordLoginSuccess(cmd(), netip.Addr{}, false)
		if err != nil {
			b.Fatal(err)
		}
		evs = append(evs, more...)
	}
	m.streams[key] = evs
	b.Run("replay", func(b *testing.B) {
		for b.Loop() {
			t := domain.NewTechnician("acme", "t1")
			if err := t.Load(m.streams[key]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("snapshot", func(b *testing.B) {
		s := &Service{log: m, cache: newStreamCache(100)}
		if _, err := s.technician(ctx, "acme", "t1"); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.technician(ctx, "acme", "t1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestGroupSnapshot: a group is loaded from its cached snapshot and the
// events stored since, read incrementally; a caller's unstored change does
// not reach the snapshot.
func TestGroupSnapshot(t *testing.T) {
	ctx := context.Background()
	m := &memLog{streams: map[string][]domain.Event{}}
	s := &Service{log: m, cache: newStreamCache(100)}
	key := "acme/" + domain.GroupStream("g1")
	at := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	cmd := func() domain.Cmd {
		at = at.Add(time.Minute)
		return domain.Cmd{Actor: domain.Actor{Kind: domain.ActorAdmin, ID: "k1"}, At: at}
	}
	replay := func() *domain.Group {
		g := domain.NewGroup("acme", "g1")
		if err := g.Load(m.streams[key]); err != nil {
			t.Fatal(err)
		}
		return g
	}
	evs, err := domain.NewGroup("acme", "g1").Create(cmd(), "Level 1", domain.PermissionSet{Reboot: true}, domain.DefaultGroupPolicy())
	if err != nil {
		t.Fatal(err)
	}
	m.streams[key] = evs
	for i := range 6 {
		got, err := s.group(ctx, "acme", "g1")
		if err != nil {
			t.Fatal(err)
		}
		want := replay()
		if got.Version() != want.Version() || got.StoredVersion() != want.StoredVersion() || got.Permissions() != want.Permissions() {
			t.Fatalf("snapshot v%d %+v, replay v%d %+v", got.Version(), got.Permissions(), want.Version(), want.Permissions())
		}
		more, err := replay().SetPermissions(cmd(), domain.PermissionSet{Reboot: i%2 == 1})
		if err != nil {
			t.Fatal(err)
		}
		m.streams[key] = append(m.streams[key], more...)
	}
	for i := 1; i < len(m.reads); i++ {
		if m.reads[i] <= m.reads[i-1] {
			t.Fatalf("not incremental: %v", m.reads)
		}
	}
	a, err := s.group(ctx, "acme", "g1")
	if err != nil {
		t.Fatal(err)
	}
	before := a.Permissions()
	if _, err := a.SetPermissions(cmd(), domain.PermissionSet{RemoteControl: true}); err != nil {
		t.Fatal(err)
	}
	b, err := s.group(ctx, "acme", "g1")
	if err != nil {
		t.Fatal(err)
	}
	if b.Permissions() != before || len(b.Changes()) != 0 {
		t.Fatal("an unstored change reached the snapshot")
	}
}

package domain_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// BenchmarkSessionState: what a command pays to get a session's state,
// replaying the whole stream (before the service's snapshot) against a
// clone of the snapshot plus the one newer event, for sessions of 25 and
// 200 events (chat lines). The replay is the baseline of the same run.
//
//	go test -run '^$' -bench SessionState ./domain/
func BenchmarkSessionState(b *testing.B) {
	for _, n := range []int{25, 200} {
		g := newGroup(b, "support", domain.GrantAll(), domain.DefaultGroupPolicy())
		alice := newTech(b, "alice", "support")
		s := domain.NewSession(tenant, guid)
		var all []domain.Event
		add := func(evs []domain.Event, err error) {
			if err != nil {
				b.Fatal(err)
			}
			all = append(all, evs...)
		}
		add(s.Create(bySystem(t0), domain.SessionCreated{PIN: "123456", Queue: domain.QueueShared, GroupID: "support"}))
		add(s.ConnectCustomer(byCustomer(at(time.Second)), "windows", "1.0", mustAddr("192.0.2.7"), g))
		add(s.PickUp(byTech("alice", at(2*time.Second)), alice))
		for i := len(all); i < n; i++ {
			add(s.Chat(byTech("alice", at(time.Duration(i)*time.Second)), fmt.Sprintf("line %d of the conversation", i), g))
		}
		b.Run(fmt.Sprintf("replay/%d", n), func(b *testing.B) {
			for b.Loop() {
				x := domain.NewSession(tenant, guid)
				if err := x.Load(all); err != nil {
					b.Fatal(err)
				}
			}
		})
		snap := domain.NewSession(tenant, guid)
		if err := snap.Load(all[:n-1]); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("snapshot/%d", n), func(b *testing.B) {
			for b.Loop() {
				x := snap.Clone()
				if err := x.Load(all[n-1:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

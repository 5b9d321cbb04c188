package clients_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

type receiverStats struct {
	OK     int               `json:"ok"`
	Bad    int               `json:"bad"`
	Unique int               `json:"unique"`
	IDs    map[string]string `json:"ids"`
	Errors []string          `json:"errors"`
}

func (r receiverStats) types() map[string]int {
	out := map[string]int{}
	for _, typ := range r.IDs {
		out[typ]++
	}
	return out
}

type delivery struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	Type     string `json:"event_type"`
}

// deliveries reads a subscription's whole delivery log.
func deliveries(t *testing.T, s *server, key, sub string) []delivery {
	t.Helper()
	var page struct {
		Deliveries []delivery `json:"deliveries"`
	}
	if st := call(t, http.MethodGet, s.URL+"/v1/webhooks/"+sub+"/deliveries?limit=1000", key, nil, &page); st != http.StatusOK {
		t.Fatalf("delivery log: %d", st)
	}
	return page.Deliveries
}

// TestStandardWebhooks has the Standard Webhooks reference library (npm
// standardwebhooks) verify every delivery of a simulated run, across a
// secret rotation: after the rotation the receiver knows only the new
// secret, so every delivery must carry a signature under it. Every
// delivery in Vigil's log must have reached the receiver exactly as one
// verified webhook-id, and each subscribed type must arrive, an event and
// its summary type alike.
func TestStandardWebhooks(t *testing.T) {
	dir := needNodeModules(t, "testdata/clients/webhooks")
	port := startNode(t, dir, "receiver.mjs", "0")
	recv := "http://127.0.0.1:" + port

	s := startServe(t, map[string]string{"VIGIL_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8"})
	tenant, admin := s.tenant(t)
	ingest := s.apiKey(t, tenant, "ingest")
	integration := s.apiKey(t, tenant, "integration")

	var sub struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	types := []string{"session.created", "session.started", "session.closed", "session.ended", "session.chat_message", "session.consent_granted"}
	if st := call(t, http.MethodPost, s.URL+"/v1/webhooks", integration, map[string]any{
		"url": recv + "/hook", "event_types": types, "description": "standardwebhooks check",
	}, &sub); st != http.StatusCreated {
		t.Fatalf("create webhook: %d", st)
	}
	setSecret := func(secret string) {
		resp, err := http.Post(recv+"/secret", "text/plain", strings.NewReader(secret))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	setSecret(sub.Secret)
	stats := func() receiverStats {
		var st receiverStats
		resp, err := http.Get(recv + "/stats")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	settled := func() error {
		ds := deliveries(t, s, integration, sub.ID)
		if len(ds) == 0 {
			return fmt.Errorf("no deliveries yet")
		}
		for _, d := range ds {
			if d.State != "delivered" {
				return fmt.Errorf("delivery %s is %s after %d attempts (receiver: %+v)", d.ID, d.State, d.Attempts, stats())
			}
		}
		if got := stats().Unique; got != len(ds) {
			return fmt.Errorf("receiver verified %d webhook-ids, Vigil's log has %d deliveries", got, len(ds))
		}
		return nil
	}

	s.simulate(t, admin, ingest, 4)
	eventually(t, 60*time.Second, settled)

	// Rotate: from now on the receiver accepts the new secret alone.
	var rot struct {
		Secret string `json:"secret"`
	}
	if st := call(t, http.MethodPost, s.URL+"/v1/webhooks/"+sub.ID+"/rotate-secret", integration, map[string]any{}, &rot); st != http.StatusOK {
		t.Fatalf("rotate secret: %d", st)
	}
	if rot.Secret == "" || rot.Secret == sub.Secret {
		t.Fatalf("rotation gave secret %q", rot.Secret)
	}
	setSecret(rot.Secret)
	s.simulate(t, admin, ingest, 4)
	eventually(t, 60*time.Second, settled)

	final := stats()
	if final.Bad != 0 {
		t.Fatalf("%d deliveries failed verification with standardwebhooks: %v", final.Bad, final.Errors)
	}
	got := final.types()
	for _, typ := range types {
		if got[typ] == 0 {
			t.Errorf("no %s delivery arrived (got %v)", typ, got)
		}
	}
	// Every session's creation and close arrive under both names.
	if got["session.created"] != got["session.started"] || got["session.closed"] != got["session.ended"] {
		t.Errorf("an event and its summary type arrived unequally often: %v", got)
	}
	t.Logf("standardwebhooks verified %d deliveries (%d unique) across a secret rotation: %v", final.OK, final.Unique, got)
}

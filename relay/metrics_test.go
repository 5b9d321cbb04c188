package relay_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return float64(m.Histogram.GetSampleCount())
}

func counter(t *testing.T, h *harness, reason string) float64 {
	t.Helper()
	return value(t, h.srv.Metrics().Refusals.WithLabelValues(reason))
}

func TestMetricsRegister(t *testing.T) {
	h := newHarness(t, nil)
	reg := prometheus.NewRegistry()
	if err := h.srv.Metrics().Register(reg); err != nil {
		t.Fatal(err)
	}
	cust, tech, _ := h.pair(t)
	cust.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := tech.Read(buf); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	for _, n := range []string{"vigil_relay_pairs_active", "vigil_relay_waiting_sides", "vigil_relay_bytes_total",
		"vigil_relay_pairing_latency_seconds", "vigil_relay_refusals_total"} {
		if !names[n] {
			t.Errorf("%s not gathered", n)
		}
	}
	if got := value(t, h.srv.Metrics().Pairs); got != 1 {
		t.Errorf("active pairs %v, want 1", got)
	}
	waitFor(t, "5 bytes counted", func() bool { return value(t, h.srv.Metrics().BytesFromCustomer) == 5 })
	if got := value(t, h.srv.Metrics().PairingLatency); got != 1 {
		t.Errorf("pairing latency samples %v, want 1", got)
	}
}

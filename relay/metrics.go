package relay

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the relay's Prometheus metrics. Register them with
// Register; they are safe for concurrent use.
type Metrics struct {
	Pairs               prometheus.Gauge
	Waiting             prometheus.Gauge
	BytesFromCustomer   prometheus.Counter
	BytesFromTechnician prometheus.Counter
	PairingLatency      prometheus.Histogram
	Refusals            *prometheus.CounterVec
	// Rendezvous counts UDP rendezvous datagrams by outcome (ok, waiting,
	// rate_limited, bad_packet, bad_mac, unknown_session, session_closed).
	Rendezvous *prometheus.CounterVec

	bytes *prometheus.CounterVec
}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_relay_bytes_total", Help: "Bytes relayed, by the side they came from.",
	}, []string{"from"})
	m := &Metrics{
		Pairs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_relay_pairs_active", Help: "Pairs currently relaying.",
		}),
		Waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_relay_waiting_sides", Help: "Accepted sides waiting for their peer.",
		}),
		BytesFromCustomer:   bytes.WithLabelValues("customer"),
		BytesFromTechnician: bytes.WithLabelValues("technician"),
		PairingLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vigil_relay_pairing_latency_seconds",
			Help:    "How long the first side of a pair waited for the second.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_relay_refusals_total", Help: "Connections refused, by reason.",
		}, []string{"reason"}),
	}
	m.Rendezvous = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_relay_rendezvous_total", Help: "UDP rendezvous datagrams, by outcome.",
	}, []string{"outcome"})
	m.bytes = bytes
	for r := range reasonNames {
		if r != ReasonOK {
			m.Refusals.WithLabelValues(r.String())
		}
	}
	m.Refusals.WithLabelValues(RefusalBadProxyHeader)
	return m
}

// RefusalBadProxyHeader is the Refusals label of connections from a
// balancer in Config.ProxyFrom closed for want of a valid PROXY protocol
// header. It is no Reason: the relay closes them before TLS and answers
// nothing.
const RefusalBadProxyHeader = "bad_proxy_header"

// Register registers the metrics with reg; it returns the first error.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.Pairs, m.Waiting, m.bytes, m.PairingLatency, m.Refusals, m.Rendezvous} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) rendezvous(outcome string) { m.Rendezvous.WithLabelValues(outcome).Inc() }

func (m *Metrics) refused(r Reason) { m.Refusals.WithLabelValues(r.String()).Inc() }

// refusedBefore counts a refusal before TLS that has no Reason.
func (m *Metrics) refusedBefore(label string) { m.Refusals.WithLabelValues(label).Inc() }
